"""The machinery every exercise self-check shares.

A checker calls the learner's function safely, compares what comes back with the
verified ``lora_lab`` reference at a tolerance that follows the numbers' precision,
matches a wrong answer against a table of typical mistakes, and prints one
friendly verdict. Each notebook's checkers (``nb01``, ``nb02``, ...) are written
as cases + reference + a table of ``(mistake, hint)`` over these helpers.

Why: an exercise without feedback is a guess; a hint that names the actual
mistake turns a wrong answer into the next thing learned. And a checker that
rejects a correct float32 answer teaches the wrong lesson, so tolerances follow
the dtype the learner computed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PASS = "✅"
FAIL = "❌"

#: Relative tolerance by precision, relative to the scale of the numbers involved.
#: float32 keeps ~7 digits, and a matrix product of a few dozen terms loses about two.
RTOL = {"float64": 1e-9, "float32": 3e-5, "float16": 5e-3, "bfloat16": 3e-2}

STUB_HINT = ("replace the line `raise NotImplementedError(...)` with your code, run that cell, "
             "then run this check again.")
ERROR_HINT = "call your function on a small example yourself and read the error from the top."
ANSWER_HINT = ("replace `...` in `{name} = ...` with your answer, run that cell, then run this "
               "check again.")


class LearnerError(Exception):
    """The learner's function raised, returned None, or changed its input."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem, self.hint = problem, hint


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer (computed for the case at hand) and the hint that names it."""

    value: Any
    hint: str


def require_callable(fn: Any) -> None:
    """Raise ``TypeError`` unless ``fn`` is callable (a learner passed ``f()`` instead of ``f``)."""
    if not callable(fn):
        raise TypeError(f"pass your function itself (without calling it), got {type(fn).__name__}")


IN_PLACE_HINT = ("build new arrays instead of changing an argument in place (`+=`, `.sort()`, "
                 "`out=`): the caller's data must stay as it was.")


def call(fn: Callable[..., Any], *args: Any, names: Sequence[str] = (),
         error_hint: Callable[[str], str] | None = None,
         in_place_hint: str = IN_PLACE_HINT) -> Any:
    """Call ``fn`` on copies of ``args`` and return its result, or raise :class:`LearnerError`.

    Arrays and tensors are copied, so a function that edits its input cannot
    change the reference answer; when ``names`` are given, such an edit is
    reported by name, with ``in_place_hint`` (give the exercise's own words, e.g.
    "LoRA never modifies the frozen W0"). ``error_hint(problem)`` may give a
    notebook-specific hint for an exception.
    """
    copies = [_copy(a) for a in args]
    try:
        got = fn(*copies)
    except Exception as exc:  # the learner's code may raise anything: report it kindly
        problem = f"your function raised {type(exc).__name__}: {exc}"
        if isinstance(exc, NotImplementedError):
            raise LearnerError(problem, STUB_HINT) from None
        raise LearnerError(problem, error_hint(problem) if error_hint else ERROR_HINT) from None
    if got is None:
        raise LearnerError("your function returned None.", "did you forget the `return` line?")
    for name, original, copy in zip(names, args, copies, strict=False):
        if _is_array(original) and not np.array_equal(to_numpy(copy), to_numpy(original)):
            raise LearnerError(f"your function changed its argument {name} in place.",
                               in_place_hint)
    return got


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch")


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if hasattr(value, "clone") and type(value).__module__.startswith("torch"):
        return value.detach().clone()
    return value


def dtype_name(value: Any) -> str:
    """``"float64"``, ``"float32"``, ``"float16"`` or ``"bfloat16"``: the precision of ``value``.

    Python numbers and integer arrays count as float64; torch tensors report their dtype.
    """
    dtype = getattr(value, "dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float64"
    return name if name in RTOL else "float64"


def least_precise(*values: Any) -> str:
    """The least precise float dtype among ``values`` (see :func:`dtype_name`)."""
    return max((dtype_name(v) for v in values), key=lambda name: RTOL[name])


def to_numpy(value: Any) -> np.ndarray:
    """``value`` (array, tensor, number, nested list) as a float64 NumPy array.

    Raises ``TypeError``/``ValueError`` for things that are not numbers.
    """
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a bool is not a number here")
    return np.asarray(value, dtype=np.float64)


def compare(got: Any, expected: Any, what: str, *, dtype: str = "float64",
            scale: float | None = None) -> str | None:
    """How ``got`` differs from ``expected``, or None when they agree to ``dtype``'s precision.

    The tolerance is ``RTOL[dtype] * scale``, where ``scale`` defaults to the
    largest absolute value of ``expected`` (at least 1e-30): pass the size of the
    inputs when the answer itself may be near zero (an error of an exact fit).
    """
    try:
        got_arr = to_numpy(got)
    except (TypeError, ValueError):
        return f"{what}: expected numbers, got {type(got).__name__}"
    expected_arr = to_numpy(expected)
    if got_arr.shape != expected_arr.shape:
        return f"{what}: expected shape {expected_arr.shape}, got {got_arr.shape}"
    if not np.all(np.isfinite(got_arr)):
        return f"{what}: your answer contains NaN or inf"
    if scale is None:
        scale = float(np.max(np.abs(expected_arr), initial=0.0))
    tolerance = RTOL[dtype] * max(scale, 1e-30)
    worst = float(np.max(np.abs(got_arr - expected_arr), initial=0.0))
    if worst > tolerance:
        return f"{what}: values differ from the reference (largest difference {worst:.3g})"
    return None


def number(got: Any) -> float | None:
    """``got`` as a float if it is one real number (a 0-d array or 1-element tensor too)."""
    if got is None or isinstance(got, (bool, np.bool_, str, bytes)):
        return None
    try:
        value = to_numpy(got)
    except (TypeError, ValueError):
        return None
    return float(value.reshape(())) if value.size == 1 and value.ndim <= 1 else None


def require_answered(**answers: Any) -> None:
    """Raise :class:`LearnerError` ("not answered yet") if an answer is still the stub's ``...``."""
    missing = [name for name, value in answers.items() if value is Ellipsis]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise LearnerError(f"not answered yet: {', '.join(missing)} {verb} still `...`.",
                           ANSWER_HINT.format(name=missing[0]))


def one_number(value: Any, name: str, example: str = "0.5") -> float:
    """``value`` as one real number, or :class:`LearnerError` saying what it is instead.

    ``example`` is shown in the hint: pick one that fits the exercise (an allowed option).
    """
    require_answered(**{name: value})
    hint = (f"set {name} to one number such as {example} (an expression is fine; not a "
            "list of several numbers, a string or a function).")
    if value is None:
        raise LearnerError(f"{name} is None, not a number.", hint)
    if callable(value):
        raise LearnerError(f"{name} is a function, but the exercise asks for a number.", hint)
    got = number(value)
    if got is None:
        raise LearnerError(f"{name} should be one number, got {type(value).__name__}.", hint)
    return got


def match_mistake(got: Any, mistakes: Sequence[Mistake], expected: Any, *,
                  dtype: str = "float64", scale: float | None = None) -> str | None:
    """The hint of the first mistake equal to ``got`` (and different from ``expected``)."""
    for mistake in mistakes:
        if (compare(mistake.value, expected, "", dtype=dtype, scale=scale) is not None
                and compare(got, mistake.value, "", dtype=dtype, scale=scale) is None):
            return mistake.hint
    return None


def verdict(title: str, problem: str | None = None, hint: str | None = None) -> bool:
    """Print the verdict for exercise ``title`` (``problem`` None: passed); return it."""
    if problem is None:
        print(f"{PASS} {title}: correct. Well done!")
        return True
    print(f"{FAIL} {title}: not yet. {problem}")
    if hint:
        print(f"   Hint: {hint}")
    return False


def judge(title: str, check: Callable[[], None]) -> bool:
    """Run ``check()``; print the verdict (its :class:`LearnerError`, or a pass) and return it."""
    try:
        check()
    except LearnerError as wrong:
        return verdict(title, wrong.problem, wrong.hint)
    return verdict(title)


def run_checker(title: str, fn: Any, check_case: Callable[[Callable[..., Any], Any], None],
                cases: Sequence[Any]) -> bool:
    """Run ``check_case(fn, case)`` over ``cases``; print the first problem or a pass.

    ``check_case`` raises :class:`LearnerError` to report a wrong answer; this is
    the one place that turns it into the printed verdict.
    """
    require_callable(fn)
    for case in cases:
        try:
            check_case(fn, case)
        except LearnerError as wrong:
            return verdict(title, wrong.problem, wrong.hint)
    return verdict(title)
