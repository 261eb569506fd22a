"""Self-checks for notebook 03 (a LoRA layer in PyTorch).

Two kinds of exercise: predictions (the learner replaces ``...`` by an answer,
checked against what an experiment computes, never against a hard-coded value)
and short functions (called on fresh cases, compared with ``lora_lab``). torch
is imported inside the checkers, so that the NumPy-only notebooks 01 and 02 do
not pay for it when they import ``lora_lab.checks``. Every experiment a checker
runs is seeded inside ``torch.random.fork_rng()``, so checking an answer never
changes the random numbers the notebook draws next.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._core import (
    LearnerError,
    Mistake,
    call,
    compare,
    least_precise,
    match_mistake,
    number,
    require_answered,
    run_checker,
    to_numpy,
    verdict,
)

__all__ = [
    "check_best_lr_shift",
    "check_expected_output",
    "check_first_adam_step",
    "check_lora_setup",
    "check_parameter_count",
]

SCALINGS = ("alpha/r", "alpha/sqrt(r)")


# --------------------------------------------------------------------------- exercise 1
# (§2: which factor does the first Adam step change?)

def _first_adam_step() -> tuple[bool, bool]:
    """Run the experiment: one Adam step on a fresh LoRALinear; (A changed, B changed)."""
    import torch

    from ..layers import LoRALinear

    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = LoRALinear(torch.nn.Linear(8, 4), r=2, alpha=4)
        x, y = torch.randn(16, 8), torch.randn(16, 4)
    A0, B0 = layer.lora_A.detach().clone(), layer.lora_B.detach().clone()
    optimizer = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=1e-2)
    torch.nn.functional.mse_loss(layer(x), y).backward()
    optimizer.step()
    return not torch.equal(layer.lora_A, A0), not torch.equal(layer.lora_B, B0)


_STEP_HINTS = {
    ("a_changes", True): (
        "A cannot move in the first step: while B = 0, dL/dA = s (G B)^T X is exactly zero, "
        "and Adam's step for a zero gradient is zero (both of its running averages are 0)."),
    ("b_changes", False): (
        "B does move: dL/dB = s G^T X A^T is not zero because A is random, and Adam moves "
        "every entry with a non-zero gradient by about the learning rate."),
    ("a_changes", False): "A did change in this experiment; look at its gradient at step 0.",
    ("b_changes", True): "B did not change in this experiment; look at its gradient at step 0.",
}


def _is_bool(value: Any) -> bool:
    """True for ``True``/``False``, NumPy's bools and a one-element bool tensor."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return (type(value).__module__.startswith("torch") and str(getattr(value, "dtype", ""))
            == "torch.bool" and getattr(value, "numel", lambda: 0)() == 1)


def check_first_adam_step(a_changes: Any, b_changes: Any) -> bool:
    """Check the prediction: after one Adam step from LoRA's start (B = 0, A random), has
    ``lora_A`` changed (``a_changes``) and has ``lora_B`` (``b_changes``)? Each is a bool.

    The truth is computed by running the experiment with :class:`lora_lab.LoRALinear`
    and ``torch.optim.Adam``. Why: "A has no gradient at step 0" is the most common
    false alarm behind "my LoRA isn't learning".
    """
    title = "first Adam step"
    try:
        require_answered(a_changes=a_changes, b_changes=b_changes)
    except LearnerError as wrong:
        return verdict(title, wrong.problem, wrong.hint)
    for name, value in (("a_changes", a_changes), ("b_changes", b_changes)):
        if not _is_bool(value):
            return verdict(title, f"{name} must be True or False, got {value!r}.",
                           "answer True if the factor changed in the first step, False if not.")
    truth = dict(zip(("a_changes", "b_changes"), _first_adam_step(), strict=True))
    wrong = [(name, bool(value)) for name, value in (("a_changes", a_changes),
                                                       ("b_changes", b_changes))
             if bool(value) != truth[name]]
    if not wrong:
        return verdict(title)
    shown = ", ".join(f"{name} = {value}" for name, value in wrong)
    return verdict(title, f"{shown} does not match what the experiment shows.",
                   " ".join(_STEP_HINTS[w] for w in wrong))


# --------------------------------------------------------------------------- exercise 2
# (§2.2: trainable and total parameters with biases)

def _reference_counts(shapes: list[tuple[int, int]], r: int) -> tuple[int, int]:
    """(trainable, total) from lora_lab: Linear layers with bias, all adapted at rank r."""
    import torch
    from torch import nn

    from ..adapters import apply_lora, count_parameters

    with torch.random.fork_rng():
        model = nn.ModuleList([nn.Linear(in_f, out_f) for out_f, in_f in shapes])
        apply_lora(model, "all-linear", r=r)
    return tuple(count_parameters(model))


def _count_mistakes(shapes: list[tuple[int, int]], r: int) -> tuple[list[Mistake], list[Mistake]]:
    """Typical wrong (trainable, total) values for ``shapes``, each with its hint."""
    weights = sum(o * i for o, i in shapes)
    biases = sum(o for o, _ in shapes)
    lora = sum(r * (o + i) for o, i in shapes)
    trainable = [
        Mistake(lora + biases, "biases stay frozen: LoRA trains only A and B (PEFT's default "
                               "bias='none'), so the biases belong in the total only."),
        Mistake(weights, "that is the size of the full weights; LoRA trains only B "
                         "(out × r) and A (r × in) per layer."),
        Mistake(weights + biases + lora, "apply_lora freezes every base parameter: only A and "
                                         "B are trainable."),
        Mistake(r * sum(o for o, _ in shapes), "you counted B (out × r) only; A (r × in) is "
                                               "trainable too."),
        Mistake(r * sum(i for _, i in shapes), "you counted A (r × in) only; B (out × r) is "
                                               "trainable too."),
        Mistake(sum(o + i for o, i in shapes), "each factor has r rows or columns: multiply "
                                               "by r."),
    ]
    total = [
        Mistake(weights + biases, "the total counts every parameter of the adapted model, the "
                                  "new A and B included (count_parameters and PEFT's "
                                  "'all params' both do)."),
        Mistake(weights + lora, "each Linear also has a bias of out_features numbers: frozen, "
                                "but part of the total."),
        Mistake(weights + sum(i for _, i in shapes) + lora,
                "a bias has one number per output, out_features, not in_features: each shape "
                "is (out_features, in_features), as nn.Linear's weight."),
        Mistake(weights, "the total is every parameter: weights, biases and the adapter."),
        Mistake(lora, "that is the trainable count again; the total counts the frozen "
                      "parameters too."),
    ]
    return trainable, total


def _whole_number(value: Any) -> int | None:
    """``value`` as an int if it is one whole number (int, float, 0-d array or tensor)."""
    got = number(value)
    return int(got) if got is not None and float(got).is_integer() else None


def _check_count_case(fn: Callable[..., Any], case: tuple[list[tuple[int, int]], int]) -> None:
    shapes, r = case
    shown = f"my_parameter_count({shapes}, {r})"
    got = call(fn, list(shapes), r)
    if not isinstance(got, (tuple, list)) and tuple(getattr(got, "shape", ())) == (2,):
        got = list(got)  # one array or tensor holding the pair
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise LearnerError(f"{shown} returned {type(got).__name__}, not a pair.",
                           "return two numbers: `return trainable, total`.")
    values = [_whole_number(v) for v in got]
    if None in values:
        raise LearnerError(f"{shown} returned {got!r}: expected two whole numbers.",
                           "count parameters with ints, e.g. r * (out_features + in_features).")
    expected = _reference_counts(shapes, r)
    if tuple(values) == expected:
        return
    if tuple(values) == expected[::-1]:
        raise LearnerError(f"{shown} returned {tuple(values)}, expected {expected}.",
                           "the pair is swapped: trainable first, then total.")
    trainable_mistakes, total_mistakes = _count_mistakes(shapes, r)
    for which, got_value, want, mistakes in (("trainable", values[0], expected[0],
                                              trainable_mistakes),
                                             ("total", values[1], expected[1], total_mistakes)):
        if got_value != want:
            hint = match_mistake(got_value, mistakes, want) or (
                "write down, for each layer, its weight (out × in), its bias (out), its B "
                "(out × r) and its A (r × in); then decide which of them train.")
            raise LearnerError(f"{shown}: {which} is {got_value}, expected {want}.", hint)


def check_parameter_count(my_parameter_count: Callable[[list[tuple[int, int]], int], Any]) -> bool:
    """Check ``my_parameter_count(shapes, r)`` -> ``(trainable, total)``.

    ``shapes`` lists (out_features, in_features) of ``nn.Linear`` layers *with bias*,
    each given a rank-``r`` adapter; the reference is :func:`lora_lab.count_parameters`
    after :func:`lora_lab.apply_lora` on such layers. Why: "the trainable count looks
    wrong" is usually a frozen bias or an adapter left out of the total.
    """
    cases = [([(4, 8)], 2), ([(16, 16), (32, 16), (16, 32)], 4), ([(3, 5), (7, 2)], 1)]
    return run_checker("my_parameter_count", my_parameter_count, _check_count_case, cases)


# --------------------------------------------------------------------------- exercise 3
# (§2.4: an optimiser that trains the adapter)

def _setup_model(dtype: Any) -> Any:
    """A small model with q_proj, k_proj, v_proj, o_proj, in ``dtype``."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(6, 6)
                                                                  for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.o_proj(torch.tanh(self.q_proj(x)) * self.v_proj(x) + self.k_proj(x))

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return Attention().to(dtype)


def _trainability_problem(model: Any, layers: dict[str, Any]) -> tuple[str, str] | None:
    """(problem, hint) if a LoRA factor is frozen or any other parameter trains, else None."""
    frozen = [f"{name}.{which}" for name, layer in layers.items()
              for which in ("lora_A", "lora_B") if not getattr(layer, which).requires_grad]
    if frozen:
        return (f"{frozen} do not require a gradient, so nothing can train them.",
                "lora_A and lora_B must stay trainable (apply_lora leaves them so): don't "
                "freeze them.")
    factors = {id(p) for layer in layers.values() for p in (layer.lora_A, layer.lora_B)}
    unfrozen = [name for name, p in model.named_parameters()
                if p.requires_grad and id(p) not in factors]
    if unfrozen:
        more = " ..." if len(unfrozen) > 3 else ""
        return (f"parameters other than the LoRA factors require a gradient: "
                f"{unfrozen[:3]}{more}.",
                "LoRA trains only lora_A and lora_B, and apply_lora froze everything else: "
                "don't unfreeze the model's own weights (that is full fine-tuning again).")
    return None


def _holding_problem(layers: dict[str, Any], optimizer: Any, lr: float) -> tuple[str, str] | None:
    """(problem, hint) if ``optimizer`` is not an Adam over every LoRA factor at ``lr``."""
    import torch

    factors = [p for layer in layers.values() for p in (layer.lora_A, layer.lora_B)]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(p) in held for p in factors):
        frozen = any(id(layer.base.weight) in held for layer in layers.values())
        return ("the optimizer does not hold any lora_A or lora_B.",
                "an optimizer keeps the parameters that existed when it was created: create "
                "it after apply_lora." if frozen else
                "give the optimizer the trainable parameters, "
                "[p for p in model.parameters() if p.requires_grad].")
    if not all(id(p) in held for p in factors):
        return ("the optimizer holds only some of the LoRA factors.",
                "give it every parameter that requires a gradient after apply_lora.")
    if any(group["lr"] != lr for group in optimizer.param_groups):
        return (f"the optimizer's learning rate is not lr = {lr}.",
                "pass the function's lr argument to the optimizer: Adam(..., lr=lr).")
    if not isinstance(optimizer, torch.optim.Adam):  # torch's AdamW is an Adam too
        return (f"the optimizer is a {type(optimizer).__name__}; the exercise asks for Adam.",
                "return torch.optim.Adam(..., lr=lr) (AdamW is fine too).")
    return None


def _step_problem(model: Any, layers: dict[str, Any], optimizer: Any) -> tuple[str, str] | None:
    """(problem, hint) unless one step changes every lora_B and lowers a small loss."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(1)
        x = torch.randn(8, 6, dtype=layers["q_proj"].lora_A.dtype)
        y = torch.randn(8, 6, dtype=x.dtype)
    before = [layer.lora_B.detach().clone() for layer in layers.values()]
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    if any(torch.equal(layer.lora_B, b) for layer, b in zip(layers.values(), before, strict=True)):
        return ("one optimizer step did not change every lora_B.",
                "return an optimizer over the LoRA factors, e.g. torch.optim.Adam(...).")
    with torch.no_grad():
        raised = torch.nn.functional.mse_loss(model(x), y) >= loss
    if raised:
        return ("one optimizer step raised the loss on a small batch instead of lowering it.",
                "a first Adam step at a small learning rate goes downhill: keep Adam's "
                "defaults apart from lr=lr (a large weight_decay, say, drags the factors "
                "away from where the gradient points).")
    return None


def _check_setup_case(fn: Callable[..., Any], case: tuple[Any, float]) -> None:
    import torch

    from ..adapters import lora_layers

    dtype, lr = case
    model = _setup_model(dtype)
    with torch.random.fork_rng():  # apply_lora draws A: the notebook's numbers stay put
        torch.manual_seed(2)
        optimizer = call(fn, model, lr)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LearnerError(f"lora_setup returned {type(optimizer).__name__}, not an "
                               "optimizer.",
                               "return the optimizer you created, e.g. torch.optim.Adam(...).")
        layers = dict(lora_layers(model))
        if sorted(layers) != ["q_proj", "v_proj"]:
            raise LearnerError(f"the model's LoRA layers are {sorted(layers)}, expected "
                               "['q_proj', 'v_proj'].",
                               "call apply_lora(model, ['q_proj', 'v_proj'], r=4, alpha=8) on "
                               "the model you were given, inside the function.")
        if any((layer.r, layer.alpha) != (4, 8) for layer in layers.values()):
            raise LearnerError("the adapters do not have r = 4 and alpha = 8.",
                               "pass r=4, alpha=8 to apply_lora.")
        problem = (_trainability_problem(model, layers)
                   or _holding_problem(layers, optimizer, lr)
                   or _step_problem(model, layers, optimizer))
    if problem:
        raise LearnerError(f"(model in {str(dtype).removeprefix('torch.')}) {problem[0]}",
                           problem[1])


def check_lora_setup(lora_setup: Callable[..., Any]) -> bool:
    """Check ``lora_setup(model, lr)``: adds LoRA (r=4, alpha=8) on q_proj and v_proj of
    ``model`` and returns an optimizer with learning rate ``lr`` that trains it.

    Run on a float32 and a float64 model: the factors must be the only trainable
    parameters, the optimizer an Adam (or AdamW) at ``lr`` holding every factor, and
    one step must change every ``lora_B`` and lower a small loss. Why: an optimizer
    created before ``apply_lora`` holds only the (then frozen) base weights and trains
    nothing.
    """
    import torch

    cases = [(torch.float32, 1e-2), (torch.float64, 3e-3)]
    return run_checker("lora_setup", lora_setup, _check_setup_case, cases)


# --------------------------------------------------------------------------- exercise 4
# (§5: the average output over all dropout masks)

def _dropout_layer(dtype: Any, p: float, seed: int) -> Any:
    """A LoRALinear (6 -> 4, r = 2) with dropout p and a non-zero B, in training mode."""
    import torch

    from ..layers import LoRALinear

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = LoRALinear(torch.nn.Linear(6, 4).to(dtype), r=2, alpha=6, dropout=p)
        with torch.no_grad():
            layer.lora_B.normal_()
        x = torch.randn(5, 6, dtype=dtype)
    return layer.train(), x


def _check_expected_case(fn: Callable[..., Any], case: tuple[Any, float, int]) -> None:
    import torch

    dtype, p, seed = case
    layer, x = _dropout_layer(dtype, p, seed)
    with torch.random.fork_rng():
        got = call(fn, copy.deepcopy(layer), x, names=("layer", "x"))
        again = call(fn, copy.deepcopy(layer), x)
    with torch.no_grad():
        expected = copy.deepcopy(layer).eval()(x)
        base = layer.base(x)
        branch = expected - base
    shown = f"(dtype {str(dtype).removeprefix('torch.')}, dropout p = {p})"
    precision = least_precise(got, x)
    problem = compare(got, expected, f"expected_output {shown}", dtype=precision)
    if problem is None:
        return
    if compare(got, again, "", dtype=precision) is not None:
        raise LearnerError(f"{problem}; and your answer changes from call to call.",
                           "a training-mode call draws one random mask. The average over all "
                           "masks is not random: what is the average of dropout(x)?")
    mistakes = [
        Mistake(base + (1 - p) * branch,
                "nn.Dropout already divides the kept entries by 1 - p during training "
                "(inverted dropout), so dropout(x) averages to x: no factor (1 - p)."),
        Mistake(base + branch / (1 - p),
                "do not divide by 1 - p: the chance 1 - p of being kept and dropout's "
                "rescaling by 1/(1 - p) cancel, so dropout(x) averages to x."),
        Mistake(base, "dropout only hides entries of the adapter's input; on average the "
                      "branch s B A x is still there."),
        Mistake(expected - layer.base.bias.detach(),
                "the base layer adds its bias: use layer.base(x), which computes x @ W0.T + b."),
        Mistake(base + branch / layer.scaling,
                "the branch is multiplied by the scaling: layer.scaling * (x @ A.T) @ B.T."),
    ]
    hint = (match_mistake(got, mistakes, expected, dtype=precision)
            or _sampled_hint(got, expected, branch)
            or "average layer.base(x) + s B A dropout(x) over the masks: only dropout(x) is "
               "random.")
    raise LearnerError(problem, hint)


def _sampled_hint(got: Any, expected: Any, branch: Any) -> str | None:
    """The hint for an answer close to the average but not on it: an average of samples."""
    try:
        got_arr, expected_arr = to_numpy(got), to_numpy(expected)
    except (TypeError, ValueError):
        return None
    if got_arr.shape != expected_arr.shape or not np.all(np.isfinite(got_arr)):
        return None
    off = np.abs(got_arr - expected_arr).max()
    if off < 0.25 * np.abs(to_numpy(branch)).max():
        return (f"close, but not exact (off by up to {off:.2g}). If you averaged sampled "
                "masks: that keeps sampling noise (a fixed seed only makes it repeatable), and "
                "the exercise asks for the exact average. What is one entry of dropout(x) on "
                "average? Try nn.Dropout(0.5)(torch.ones(8)).")
    return None


def check_expected_output(expected_output: Callable[..., Any]) -> bool:
    """Check ``expected_output(layer, x)`` -> the average of ``layer(x)`` in training mode
    over all dropout masks, shape (N, out), for a :class:`LoRALinear` with dropout.

    Compared (at the precision of the learner's dtype) with the layer's eval-mode
    output, on a float32 and a float64 layer. Why: inverted dropout makes the average
    over masks equal the eval-mode output, so inference needs no correction.
    """
    import torch

    cases = [(torch.float32, 0.5, 0), (torch.float64, 0.25, 1)]
    return run_checker("expected_output", expected_output, _check_expected_case, cases)


# --------------------------------------------------------------------------- exercise 5
# (§8: where the best learning rate goes as r grows)

_DIRECTIONS = {"higher": "higher", "up": "higher", "larger": "higher", "bigger": "higher",
               "increase": "higher", "increases": "higher",
               "lower": "lower", "down": "lower", "smaller": "lower",
               "decrease": "lower", "decreases": "lower",
               "the same": "the same", "same": "the same", "unchanged": "the same"}


def _direction(answer: Any) -> str | None:
    """``"higher"``, ``"lower"`` or ``"the same"`` for the spellings a learner may use."""
    return _DIRECTIONS.get(answer.strip().lower()) if isinstance(answer, str) else None


def _observed_shifts(best: Any) -> tuple[dict[str, str], int, int]:
    """From ``best`` = {(scaling, r): best lr}: each scaling's direction from the smallest
    to the largest rank, and those two ranks. ``TypeError``/``ValueError`` if malformed."""
    if not isinstance(best, Mapping) or not all(
            isinstance(k, tuple) and len(k) == 2 and k[0] in SCALINGS for k in best):
        raise TypeError("best must be the notebook's dict {(scaling, r): best learning rate} "
                        f"with scaling in {SCALINGS}")
    ranks = sorted({r for _, r in best})
    missing = [(label, r) for label in SCALINGS for r in (ranks[0], ranks[-1])
               if (label, r) not in best] if ranks else ["every rank"]
    if missing or len(ranks) < 2:
        raise ValueError(f"best must hold both scalings at two or more ranks; missing {missing}")
    lrs = [float(best[label, r]) for label in SCALINGS for r in (ranks[0], ranks[-1])]
    if not all(np.isfinite(lr) and lr > 0 for lr in lrs):
        raise ValueError("best holds a learning rate that is not a positive number")
    shifts = {}
    for label in SCALINGS:
        low, high = best[label, ranks[0]], best[label, ranks[-1]]
        shifts[label] = "higher" if high > low else "lower" if high < low else "the same"
    return shifts, ranks[0], ranks[-1]


#: What each answer follows in notebook 02 §7.3's first step, for each scaling: keeping
#: the first step's first-order *progress* as at r = 1, or its *size*. The two guides
#: disagree, and a whole run need not follow either; the verdict comes from the sweep.
_GUIDES = {
    ("alpha/r", "the same"): "'the same' is what the first step's progress suggests (alpha/r "
                             "keeps it steady as r grows, 02 §7.3); its size, which shrinks "
                             "roughly like 1/sqrt(r), suggests higher.",
    ("alpha/r", "higher"): "'higher' is what the first step's size suggests (under alpha/r it "
                           "shrinks roughly like 1/sqrt(r), 02 §7.3); its progress, steady "
                           "under alpha/r, suggests the same.",
    ("alpha/r", "lower"): "neither guide from 02 §7.3 suggests lower under alpha/r: the first "
                          "step's progress stays steady as r grows and its size shrinks.",
    ("alpha/sqrt(r)", "the same"): "'the same' is what the first step's size suggests "
                                   "(alpha/sqrt(r) keeps it steady, 02 §7.3); its progress, "
                                   "which grows roughly like sqrt(r), suggests lower.",
    ("alpha/sqrt(r)", "lower"): "'lower' is what the first step's progress suggests (under "
                                "alpha/sqrt(r) it grows roughly like sqrt(r), 02 §7.3); its "
                                "size, steady under alpha/sqrt(r), suggests the same.",
    ("alpha/sqrt(r)", "higher"): "neither guide from 02 §7.3 suggests higher under "
                                 "alpha/sqrt(r): the first step's size stays steady as r "
                                 "grows and its progress grows.",
}


def check_best_lr_shift(best_lr_alpha_r: Any, best_lr_rslora: Any,
                        best: Mapping[tuple[str, int], float]) -> bool:
    """Check the prediction of how the best learning rate moves from the smallest to the
    largest rank: ``"higher"``, ``"lower"`` or ``"the same"`` under alpha/r
    (``best_lr_alpha_r``) and under alpha/sqrt(r) (``best_lr_rslora``).

    ``best`` is the notebook's sweep result ``{(scaling, r): best learning rate}``; the
    answer is read from it, never hard-coded. A wrong answer's hint says which of notebook
    02's two first-step guides (progress or size) it follows, and what the sweep found.
    Raises ``TypeError``/``ValueError`` if ``best`` is not such a table. Why: when you
    change r, knowing which way to move the learning rate halves the search.
    """
    title = "best learning rate"
    shifts, low, high = _observed_shifts(best)
    answers = {"alpha/r": best_lr_alpha_r, "alpha/sqrt(r)": best_lr_rslora}
    names = {"alpha/r": "best_lr_alpha_r", "alpha/sqrt(r)": "best_lr_rslora"}
    try:
        require_answered(best_lr_alpha_r=best_lr_alpha_r, best_lr_rslora=best_lr_rslora)
    except LearnerError as wrong:
        return verdict(title, wrong.problem, wrong.hint)
    for label, answer in answers.items():
        if _direction(answer) is None:
            return verdict(title, f"{names[label]} = {answer!r} is not one of 'higher', "
                                  "'lower', 'the same'.", 'answer "higher", "lower" or "the same".')
    wrong = [label for label, answer in answers.items() if _direction(answer) != shifts[label]]
    if not wrong:
        return verdict(title)
    found = "; ".join(f"under {label} the best learning rate went from {best[label, low]} at "
                      f"r = {low} to {best[label, high]} at r = {high}" for label in wrong)
    hints = [_GUIDES[label, _direction(answers[label])] for label in wrong]
    return verdict(title, f"{', '.join(names[label] for label in wrong)} does not match what the "
                          f"sweep found: {found}.",
                   " ".join(hints) + " Which guide a whole run follows, if either, is what the "
                                     "sweep measures.")
