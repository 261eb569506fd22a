"""Self-checks for notebook 02 (ΔW = B·A by hand).

Four exercises, each checked as cases + reference + a table of (mistake, hint):

- :func:`check_grad_x` -- a derivation: the gradient of the loss with respect to the
  layer's input ``x``, compared with :func:`lora_lab.numpy_lora.lora_backward`;
- :func:`check_init_predictions` -- predict-then-run: which of three starting points
  get gradients, move the outputs, or never learn, compared with what the
  notebook's experiment observed;
- :func:`check_unmerge_error` -- a prediction: the size of the float32 merge/unmerge
  round-trip error, compared with the error the notebook measured;
- :func:`check_scaling_choices` -- a choice: which scaling (alpha/r, alpha/sqrt(r), none)
  keeps which property of the first training step steady as r grows, compared
  with the notebook's measurements.

A prediction still equal to ``...`` (the exercise stub) is "not answered yet".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..numpy_lora import lora_backward
from ._core import (
    ANSWER_HINT,
    LearnerError,
    Mistake,
    call,
    compare,
    least_precise,
    match_mistake,
    number,
    run_checker,
    to_numpy,
    verdict,
)

__all__ = [
    "check_grad_x",
    "check_init_predictions",
    "check_scaling_choices",
    "check_unmerge_error",
]

def _not_answered(title: str, name: str) -> bool:
    """Print the "not answered yet" verdict when an answer is still the stub's ``...``."""
    return verdict(title, f"not answered yet: {name} is still `...`.",
                   ANSWER_HINT.format(name=name))


# --------------------------------------------------------------------------- dL/dx

_SHAPES = ("x (N, in), W0 (out, in), A (r, in), B (out, r), grad_h (N, out), and dL/dx has "
           "the shape of x, (N, in)")


def _grad_x_error_hint(problem: str) -> str:
    """A hint for an exception raised by the learner's ``my_grad_x``."""
    if any(word in problem for word in ("mismatch", "shape", "align", "broadcast")):
        return f"a shape does not fit. Here {_SHAPES}: write the shape under each factor."
    return "call your function on a small example yourself and read the error from the top."


def _grad_x_cases() -> list[dict[str, Any]]:
    """Three small problems with ``alpha / r`` distinct from 1, ``alpha``, ``alpha // r``,
    ``alpha / in``, ``r / alpha`` and ``alpha / sqrt(r)``, so that each slip shows.

    The third case is in float32: a correct answer computed in float32 must pass.
    Shapes: x (N, in), W0 (out, in), A (r, in), B (out, r), grad_h (N, out).
    """
    cases = []
    for seed, (n, d_in, d_out, r, alpha, dtype) in enumerate((
            (4, 5, 3, 2, 7, np.float64), (3, 7, 4, 3, 1.5, np.float64),
            (5, 6, 4, 4, 10.0, np.float32))):
        rng = np.random.default_rng(seed)
        arrays = {"x": (n, d_in), "W0": (d_out, d_in), "A": (r, d_in), "B": (d_out, r),
                  "grad_h": (n, d_out)}
        case: dict[str, Any] = {k: rng.normal(size=shape).astype(dtype)
                                for k, shape in arrays.items()}
        case["alpha"] = alpha
        cases.append(case)
    return cases


_GRAD_X_NAMES = ("x", "W0", "A", "B", "alpha", "grad_h")


def _grad_x_mistakes(case: dict[str, Any]) -> list[Mistake]:
    """The usual slips in dL/dx = G W0 + s (G B) A, each computed for ``case``."""
    x, W0, A, B, G = (np.asarray(case[k], dtype=np.float64)
                      for k in ("x", "W0", "A", "B", "grad_h"))
    alpha = case["alpha"]
    r, d_in = A.shape
    frozen, lora = G @ W0, (G @ B) @ A                 # the two paths, lora without s
    s = alpha / r
    floor_s = alpha // r
    integer_division = (
        "`alpha // r` is floor division: it rounds alpha / r down to a whole number "
        f"(here {floor_s:g} instead of {s:g}). Use `alpha / r`.")
    if floor_s == 0:
        integer_division = ("only the frozen path G @ W0 came back: the LoRA path is missing or "
                            "multiplied by 0 -- note that `alpha // r` is 0 whenever alpha < r. "
                            "Use `alpha / r`.")
    return [
        Mistake(frozen + floor_s * lora, integer_division),
        Mistake(frozen + lora, "the LoRA path lost its scaling: h = W0 x + s B A x with "
                               "s = alpha / r, so s multiplies that path of dL/dx too."),
        Mistake(frozen + alpha * lora, "the scaling is s = alpha / r, not alpha."),
        Mistake(frozen + (alpha / d_in) * lora,
                "r is the number of rows of A, `A.shape[0]`; `A.shape[1]` is in_features."),
        Mistake(frozen + (r / alpha) * lora, "the scaling is upside down: s = alpha / r."),
        Mistake(frozen + (alpha / math.sqrt(r)) * lora,
                "alpha / sqrt(r) is rsLoRA's scaling; this notebook's layer uses alpha / r."),
        Mistake(s * lora, "the frozen path is missing. W0 gets no *weight* gradient, but x "
                          "still reaches h through W0, so backpropagation multiplies by W0 "
                          "as well: dL/dx contains grad_h @ W0."),
        Mistake(frozen, "only the frozen path G @ W0 came back: x also reaches h through A "
                        "and then B, and that path adds its own term."),
        Mistake((frozen + s * lora) / len(x),
                "do not average again: grad_h already holds the loss's 1/(N·out)."),
        Mistake(len(x) * (frozen + s * lora),
                "do not multiply by N: grad_h is already dL/dh of the loss you train on (its "
                "1/(N·out) included), so dL/dx needs no extra factor."),
        Mistake((frozen + s * lora).T, "dL/dx has the shape of x: (N, in), one row per input."),
    ]


def _scale_slip_hint(got: Any, case: dict[str, Any], dtype: str) -> str | None:
    """The hint for an answer ``G W0 + c (G B) A`` with a factor ``c`` other than ``alpha / r``
    (a global ``s``, ``r`` or ``alpha``, ``s**2``, ...), or None if ``got`` is not of that form.

    ``c`` is the least-squares fit of ``got - G W0`` on ``(G B) A``; the answer is of that form
    when the fitted ``G W0 + c (G B) A`` equals ``got`` to ``dtype``'s precision.
    """
    W0, A, B, G = (np.asarray(case[k], dtype=np.float64) for k in ("W0", "A", "B", "grad_h"))
    frozen, lora = G @ W0, (G @ B) @ A
    try:
        rest = to_numpy(got) - frozen
    except (TypeError, ValueError):
        return None
    if rest.shape != lora.shape:
        return None
    c, s = float(np.sum(rest * lora) / np.sum(lora * lora)), case["alpha"] / A.shape[0]
    scale = float(np.abs(frozen + s * lora).max())
    if compare(got, frozen + c * lora, "", dtype=dtype, scale=scale) is not None:
        return None
    return (f"the path through A and B is there, but multiplied by {c:.4g} instead of "
            f"s = alpha / r = {s:g} (r = A.shape[0] = {A.shape[0]} here). Did you use the "
            "notebook's `s`, `r` or `alpha` instead of the function's arguments, or square s?")


def _check_grad_x_case(fn: Callable[..., Any], case: dict[str, Any]) -> None:
    """Compare ``fn`` on ``case`` with the reference; raise :class:`LearnerError` if wrong.

    An answer computed in float32 and returned as float64 passes at float32's precision.
    """
    args = [case[k] for k in _GRAD_X_NAMES]
    got = call(fn, *args, names=_GRAD_X_NAMES, error_hint=_grad_x_error_hint,
               in_place_hint="build new arrays instead of `+=` on an argument: LoRA never "
                             "modifies the frozen W0, and A and B must stay as they were.")
    as64 = [np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in args]
    expected = lora_backward(*as64).x
    dtype = least_precise(got, *args)
    problem = compare(got, expected, "dL/dx", dtype=dtype)
    if problem is None or compare(got, expected, "dL/dx", dtype="float32") is None:
        return                                     # right, at least to float32's precision
    shown = (f"for x {case['x'].shape}, A {case['A'].shape}, B {case['B'].shape}, "
             f"alpha={case['alpha']}: ")
    hint = (match_mistake(got, _grad_x_mistakes(case), expected, dtype=dtype)
            or _scale_slip_hint(got, case, dtype) or
            "x reaches h along two paths, through W0 and through A then B. dL/dx adds one term "
            f"per path, each a product with grad_h. Here {_SHAPES}.")
    raise LearnerError(shown + problem, hint)


def check_grad_x(my_grad_x: Callable[..., Any]) -> bool:
    """Check ``my_grad_x(x, W0, A, B, alpha, grad_h)`` -> ``dL/dx`` (N, in).

    ``grad_h`` (N, out) is dL/dh for a batch of rows ``x`` (N, in); the answer is
    ``grad_h @ W0 + (alpha / r) * (grad_h @ B) @ A``, compared with
    :func:`lora_lab.numpy_lora.lora_backward` at the precision of the learner's
    numbers (float32 answers pass at float32 precision, also when cast back to
    float64). Why: W0 is frozen and gets no
    weight gradient, yet the backward pass still goes through it -- the derivation
    shows exactly what LoRA saves and what it does not.
    """
    return run_checker("my_grad_x", my_grad_x, _check_grad_x_case, _grad_x_cases())


# --------------------------------------------------------------------------- init predictions

STARTS = ("lora", "zeros", "random")
INIT_QUESTIONS = ("A_gets_gradient", "B_gets_gradient", "outputs_change_at_step_0",
                  "never_learns")

# (question, start, True if the learner left the start out, False if they put it in wrongly)
_INIT_HINTS: dict[tuple[str, str, bool], str] = {
    ("A_gets_gradient", "lora", False): "dL/dA = s (G B)^T X contains B, and B = 0 at LoRA's "
                                        "start: A's gradient is exactly zero at step 0.",
    ("A_gets_gradient", "zeros", False): "dL/dA = s (G B)^T X contains B, and B = 0 here.",
    ("A_gets_gradient", "random", True): "with both factors random, B != 0, so dL/dA = "
                                         "s (G B)^T X is not zero.",
    ("B_gets_gradient", "lora", True): "dL/dB = s G^T X A^T contains A, which is random "
                                       "(non-zero) at LoRA's start, and G != 0 because the "
                                       "pretrained layer does not fit the new task.",
    ("B_gets_gradient", "zeros", False): "dL/dB = s G^T X A^T contains A, and A = 0 here.",
    ("B_gets_gradient", "random", True): "dL/dB = s G^T X A^T contains A, which is random "
                                         "(non-zero) here.",
    ("outputs_change_at_step_0", "lora", False): "B = 0 makes B A exactly zero, so at step 0 "
                                                 "the outputs are the pretrained ones.",
    ("outputs_change_at_step_0", "zeros", False): "both factors are zero, so B A = 0 and the "
                                                  "outputs are the pretrained ones.",
    ("outputs_change_at_step_0", "random", True): "two non-zero random factors give B A != 0, "
                                                  "so the outputs move before any training.",
    ("never_learns", "zeros", True): "at A = B = 0 each factor's gradient contains the other "
                                     "factor, so both are zero: gradient descent never moves.",
    ("never_learns", "lora", False): "only B moves at step 0, but from step 1 on B != 0 and A "
                                     "gets a gradient too: LoRA's start learns.",
    ("never_learns", "random", False): "both factors get gradients from step 0, so it does "
                                       "learn; its problem is where it starts, not learning.",
}


def _as_starts(value: Any, name: str) -> set[str]:
    """The learner's answer as a set of start names; raise :class:`LearnerError` if it is not."""
    if isinstance(value, str):
        raise LearnerError(f"{name} is the string {value!r}, not a set.",
                           f"write a set of names, e.g. {{{value!r}}}, or set() for none.")
    if isinstance(value, dict) and not value:
        raise LearnerError(f"{name} is {{}}, which Python reads as an empty dict.",
                           "an empty set is written set().")
    if not isinstance(value, (set, frozenset, list, tuple)):
        raise LearnerError(f"{name} is a {type(value).__name__}, not a set of names.",
                           "write a set such as {\"lora\", \"random\"}, or set() for none.")
    unknown = [v for v in value if v not in STARTS]
    if unknown:
        raise LearnerError(f"{name} holds {unknown!r}, which is not one of the starts.",
                           f"use the names {', '.join(map(repr, STARTS))}.")
    return set(value)


def _check_observed(observed: Any, questions: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``observed`` maps every question to answers in ``allowed``."""
    if not isinstance(observed, Mapping) or set(observed) != set(questions):
        raise ValueError(f"observed must map exactly the questions {list(questions)} to what "
                         "the experiment found")
    for question, value in observed.items():
        values = value if isinstance(value, (set, frozenset)) else {value}
        if not values <= set(allowed):
            raise ValueError(f"observed[{question!r}] must be drawn from {list(allowed)}, "
                             f"got {value!r}")


def check_init_predictions(A_gets_gradient: Any, B_gets_gradient: Any,
                           outputs_change_at_step_0: Any, never_learns: Any, *,
                           observed: Mapping[str, set[str]]) -> bool:
    """Check the predictions of the initialisation experiment against what it observed.

    Each prediction is a set of start names -- ``"lora"`` (B = 0, A random),
    ``"zeros"`` (both zero), ``"random"`` (both random) -- for which the statement
    holds. ``observed`` maps each of the four question names to the set the
    notebook's experiment measured (a malformed ``observed`` raises ``ValueError``).
    Why: predicting from the gradient formulas first, then running, is what makes the
    init ablation stick.
    """
    _check_observed(observed, INIT_QUESTIONS, STARTS)
    title = "init predictions"
    answers = dict(zip(INIT_QUESTIONS, (A_gets_gradient, B_gets_gradient,
                                        outputs_change_at_step_0, never_learns), strict=True))
    for name, answer in answers.items():
        if answer is Ellipsis:
            return _not_answered(title, name)
    try:
        for name, answer in answers.items():
            _compare_starts(name, _as_starts(answer, name), set(observed[name]))
    except LearnerError as wrong:
        return verdict(title, wrong.problem, wrong.hint)
    return verdict(title)


def _compare_starts(name: str, predicted: set[str], seen: set[str]) -> None:
    """Raise :class:`LearnerError` at the first start where ``predicted`` and ``seen`` differ."""
    for start in STARTS:
        if (start in predicted) == (start in seen):
            continue
        left_out = start in seen
        problem = (f"{name}: the experiment says {start!r} belongs in it." if left_out else
                   f"{name}: the experiment says {start!r} does not belong in it.")
        raise LearnerError(problem, _INIT_HINTS.get(
            (name, start, left_out), "look at the gradient formulas of §3 once more."))


# --------------------------------------------------------------------------- unmerge error

FLOAT16_EPS = float(np.finfo(np.float16).eps)
FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT64_EPS = float(np.finfo(np.float64).eps)
TOLERANCE_FACTOR = 10.0


def check_unmerge_error(predicted_error: Any, measured_error: float) -> bool:
    """Check a prediction of the largest ``|W_back - W0|`` after a float32 merge and unmerge.

    ``measured_error`` is what the notebook measured (a positive number). The
    prediction passes when it is within a factor of 10 of the measurement -- the
    question is the order of magnitude, which follows from float32's machine epsilon
    (about 1.2e-7) times the size of the entries. Why: "exact up to rounding" only
    means something once you can say how big the rounding is.
    """
    measured = _one_number(measured_error)
    if measured is None or not math.isfinite(measured) or measured <= 0:
        raise ValueError(f"measured_error must be one positive number, got {measured_error!r}")
    title = "predicted_error"
    if predicted_error is Ellipsis:
        return _not_answered(title, title)
    value = _one_number(predicted_error)
    if value is None:
        return verdict(title, f"predicted_error is a {type(predicted_error).__name__}, "
                              "not one number.", "write a single number such as 1e-3.")
    if not math.isfinite(value) or value < 0:
        return verdict(title, f"predicted_error is {value}.",
                       "an error size is a finite number >= 0.")
    low, high = measured / TOLERANCE_FACTOR, measured * TOLERANCE_FACTOR
    if low <= value <= high:
        return verdict(title)
    problem = (f"you predicted {value:.2g}; the notebook measured {measured:.2g} "
               f"(within a factor of {TOLERANCE_FACTOR:g} passes).")
    return verdict(title, problem, _unmerge_hint(value, measured))


def _one_number(value: Any) -> float | None:
    """``value`` as a float if it is one real number -- a Python or NumPy scalar, or an array
    or tensor holding one entry -- else None."""
    if hasattr(value, "size") and not isinstance(value, (str, bytes)):
        try:
            flat = to_numpy(value).reshape(-1)
        except (TypeError, ValueError):
            return None
        return float(flat[0]) if flat.size == 1 and not isinstance(value, np.bool_) else None
    return number(value)


def _near(value: float, eps: float, measured: float, factor: float) -> bool:
    """Whether ``value`` is within ``factor`` of ``eps`` times the entries' size.

    The size is estimated from the measurement as ``2 * measured / FLOAT32_EPS`` (a float32
    rounding moves an entry by up to eps/2 times its size), so the test does not need the
    weights themselves.
    """
    size = 2 * measured / FLOAT32_EPS
    return eps * size / factor <= value <= eps * size * factor


def _unmerge_hint(value: float, measured: float) -> str:
    """The hint for a prediction outside the accepted range around ``measured``.

    Bands, each relative to the measurement: float64's eps (x/÷ 20), float16's eps or the
    square root of float32's (x/÷ 8; the two are too close to tell apart); otherwise simply too
    optimistic or too pessimistic.
    """
    rounding = (f"one rounding in float32 changes an entry by at most half the spacing of "
                f"float32 numbers near it, eps/2 times the entry's size (eps = "
                f"np.finfo(np.float32).eps = {FLOAT32_EPS:.1e}), and the round trip rounds twice.")
    if value == 0:
        return ("W0 + ΔW is rounded to the nearest float32 number, and so is the difference "
                "after subtracting ΔW again: some information is lost on the way.")
    if _near(value, FLOAT64_EPS, measured, 20):
        return (f"that is float64's precision (eps = {FLOAT64_EPS:.1e}); here the merge is done "
                f"in float32, whose eps = np.finfo(np.float32).eps = {FLOAT32_EPS:.1e}.")
    if value < measured:
        return "too optimistic: " + rounding
    if _near(value, FLOAT16_EPS, measured, 8):
        return (f"that is the size of float16's eps ({FLOAT16_EPS:.1e}) or of the square root of "
                f"float32's ({FLOAT32_EPS ** 0.5:.1e}), and neither applies here: " + rounding)
    return "too pessimistic: " + rounding


# --------------------------------------------------------------------------- scaling choices

SCALINGS = ("alpha/r", "alpha/sqrt(r)", "none")
SCALING_QUESTIONS = ("adam_progress", "adam_step_size", "gd_progress")

_SCALING_HINTS: dict[tuple[str, str], str] = {
    ("adam_progress", "alpha/sqrt(r)"): (
        "Adam's first step moves every entry of B by lr, so the progress s·lr·Σ|∇W L Aᵀ| "
        "adds up out·r terms of similar size: it grows like s·r. Which s cancels r?"),
    ("adam_progress", "none"): (
        "with s = 1 the progress s·lr·Σ|∇W L Aᵀ|, a sum of out·r terms, grows like r."),
    ("adam_step_size", "alpha/r"): (
        "the step ΔW₁ = s·B₁A adds up r rank-1 pieces with random-looking signs; sizes of "
        "such sums grow like √r, not like r. Which s cancels √r?"),
    ("adam_step_size", "none"): (
        "with s = 1 the step adds up r random-looking rank-1 pieces, so its size grows like "
        "√r."),
    ("gd_progress", "alpha/r"): (
        "with plain gradient descent the step of B is itself proportional to s: "
        "B₁ = −lr·s·∇W L·Aᵀ, so ΔW₁ = s·B₁A carries s², and its progress lr·s²·‖∇W L·Aᵀ‖² "
        "grows like s²·r."),
    ("gd_progress", "none"): (
        "with s = 1 the progress lr·‖∇W L·Aᵀ‖² of plain gradient descent grows like r."),
}


# Spellings of the same scaling, rewritten in this order (after lower-casing and removing
# spaces): module prefixes go, every way of writing the square root of r becomes sqrt(r).
_SPELLINGS = (("numpy.", ""), ("np.", ""), ("math.", ""), ("torch.", ""), ("α", "alpha"),
              ("√(r)", "sqrt(r)"), ("√r", "sqrt(r)"), ("r**(1/2)", "sqrt(r)"),
              ("r**0.5", "sqrt(r)"), ("r**.5", "sqrt(r)"), ("r^(1/2)", "sqrt(r)"),
              ("r^0.5", "sqrt(r)"), ("sqrtr", "sqrt(r)"))
_SYNONYMS = {"alpha*r**-0.5": "alpha/sqrt(r)", "alpha*r**(-0.5)": "alpha/sqrt(r)",
             "alpha*r**(-1/2)": "alpha/sqrt(r)", "rslora": "alpha/sqrt(r)",
             "rs-lora": "alpha/sqrt(r)", "alpha*r**-1": "alpha/r", "alpha*r**(-1)": "alpha/r",
             "1": "none", "no": "none", "noscaling": "none", "without": "none"}


def _normalise_scaling(value: Any, name: str) -> str:
    """``value`` as one of :data:`SCALINGS`; raise :class:`LearnerError` if it is not one.

    Accepts the usual ways of writing the same thing: ``α``, ``√r``, ``np.sqrt(r)``,
    ``math.sqrt(r)``, ``r**(1/2)``, ``r**0.5``, ``alpha*r**-0.5``, ``rsLoRA``, any spaces
    and capitals.
    """
    hint = f"write it as one of {', '.join(map(repr, SCALINGS))}."
    if not isinstance(value, str):
        raise LearnerError(f"{name} is a {type(value).__name__}, not a string.", hint)
    text = value.lower().replace(" ", "")
    for old, new in _SPELLINGS:
        text = text.replace(old, new)
    text = _SYNONYMS.get(text, text)
    if text not in SCALINGS:
        raise LearnerError(f"{name} = {value!r} is not one of the three scalings.", hint)
    return text


def check_scaling_choices(adam_progress: Any, adam_step_size: Any, gd_progress: Any, *,
                          observed: Mapping[str, str]) -> bool:
    """Check which scaling keeps which property of the first step steady as r grows.

    Each answer is ``"alpha/r"``, ``"alpha/sqrt(r)"`` or ``"none"`` (``α``, ``√r``,
    ``np.sqrt(r)``, ``r**0.5``, ``rsLoRA``, capitals and spaces are fine). ``observed``
    maps each question name to the scaling the notebook's experiment found steadiest over
    the ranks (a malformed ``observed`` raises ``ValueError``). Why: which scaling is
    "rank-stable" depends on what you hold fixed and on the optimiser; predicting it forces
    the derivation.
    """
    _check_observed(observed, SCALING_QUESTIONS, SCALINGS)
    title = "scaling choices"
    answers = dict(zip(SCALING_QUESTIONS, (adam_progress, adam_step_size, gd_progress),
                       strict=True))
    for name, answer in answers.items():
        if answer is Ellipsis:
            return _not_answered(title, name)
    try:
        for name, answer in answers.items():
            chosen = _normalise_scaling(answer, name)
            if chosen != observed[name]:
                raise LearnerError(
                    f"{name}: you chose {chosen!r}; the experiment found {observed[name]!r} "
                    "the steadiest over r.",
                    _SCALING_HINTS.get((name, chosen), "redo the derivation for this case."))
    except LearnerError as wrong:
        return verdict(title, wrong.problem, wrong.hint)
    return verdict(title)
