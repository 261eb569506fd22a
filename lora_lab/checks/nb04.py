"""Self-checks for notebook 04 (fine-tuning on handwritten digits).

Every exercise of notebook 04 is a prediction or a choice (the learner replaces ``...``
by an answer), checked against what the notebook's own experiment computed -- the
accuracies of its runs, the model it trained -- never against a hard-coded value. Choices
(a rank, a layer) are checked against the *validation* accuracies of the shipped sweep, as
a choice must be made without the test images; predictions of the comparison against its
test accuracies, and, where given, the validation accuracies too. Where two methods' ranges
over seeds overlap, the experiment cannot tell them apart, and either order is accepted.
torch is imported inside the checkers, so that the NumPy-only notebooks 01 and 02 do not
pay for it when they import ``lora_lab.checks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._core import LearnerError, require_answered, verdict

__all__ = [
    "check_ranking",
    "check_smallest_rank",
    "check_target_layer",
    "check_training_memory",
]


def _unanswered(title: str, **answers: Any) -> bool:
    """Print the "not yet" verdict and return True if an answer is still the stub's ``...``."""
    try:
        require_answered(**answers)
    except LearnerError as stub:
        verdict(title, stub.problem, stub.hint)
        return True
    return False


def _runs(results: Any, name: str = "results") -> dict[Any, np.ndarray]:
    """``results`` ({key: accuracies of the runs, or Runs with .accuracy}) as arrays.

    Raises ``TypeError`` if it is not such a mapping: that is a mistake in the notebook's
    call, not in the learner's answer.
    """
    if not isinstance(results, Mapping) or not results:
        raise TypeError(f"{name} must be the notebook's dict {{variant: runs}}, got "
                        f"{type(results).__name__}")
    table = {}
    for key, runs in results.items():
        if not isinstance(runs, Sequence) or not runs:
            raise TypeError(f"{name}[{key!r}] must be a non-empty list of runs")
        table[key] = np.array([float(getattr(run, "accuracy", run)) for run in runs])
    return table


def _range(values: np.ndarray) -> str:
    return f"{100 * values.min():.1f}–{100 * values.max():.1f} %"


# --------------------------------------------------------------------------- exercise 1

_RANK_HINTS = {
    "frozen": ("the frozen model has never seen a sideways digit: it reads the pixels in the "
               "wrong places and scores about what guessing does, 1 in 10."),
    "logits correction r=8": (
        "the logits correction only re-mixes the 10 numbers the frozen model computes from a "
        "misread image: z + s·B·A·z = (I + s·B·A)·(W h + b) is just another head on the same "
        "features, so everything it can express, training the head can express too."),
    "head only": ("training the head re-weighs the 256 features the frozen layers computed from "
                  "a sideways image; it cannot change how those features are computed. LoRA r=8 "
                  "here adapts every layer, and full fine-tuning trains every weight."),
    "LoRA r=8": ("LoRA r=8 trains about a tenth of full fine-tuning's parameters, and "
                 "low-rank updates cannot express everything a full one can."),
}


def _beaten(lower: str, higher: str, tables: list[dict[Any, np.ndarray]]) -> bool:
    """True if ``lower`` did better on every seed than ``higher`` on any, in every table."""
    return all(table[lower].min() > table[higher].max() for table in tables)


def check_ranking(my_ranking: Any, results: Mapping[str, Sequence[Any]],
                  validation: Mapping[str, Sequence[Any]] | None = None) -> bool:
    """Check a predicted ranking of the methods, best first, against the experiment.

    ``results`` maps each method's name to its runs (accuracies in [0, 1], or objects with
    an ``accuracy``), one per seed; ``validation``, if given, maps the same names to
    accuracies measured on other data (the sweep's validation images, other seeds).
    ``my_ranking`` must list exactly those names (a list or tuple of str). A pair is wrong
    only when the experiment separates it: the method placed lower did better on *every*
    seed than the one placed higher did on *any* (min of one > max of the other) -- in
    ``results`` and, if given, in ``validation`` too, so that a separation of a few images
    on one set of seeds is not taken as a fact. Why: predicting before measuring shows what
    one actually believed about LoRA.
    """
    title = "ranking of the methods"
    tables = [_runs(results)] + ([] if validation is None else [_runs(validation, "validation")])
    if len(tables) == 2 and set(tables[1]) != set(tables[0]):
        raise TypeError("validation must have exactly the methods of results")
    if _unanswered(title, my_ranking=my_ranking):
        return False
    names = list(tables[0])
    if not isinstance(my_ranking, (list, tuple)) \
            or not all(isinstance(name, str) for name in my_ranking) \
            or sorted(my_ranking) != sorted(names):
        return verdict(title, f"my_ranking must be a list of exactly these names: {names}.",
                       "copy the names from the list in the exercise, best method first.")
    ranking = list(my_ranking)
    for i, higher in enumerate(ranking):
        for lower in ranking[i + 1:]:
            if _beaten(lower, higher, tables):
                both = " (and on the validation images too)" if len(tables) == 2 else ""
                return verdict(
                    title, f"you placed {higher!r} above {lower!r}, but {lower!r} "
                    f"({_range(tables[0][lower])}) beat {higher!r} ({_range(tables[0][higher])}) "
                    f"on every seed{both}.", _RANK_HINTS.get(higher, "look at the table again."))
    return verdict(title)


# --------------------------------------------------------------------------- exercise 2

def _memory_mistakes(model: Any, bytes_per: int) -> tuple[list[tuple[int, str]],
                                                         list[tuple[int, str]]]:
    """``(value, hint)`` pairs for the usual slips in the count and in the bytes of ``model``."""
    from ..adapters import count_parameters, lora_layers

    layers = [layer for _, layer in lora_layers(model)]
    trainable, total = count_parameters(model)
    frozen = total - trainable
    r = layers[0].r
    count = [
        (frozen, "that is every weight and bias of the MLP: what full fine-tuning trains. LoRA "
                 "trains only A (r × in) and B (out × r) of each adapted layer."),
        (total, "that is every parameter of the adapted model, frozen ones included; the "
                "question asks for the trainable ones."),
        (trainable + sum(x.out_features for x in layers),
         "LoRA adds no bias, and the base layers' biases stay frozen: count only A and B."),
        (sum(r * (x.in_features + x.out_features) for x in layers[:-1]),
         "the head (256 → 10) is adapted too: all three Linear layers get an adapter."),
        (sum(r * x.in_features * x.out_features for x in layers),
         "the two factors' sizes add, they do not multiply: r·(in + out) per layer."),
        (sum(r * x.out_features for x in layers), "you counted B (out × r) only; A (r × in) "
                                                  "trains too."),
        (sum(r * x.in_features for x in layers), "you counted A (r × in) only; B (out × r) "
                                                 "trains too."),
    ]
    per = trainable * bytes_per
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    size = [] if bytes_per == 4 else [
        (trainable * 4, f"this model computes in {dtype} ({bytes_per} bytes per number), "
                        "and training holds more than the parameters themselves."),
        (4 * trainable * 4, f"four copies of 4 bytes: right idea, wrong size of a number. This "
                            f"model computes in {dtype}, {bytes_per} bytes each (see the DTYPE "
                            "cell)."),
    ]
    size += [
        (per, "that is the parameters only: training also keeps a gradient for every trainable "
              "number, and Adam two running averages (exp_avg and exp_avg_sq)."),
        (2 * per, "that is parameters and gradients: Adam's two moments, exp_avg and "
                  "exp_avg_sq, come on top, each as big as the parameters."),
        (3 * per, "Adam keeps two moments per parameter (m and v), not one."),
        (4 * per + frozen * bytes_per, "that adds the frozen weights: they need memory too "
                                       "(the table's memory column counts them), but the "
                                       "question asks for the trainable numbers' state only."),
    ]
    return count, size


def _hint_for(got: Any, mistakes: list[tuple[int, str]], expected: int) -> str | None:
    """The hint of every mistake that gives ``got`` (joined when two slips give one value)."""
    hints = list(dict.fromkeys(h for value, h in mistakes if value == got and value != expected))
    if len(hints) > 1:
        return "this number fits two different slips. Either " + " Or ".join(
            hint[0].lower() + hint[1:] for hint in hints)
    return hints[0] if hints else None


def check_training_memory(lora_r8_params: Any, lora_r8_bytes: Any, model: Any) -> bool:
    """Check the trainable-parameter count and trainable-state bytes of LoRA r=8 on the MLP.

    ``model`` is the notebook's LoRA r=8 model (64-256-256-10, all three layers adapted);
    the reference is ``count_parameters(model).trainable`` and
    ``training_memory(model).total`` (parameters + gradients + Adam's two moments, in the
    model's dtype). Why: memory, not parameter count, is what decides whether fine-tuning
    fits on a machine, and both are easy to get wrong by a factor.
    """
    from ..adapters import count_parameters
    from ..train import training_memory

    title = "LoRA r=8: trainable parameters and training memory"
    if _unanswered(title, lora_r8_params=lora_r8_params, lora_r8_bytes=lora_r8_bytes):
        return False
    counts = count_parameters(model)
    expected_bytes = training_memory(model).total
    bytes_per = expected_bytes // (4 * counts.trainable)
    count_mistakes, size_mistakes = _memory_mistakes(model, bytes_per)
    for name, got, expected, mistakes in (
            ("lora_r8_params", lora_r8_params, counts.trainable, count_mistakes),
            ("lora_r8_bytes", lora_r8_bytes, expected_bytes, size_mistakes)):
        if isinstance(got, bool) or not isinstance(got, (int, np.integer, float)):
            return verdict(title, f"{name} must be a number, got {type(got).__name__}.",
                           "write a whole number such as 1234 (or an expression like 8 * 10).")
        if got != expected:
            hint = _hint_for(got, mistakes, expected) or (
                "write the shapes of A and B for each of the three layers, then count what "
                "training keeps per trainable number.")
            return verdict(title, f"{name} = {got:,} is not what the model holds.", hint)
    return verdict(title)


# --------------------------------------------------------------------------- exercise 3

def check_smallest_rank(smallest_r: Any, results: Mapping[int, Sequence[Any]],
                        threshold: float) -> bool:
    """Check the smallest rank whose *every* seed reached ``threshold`` accuracy.

    ``results`` maps each rank tried to its runs (accuracies in [0, 1], or objects with an
    ``accuracy``) -- in notebook 04, the validation accuracies of the sweep, since a choice
    must not look at the test images; ``threshold`` is a fraction in (0, 1). The answer is
    one of the ranks (an int, not a bool), or ``None`` when no rank reached the threshold on
    every seed. Why: choosing r from the worst seed, not a lucky one, is what makes the
    choice hold the next time you train.
    """
    title = "smallest rank"
    table = _runs(results)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0 < threshold < 1:
        raise ValueError(f"threshold must be a fraction in (0, 1), got {threshold!r}")
    if _unanswered(title, smallest_r=smallest_r):
        return False
    ranks = sorted(table)
    every = [r for r in ranks if table[r].min() >= threshold]
    expected = every[0] if every else None
    if smallest_r is None and expected is None:
        return verdict(title)
    if isinstance(smallest_r, (bool, np.bool_)) or smallest_r not in ranks:
        return verdict(title, f"smallest_r must be one of the ranks tried, {ranks} (or None if "
                              f"none is good enough); got {smallest_r!r}.",
                       "pick it from the table of LoRA ranks.")
    if smallest_r == expected:
        return verdict(title)
    got = table[smallest_r]
    if expected is None:
        return verdict(title, f"no rank reached {threshold:.0%} on every seed here.",
                       "then the answer is None; look at the worst seed of each rank.")
    if got.min() < threshold <= got.max():
        hint = (f"r = {smallest_r} reached {threshold:.0%} on some seeds only "
                f"({_range(got)}): a choice that works only on a lucky seed does not hold. "
                "Read the worst seed of each rank.")
    elif smallest_r > expected:
        hint = (f"r = {smallest_r} works, but a smaller rank does too: the question asks for "
                "the smallest, which trains the fewest parameters.")
    else:
        hint = (f"r = {smallest_r} did not reach {threshold:.0%} on any seed "
                f"({_range(got)}).")
    return verdict(title, f"r = {smallest_r} is not the smallest rank whose every seed reached "
                          f"{threshold:.0%}.", hint)


# --------------------------------------------------------------------------- exercise 4

_LAYER_HINTS = {
    "4": ("the head only sees the 256 features the frozen layers computed from a sideways "
          "image: a rank-8 change of it can re-weigh those features, as training the head "
          "does, but not change how they are computed. The rotation moves pixels, so it must "
          "be undone where the features are computed from them."),
    "0": "layer 0 reads the pixels directly; look at its accuracy in the table again.",
    "2": ("layer 2 re-mixes the 256 features of layer 0, which keep much (not all: the ReLU "
          "drops the negative part) of what the pixels were; look at its accuracy in the "
          "table again."),
}


def check_target_layer(layer_choice: Any, results: Mapping[str, Sequence[Any]]) -> bool:
    """Check the choice of the one layer to adapt (``"0"``, ``"2"`` or ``"4"``).

    ``results`` maps each layer's path to the accuracies of LoRA on that layer alone, one
    per seed -- in notebook 04, the validation accuracies of the sweep, since a choice must
    not look at the test images. A choice is right when no other layer beat it on every
    seed (ranges that overlap cannot be told apart, so each is right); when another layer
    had a higher mean but overlapping seeds, the verdict says so. Why: "which
    target_modules?" depends on where the change enters the model, and an experiment shows
    it.
    """
    title = "which layer to adapt"
    table = _runs(results)
    if _unanswered(title, layer_choice=layer_choice):
        return False
    choice = str(layer_choice).strip().strip("'\"") \
        if isinstance(layer_choice, (str, int, np.integer)) and not isinstance(layer_choice, bool) \
        else None
    if choice not in table:
        return verdict(title, f"layer_choice must be one of {list(table)}, got "
                              f"{layer_choice!r}.", 'answer with the path as a string, e.g. "0".')
    better = [other for other in table if table[other].min() > table[choice].max()]
    if better:
        return verdict(title, f"LoRA on layer {better[0]} alone ({_range(table[better[0]])}) "
                              f"beat layer {choice} alone ({_range(table[choice])}) on every "
                              "seed.", _LAYER_HINTS.get(choice))
    ok = verdict(title)
    ahead = [other for other in table if table[other].mean() > table[choice].mean()]
    for other in ahead:
        print(f"   Note: layer {other} had a higher mean ({100 * table[other].mean():.1f} % "
              f"against {100 * table[choice].mean():.1f} %), but the seeds overlap "
              f"({_range(table[other])} and {_range(table[choice])}): these runs cannot tell "
              "the two apart.")
    return ok
