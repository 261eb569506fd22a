"""Self-checks for the exercises: ``check_*(learner_function)`` prints a friendly verdict.

Each checker calls the learner's function on a few cases, compares it with the
verified ``lora_lab`` implementation, and prints either a pass or the first
problem found with a hint aimed at the usual mistake. It returns ``True`` or
``False`` so tests (and curious learners) can use the verdict too.

Why: an exercise without feedback is a guess; a hint that names the usual
mistake turns a wrong answer into the next thing learned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

PASS = "✅"
FAIL = "❌"


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """Run the learner's ``fn``; return ``(result, None)`` or ``(None, description of the error)``."""
    try:
        return fn(*args), None
    except Exception as exc:  # the learner's code may raise anything; report it kindly
        return None, f"your function raised {type(exc).__name__}: {exc}"


def _verdict(title: str, problem: str | None, hint: str | None = None) -> bool:
    """Print the verdict for exercise ``title``; ``problem`` is None when all cases passed."""
    if problem is None:
        print(f"{PASS} {title}: correct. Well done!")
        return True
    print(f"{FAIL} {title}: not yet. {problem}")
    if hint:
        print(f"   Hint: {hint}")
    return False


def _require_callable(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"pass your function itself (without calling it), got {type(fn).__name__}")


def _compare(got: Any, expected: np.ndarray, what: str, atol: float = 1e-8) -> str | None:
    """Return a description of how ``got`` differs from ``expected``, or None if they agree."""
    try:
        got_arr = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return f"{what}: expected an array, got {type(got).__name__}"
    expected = np.asarray(expected, dtype=float)
    if got_arr.shape != expected.shape:
        return f"{what}: expected shape {expected.shape}, got {got_arr.shape}"
    if not np.allclose(got_arr, expected, atol=atol, rtol=1e-6):
        worst = float(np.max(np.abs(got_arr - expected)))
        return f"{what}: values differ from the reference (largest difference {worst:.3g})"
    return None


# --------------------------------------------------------------------------- notebook 01

# --------------------------------------------------------------------------- notebook 02
