"""Self-checks for notebook 06 (LoRA in a transformer, and PEFT).

Every exercise of notebook 06 asks for a number or a choice in place of ``...``. Counts
are compared with :mod:`lora_lab` (``apply_lora`` on the notebook's model,
``lora_lab.memory`` for the 7B Llama); predictions are compared with what the notebook's
own experiment measured, passed in by the notebook -- never with a hard-coded answer.
Where two variants' results overlap across seeds, the experiment cannot order them and
either answer is accepted. torch is imported inside the checkers, so that the NumPy-only
notebooks do not pay for it when they import ``lora_lab.checks``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._core import LearnerError, judge, one_number, require_answered

__all__ = [
    "check_7b_lora_count",
    "check_active_adapter",
    "check_all_linear_count",
    "check_memory_choice",
    "check_target_prediction",
]

VARIANTS = ("q,v", "all-linear", "full")
"""The variants the exercises ask about; the notebook's tables may hold more (q,v r=38)."""
MEMORY_OPTIONS = ("full", "q,v r=16", "all-linear r=16", "all-linear r=64")
BUDGET_BYTES = 14.5e9
"""Exercise 5's budget: a 16 GiB card (17.2 GB) less 2.7 GB kept for activations and the
software."""


def _whole(value: Any, name: str, example: str) -> int:
    """``value`` as an int if it is one whole number, else :class:`LearnerError`."""
    got = one_number(value, name, example)
    if not float(got).is_integer():
        raise LearnerError(f"{name} = {got:g} is not a whole number.",
                           f"a count of parameters or layers is a whole number, e.g. {example}.")
    return int(got)


def _option(value: Any, name: str, options: tuple[str, ...]) -> str:
    """The option ``value`` names (case, spaces, commas, "-" and "_" ignored), else LearnerError."""
    require_answered(**{name: value})
    quoted = ", ".join(f'"{option}"' for option in options)
    if isinstance(value, str):
        key = re.sub(r"[\s_,\-]", "", value.lower())
        for option in options:
            if key == re.sub(r"[\s_,\-]", "", option):
                return option
    raise LearnerError(f"{name} must be one of {quoted}, got {value!r}.",
                       f"answer with one of the strings {quoted}, in quotes.")


# --------------------------------------------------------------------------- exercise 1

def _all_linear_mistakes(model: Any, expected: int) -> dict[int, str]:
    """Typical wrong counts of the layers "all-linear" adapts in ``model``, with hints."""
    from torch import nn

    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    n_layers = int(getattr(model.config, "num_hidden_layers", 1))
    per_layer = expected // n_layers
    return {
        len(linear): ("that counts every nn.Linear, lm_head included. PEFT's \"all-linear\" "
                      "leaves out the output layer (get_output_embeddings()): adapting the "
                      "layer that produces the scores is rarely wanted, and it is often tied "
                      "to the input embedding."),
        len(linear) + 1: ("embed_tokens is an nn.Embedding (a lookup table), not a Linear "
                          "layer, and lm_head, the output layer, is left out by \"all-linear\"."),
        per_layer: (f"that is one layer's worth; the model has {n_layers} layers, each with the "
                    "same Linear modules."),
        4 * n_layers: ("that counts the attention projections only; the MLP's gate_proj, "
                       "up_proj and down_proj are Linear layers too."),
    }


def check_all_linear_count(n_all_linear: Any, model: Any) -> bool:
    """Check the number of ``LoRALinear`` layers ``apply_lora(model, "all-linear")`` creates.

    ``model`` is the notebook's base model (a transformers ``PreTrainedModel``); the
    checker adapts a copy of it and counts. Why: "all-linear" leaves out the output layer,
    and a learner who expects ``lm_head`` to be adapted misreads what was trained.
    """
    title = "layers adapted by all-linear"

    def check() -> None:
        import copy

        import torch

        from ..adapters import apply_lora, lora_layers

        got = _whole(n_all_linear, "n_all_linear", "10")
        with torch.random.fork_rng():
            expected = len(list(lora_layers(apply_lora(copy.deepcopy(model), "all-linear"))))
        if got != expected:
            mistakes = {k: v for k, v in _all_linear_mistakes(model, expected).items()
                        if k != expected}
            raise LearnerError(f"n_all_linear = {got} is not the number of layers adapted.",
                               mistakes.get(got, "go through §1.2's list of Linear modules and "
                                                 "ask, for each, whether PEFT's \"all-linear\" "
                                                 "takes it."))

    return judge(title, check)


# --------------------------------------------------------------------------- exercise 2

def _by_variant(losses: Any, name: str) -> dict[str, list[float]]:
    """``{(variant, seed): loss}`` as ``{variant: [losses]}`` for :data:`VARIANTS` (other
    variants in the table are left out); TypeError if malformed."""
    if not isinstance(losses, Mapping) or not losses:
        raise TypeError(f"{name} must be the notebook's dict {{(variant, seed): loss}}, got "
                        f"{type(losses).__name__}")
    table: dict[str, list[float]] = {}
    for key, loss in losses.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
            raise TypeError(f"{name} keys must be (variant, seed), got {key!r}")
        if key[0] in VARIANTS:
            table.setdefault(key[0], []).append(float(loss))
    if set(table) != set(VARIANTS):
        raise TypeError(f"{name} must hold every variant {VARIANTS}, got {sorted(table)}")
    return table


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def _extremes(table: dict[str, list[float]], candidates: tuple[str, ...],
              lowest: bool) -> list[str]:
    """The candidates that may be the lowest (or highest): none other beats them on every seed."""
    if lowest:
        return [c for c in candidates
                if not any(max(table[o]) < min(table[c]) for o in candidates if o != c)]
    return [c for c in candidates
            if not any(min(table[o]) > max(table[c]) for o in candidates if o != c)]


_CLOSES_HINTS = {
    "q,v": ("all-linear adapts the MLP's gate_proj, up_proj and down_proj as well as the "
            "attention; compare the held-out losses of §3.2, and the parameter-matched q,v r=38 "
            "there, which tells whether the number of trainable parameters or the choice of "
            "layers made the difference."),
    "all-linear": ("here q,v came out ahead: compare the held-out losses of §3.2 (and the "
                   "parameter-matched q,v r=38) with what QLoRA reports for large models."),
}
_FORGETS_HINTS = {
    "full": ("full fine-tuning changes every weight, but how much a model forgets depends on how "
             "far the update moves it, not only on how many parameters it touches: compare the "
             "Shakespeare losses of §3.3."),
    "all-linear": "compare the Shakespeare losses of §3.3, seed by seed.",
    "q,v": ("the fewest trainable parameters do not guarantee the least forgetting: compare "
            "the Shakespeare losses of §3.3."),
}


def _beaten_by(table: dict[str, list[float]], answer: str, candidates: tuple[str, ...],
               lowest: bool) -> str:
    """A candidate that beat ``answer`` on every seed (lower, or higher, on all of them)."""
    if lowest:
        return next(o for o in candidates if o != answer and max(table[o]) < min(table[answer]))
    return next(o for o in candidates if o != answer and min(table[o]) > max(table[answer]))


def check_target_prediction(closes_more: Any, forgets_most: Any, code_loss: Mapping[Any, Any],
                            old_loss: Mapping[Any, Any]) -> bool:
    """Check the predictions of notebook 06 §3 against its experiment.

    ``closes_more``: ``"q,v"`` or ``"all-linear"``, the LoRA variant with the lower held-out
    loss on the new text; ``forgets_most``: ``"q,v"``, ``"all-linear"`` or ``"full"``, the
    variant with the highest held-out loss on the original text. ``code_loss`` and
    ``old_loss`` are the notebook's ``{(variant, seed): loss}``. An answer is right when no
    other variant beat it on every seed. Raises ``TypeError`` if the tables are malformed
    (a mistake in the notebook's call, not in the answer).
    """
    title = "which layers close more of the gap, which forget most"
    new, old = _by_variant(code_loss, "code_loss"), _by_variant(old_loss, "old_loss")

    def check() -> None:
        require_answered(closes_more=closes_more, forgets_most=forgets_most)
        closer = _option(closes_more, "closes_more", VARIANTS[:2])
        forgetful = _option(forgets_most, "forgets_most", VARIANTS)
        if closer not in _extremes(new, VARIANTS[:2], lowest=True):
            other = _beaten_by(new, closer, VARIANTS[:2], lowest=True)
            raise LearnerError(f"closes_more = {closer!r}, but {other} reached a lower held-out "
                               f"loss on every seed ({_span(new[other])} against "
                               f"{_span(new[closer])}).", _CLOSES_HINTS[closer])
        if forgetful not in _extremes(old, VARIANTS, lowest=False):
            more = _beaten_by(old, forgetful, VARIANTS, lowest=False)
            raise LearnerError(f"forgets_most = {forgetful!r}, but {more} forgot more on every "
                               f"seed (Shakespeare loss {_span(old[more])} against "
                               f"{_span(old[forgetful])}).", _FORGETS_HINTS[forgetful])

    return judge(title, check)


# --------------------------------------------------------------------------- exercise 3

ADAPTERS = ("code", "docs")


def check_active_adapter(active_after_loading: Any, measured: str) -> bool:
    """Check the prediction of which adapter a PEFT model uses after ``load_adapter``.

    ``measured`` is what the notebook found (``"code"`` or ``"docs"``: whose logits the PEFT
    model reproduced). ``"default"``, the name PEFT gave the first adapter, counts as
    ``"code"``. Why: forgetting ``set_adapter`` after ``load_adapter`` is a silent bug.
    """
    title = "the active adapter after load_adapter"
    if measured not in ADAPTERS:
        raise ValueError(f"measured must be 'code' or 'docs' (the notebook's measurement), got "
                         f"{measured!r}")

    def check() -> None:
        answer = active_after_loading
        if isinstance(answer, str) and answer.strip().lower() == "default":
            answer = "code"
        got = _option(answer, "active_after_loading", ADAPTERS)
        if got == measured:
            return
        hint = ("load_adapter only loads: PEFT adds the adapter under its name and keeps "
                "computing with the active one ('default', the code adapter) until you call "
                "set_adapter('docs').") if measured == "code" else (
                "in this PEFT version load_adapter made the new adapter the active one; read "
                "peft_code.active_adapter.")
        raise LearnerError(f"active_after_loading = {got!r}, but the model computed the "
                           f"{measured} adapter's outputs.", hint)

    return judge(title, check)


# --------------------------------------------------------------------------- exercise 4

def _count_mistakes(shape: Any, r: int, targets: Any) -> dict[int, str]:
    """Typical wrong LoRA parameter counts for ``targets`` on ``shape``, with hints."""
    from ..memory import lora_parameter_count

    shapes = shape.linear_shapes()
    names = list(shapes) if targets == "all-linear" else list(targets)
    right = lora_parameter_count(shape, r, targets)
    mistakes = {
        right // shape.n_layers: (f"that is one layer's adapters; the model has "
                                  f"{shape.n_layers} layers."),
        right // r: f"each factor has r = {r} rows (A) or columns (B): multiply by r.",
        right // 2: (f"that is half the count. Either matrices are missing (every one of "
                     f"{', '.join(names)} gets an adapter, in every layer), or only A or only B "
                     "is counted: every adapted matrix gets both A (r × in) and B (out × r), "
                     "r·(in + out) numbers."),
        shape.n_layers * r * sum(shapes[n][0] * shapes[n][1] for n in names): (
            "r·in·out would be as large as r copies of the weight; LoRA adds A (r × in) and "
            "B (out × r): r·(in + out)."),
        shape.n_layers * sum(shapes[n][0] * shapes[n][1] for n in names): (
            "that is the number of weights in the adapted matrices, which stay frozen; count "
            "the numbers in A and B."),
    }
    if targets == "all-linear":
        d = shape.d_model
        mistakes[right + r * (d + shape.vocab_size)] = (
            "\"all-linear\" leaves out the output layer lm_head (PEFT's rule).")
        mistakes[shape.n_layers * r * 2 * d * len(names)] = (
            f"gate_proj, up_proj and down_proj are {shape.d_ff:,} × {d:,} (or {d:,} × "
            f"{shape.d_ff:,}), not {d:,} × {d:,}.")
        mistakes[lora_parameter_count(shape, r, ["q_proj", "k_proj", "v_proj", "o_proj"])] = (
            "that counts the attention projections only; \"all-linear\" adapts the MLP's "
            "gate_proj, up_proj and down_proj too.")
        for left_out, where in (("down_proj", "the MLP's three Linear layers (gate_proj, up_proj, "
                                              "down_proj)"),
                                ("o_proj", "the four attention projections (q_proj, k_proj, "
                                           "v_proj, o_proj)")):
            mistakes[right - lora_parameter_count(shape, r, [left_out])] = (
                f"one matrix per layer is missing: \"all-linear\" adapts all of {where}, and "
                "every other Linear inside the layers.")
    mistakes.pop(right, None)
    return mistakes


def check_7b_lora_count(qv_r16: Any, all_linear_r16: Any) -> bool:
    """Check the trainable parameters of LoRA r = 16 on a Llama 2 7B, on q,v and all-linear.

    The reference is :func:`lora_lab.memory.lora_parameter_count` on
    :data:`lora_lab.memory.LLAMA_2_7B`. Why: a count derived from the config is the first
    sanity check of any LoRA set-up, and the 7B's MLP shapes are where it usually goes wrong.
    """
    title = "LoRA r = 16 on a 7B Llama"

    def check() -> None:
        from ..memory import LLAMA_2_7B, lora_parameter_count

        require_answered(qv_r16=qv_r16, all_linear_r16=all_linear_r16)
        for name, value, targets in (("qv_r16", qv_r16, ["q_proj", "v_proj"]),
                                     ("all_linear_r16", all_linear_r16, "all-linear")):
            got = _whole(value, name, "32 * 16 * (4096 + 4096)")
            right = lora_parameter_count(LLAMA_2_7B, 16, targets)
            if got != right:
                hint = _count_mistakes(LLAMA_2_7B, 16, targets).get(got, (
                    "for each adapted matrix of shape (out, in) in one layer add r·(in + out), "
                    "then multiply by the number of layers."))
                raise LearnerError(f"{name} = {got:,} is not the trainable count.", hint)

    return judge(title, check)


# --------------------------------------------------------------------------- exercise 5

def _memory_needs() -> dict[str, float]:
    """Bytes (weights + gradients + Adam) to fine-tune LLAMA_2_7B each way of exercise 5."""
    from ..memory import LLAMA_2_7B, lora_parameter_count, training_memory

    n = LLAMA_2_7B.parameter_count()
    need = {"full": training_memory(n, n).total}
    for option in MEMORY_OPTIONS[1:]:
        targets, r = option.split(" r=")
        extra = lora_parameter_count(LLAMA_2_7B, int(r), ["q_proj", "v_proj"]
                                     if targets == "q,v" else "all-linear")
        need[option] = training_memory(n + extra, extra).total
    return need


def check_memory_choice(choice: Any, code_loss: Mapping[Any, Any]) -> bool:
    """Check the choice of what to fine-tune on a 7B Llama within 14.5 GB.

    A choice is right when it fits the budget (``lora_lab.memory.training_memory``'s
    defaults) and no other option that fits adapts targets that did better in the notebook's
    §3 experiment (``code_loss``, ``{(variant, seed): held-out loss}``): all-linear is
    better than q,v if it reached a lower loss on every seed there, and the other way round.
    """
    title = "what to fine-tune within 14.5 GB"
    new = _by_variant(code_loss, "code_loss")

    def check() -> None:
        got = _option(choice, "choice", MEMORY_OPTIONS)
        need = _memory_needs()
        if need[got] > BUDGET_BYTES:
            raise LearnerError(
                f"{got} needs {need[got] / 1e9:.1f} GB for weights, gradients and Adam's "
                f"state, more than the 14.5 GB you have.",
                "with training_memory: 2 bytes for every weight, and 2 + 8 more for every "
                "trained one." if got == "full" else
                "the rank-64 adapter with its gradient and Adam's state costs 12 bytes per "
                "trained number on top of the 13.5 GB of frozen weights.")
        fits = [option for option in MEMORY_OPTIONS if need[option] <= BUDGET_BYTES]
        best = _extremes(new, VARIANTS[:2], lowest=True)
        targets = got.split(" r=")[0]
        better = [option for option in fits if option.split(" r=")[0] in best]
        if targets not in best and better:
            raise LearnerError(
                f"{got} fits ({need[got] / 1e9:.1f} GB), but so does {better[0]} "
                f"({need[better[0]] / 1e9:.1f} GB).",
                f"in §3, all-linear closed more of the gap on every seed; its weights, "
                f"gradients and Adam's state cost only "
                f"{(need['all-linear r=16'] - need['q,v r=16']) / 1e9:.1f} GB more than q,v's "
                "(its extra activations are for the 2.7 GB set aside)." if targets == "q,v" else
                "in §3, q,v closed more of the gap on every seed.")

    return judge(title, check)
