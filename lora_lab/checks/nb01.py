"""Self-checks for notebook 01 (rank and the SVD)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..lowrank import (
    break_even_rank,
    energy_captured,
    low_rank_approx,
    singular_values,
    truncation_error,
)
from ._core import compare, least_precise
from ._core import require_callable as _require_callable
from ._core import verdict as _verdict

__all__ = [
    "check_break_even",
    "check_energy_kept",
    "check_low_rank_approx",
    "check_relative_error",
]


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """Run the learner's ``fn``: ``(result, None)``, or ``(None, what went wrong)`` if it raised."""
    try:
        return fn(*args), None
    except Exception as exc:  # the learner's code may raise anything; report it kindly
        return None, f"your function raised {type(exc).__name__}: {exc}"


def _compare(got: Any, expected: Any, what: str, *inputs: Any) -> str | None:
    """Dtype-aware comparison: the tolerance follows the least precise of got and inputs."""
    return compare(got, expected, what, dtype=least_precise(got, *inputs))


# --------------------------------------------------------------------------- notebook 01

def _nb01_run(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None, str | None]:
    """Call ``fn`` on copies of ``args``; return ``(result, problem, hint)``.

    Why copies: a function that edits its input in place must not change the
    reference answer it is compared with.
    """
    copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
    got, error = _call(fn, *copies)
    if error is not None:
        if "NotImplementedError" in error:
            return None, error, ("replace the line `raise NotImplementedError(...)` with your "
                                 "code, run that cell, then run this check again.")
        return None, error, "call your function on a small example and read the error message."
    if got is None:
        return None, "your function returned None.", "did you forget the `return` line?"
    return got, None, None


def _nb01_number(got: Any) -> float | None:
    """``got`` as a float if it is a single real number (0-d arrays too), else None."""
    if isinstance(got, (bool, np.bool_)):
        return None
    try:
        value = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return None
    return float(value) if value.shape == () else None


def _nb01_match(got: Any, mistakes: list[tuple[Any, str]], expected: Any) -> str | None:
    """The hint of the first known mistake equal to ``got`` (and not to ``expected``)."""
    for wrong, hint in mistakes:
        if _compare(wrong, expected, "") is not None and _compare(got, wrong, "") is None:
            return hint
    return None


def _nb01_matrices() -> list[np.ndarray]:
    """Three small test matrices: tall, wide and square (seeded, distinct singular values)."""
    rng = np.random.default_rng(1)
    return [rng.normal(size=(7, 5)), rng.normal(size=(4, 9)), rng.normal(size=(5, 5))]


def check_low_rank_approx(my_low_rank_approx: Callable[[np.ndarray, int], np.ndarray]) -> bool:
    """Check ``my_low_rank_approx(M, k)`` -> best rank-k approximation of M, shape (m, n).

    Compared with :func:`lora_lab.lowrank.low_rank_approx` on a tall, a wide and a
    square matrix (the last at full rank). Why: the truncated SVD is the yardstick
    for every low-rank update in this course, so it has to be exactly right.
    """
    _require_callable(my_low_rank_approx)
    title = "my_low_rank_approx"
    for M, k in zip(_nb01_matrices(), (2, 1, 5), strict=True):
        got, problem, hint = _nb01_run(my_low_rank_approx, M, k)
        if problem is not None:
            return _verdict(title, problem, hint)
        expected = low_rank_approx(M, k)
        problem = _compare(got, expected, f"for M of shape {M.shape} and k={k}")
        if problem is None:
            continue
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        p = S.size
        mistakes = [
            (U[:, :k] @ Vt[:k], "the singular values are missing: each piece is "
                                "S[i] * outer(U[:, i], Vt[i]), so scale by S."),
            ((U[:, p - k:] * S[p - k:]) @ Vt[p - k:],
             "np.linalg.svd sorts the singular values largest first, so the strongest "
             "pieces are the first k (indices 0 .. k-1), not the last k."),
            (M, "you returned M itself; keep only the first k rank-1 pieces of its SVD."),
        ]
        if k < p:
            mistakes.append(((U[:, :k + 1] * S[:k + 1]) @ Vt[:k + 1],
                             "you kept k + 1 pieces. Python's range(k) and the slice [:k] "
                             "already give exactly k of them (0 .. k-1)."))
        if k > 1:
            mistakes.append(((U[:, :k - 1] * S[:k - 1]) @ Vt[:k - 1],
                             "you kept k - 1 pieces: the loop or slice stops one too early."))
        hint = _nb01_match(got, mistakes, expected) or (
            "the best rank-k approximation is the sum of the first k pieces "
            "S[i] * np.outer(U[:, i], Vt[i]) from U, S, Vt = np.linalg.svd(M).")
        return _verdict(title, problem, hint)
    return _verdict(title, None)


def check_energy_kept(my_energy_kept: Callable[[np.ndarray, int], float]) -> bool:
    """Check ``my_energy_kept(s, k)`` -> fraction of energy kept by the top k singular values.

    ``s`` (p,) is sorted largest first; the answer is ``sum(s[:k]**2) / sum(s**2)``,
    a number in [0, 1], compared with :func:`lora_lab.lowrank.energy_captured`.
    Why: "how much of the matrix survives rank k?" is the question every rank
    choice in this course asks.
    """
    _require_callable(my_energy_kept)
    title = "my_energy_kept"
    cases = ((np.array([4.0, 3.0, 2.0, 1.0]), 1), (np.array([10.0, 2.0, 1.0, 0.5, 0.5]), 2),
             (np.array([3.0, 2.0, 2.0]), 3))
    for s, k in cases:
        call = f"my_energy_kept(s={s.tolist()}, k={k})"
        got, problem, hint = _nb01_run(my_energy_kept, s, k)
        if problem is not None:
            return _verdict(title, f"{call}: {problem}", hint)
        value = _nb01_number(got)
        expected = energy_captured(s, k)
        if value is None:
            return _verdict(title, f"{call} returned {type(got).__name__}, not one number.",
                            "return a single float, e.g. float(...).")
        if np.isclose(value, expected, rtol=1e-9, atol=1e-12):
            continue
        total = np.sum(s**2)
        mistakes = [
            (np.sum(s[:k]) / np.sum(s), "energy adds up *squared* singular values: "
                                         "sum(s[:k]**2) / sum(s**2)."),
            (np.sum(s[:k] ** 2), "divide by the total energy sum(s**2) to get a fraction."),
            (100 * expected, "return a fraction between 0 and 1, not a percentage."),
            (np.sqrt(expected), "no square root here: energy is a ratio of sums of squares."),
            (1 - expected, "that is the energy thrown away; we want the energy kept."),
            (np.sum(s[:k + 1] ** 2) / total if k < s.size else expected,
             "you kept k + 1 values: s[:k] already holds the first k."),
        ]
        hint = _nb01_match(value, mistakes, expected) or (
            "square the singular values, add up the first k, divide by the sum of all.")
        return _verdict(title, f"{call} returned {value:.4g}, expected {expected:.4g}.", hint)
    return _verdict(title, None)


def check_relative_error(my_relative_error: Callable[[np.ndarray, int], float]) -> bool:
    """Check ``my_relative_error(M, k)`` -> ``||M - M_k||_F / ||M||_F`` for the best rank-k M_k.

    Compared with :func:`lora_lab.lowrank.truncation_error` divided by the norm of M,
    on a tall, a wide and a square matrix. Either route counts: build M_k and
    measure, or use Eckart-Young's formula from the singular values. Why: a relative
    error is comparable across matrices of any size and scale.
    """
    _require_callable(my_relative_error)
    title = "my_relative_error"
    for M, k in zip(_nb01_matrices(), (2, 1, 5), strict=True):
        call = f"my_relative_error(M of shape {M.shape}, k={k})"
        got, problem, hint = _nb01_run(my_relative_error, M, k)
        if problem is not None:
            return _verdict(title, f"{call}: {problem}", hint)
        value = _nb01_number(got)
        if value is None:
            return _verdict(title, f"{call} returned {type(got).__name__}, not one number.",
                            "return a single float, e.g. float(np.linalg.norm(...) / ...).")
        s = singular_values(M)
        norm = float(np.sqrt(np.sum(s**2)))
        expected = truncation_error(s, k) / norm
        if np.isclose(value, expected, rtol=1e-7, atol=1e-9):
            continue
        tail = s[k:]
        mistakes = [
            (expected * norm, "divide by ||M||_F: the error should be relative to the size of M."),
            (expected**2, "take the square root: the Frobenius norm is the square root of the "
                          "sum of squares."),
            ((tail[0] if tail.size else 0.0) / norm,
             "that is only the largest thrown-away singular value (the spectral-norm error); "
             "the Frobenius error adds up all of them: sqrt(s[k]**2 + s[k+1]**2 + ...)."),
            (np.sum(tail) / np.sum(s), "square the singular values before adding them up."),
            (float(np.sqrt(np.sum(s[k + 1:] ** 2))) / norm,
             "you skipped one: the thrown-away values start at index k (s[k:]), because "
             "s[0] .. s[k-1] are the k kept."),
            (float(np.sqrt(np.sum(s[max(k - 1, 0):] ** 2))) / norm,
             "you threw away one too many: s[:k] are kept, so the tail is s[k:]."),
        ]
        hint = _nb01_match(value, mistakes, expected) or (
            "build M_k, then return np.linalg.norm(M - M_k) / np.linalg.norm(M).")
        return _verdict(title, f"{call} returned {value:.4g}, expected {expected:.4g}.", hint)
    return _verdict(title, None)


def check_break_even(my_largest_saving_rank: Callable[[int, int], int]) -> bool:
    """Check ``my_largest_saving_rank(m, n)`` -> largest rank k whose factors save storage.

    Factors of rank k store ``k (m + n)`` numbers, the full matrix ``m n``; the answer
    is the largest whole k with ``k (m + n) < m n`` (strictly: equal cost saves
    nothing), i.e. the largest integer below :func:`lora_lab.lowrank.break_even_rank`.
    Why: it is the rank above which "low rank" stops paying for itself.
    """
    _require_callable(my_largest_saving_rank)
    title = "my_largest_saving_rank"
    for m, n in ((600, 512), (4, 4), (5, 7), (768, 3072), (4096, 4096), (3, 6)):
        call = f"my_largest_saving_rank({m}, {n})"
        got, problem, hint = _nb01_run(my_largest_saving_rank, m, n)
        if problem is not None:
            return _verdict(title, f"{call}: {problem}", hint)
        even = break_even_rank(m, n)
        expected = int(np.ceil(even)) - 1
        value = _nb01_number(got)
        if value is None or not value.is_integer():
            shown = f"{value:.4g}" if value is not None else type(got).__name__
            return _verdict(title, f"{call} returned {shown}, not a whole number.",
                            "a rank is a whole number: the largest integer k with "
                            "k * (m + n) < m * n.")
        if int(value) == expected:
            continue
        mistakes = [
            (np.floor(even), "at exactly k = m n / (m + n) the factors cost as much as the "
                             "matrix, which saves nothing: you need k (m + n) < m n, strictly."),
            (np.round(even), "rounding can land on or above the break-even point; take the "
                             "largest whole k that is strictly below it."),
            (np.ceil(even), "that rank costs at least as much as the full matrix; go one lower."),
            (min(m, n) // 2, "min(m, n) / 2 is the break-even only for square matrices; use "
                             "m n / (m + n)."),
            (min(m, n), "that is the largest possible rank, not the largest one that saves "
                        "storage."),
        ]
        hint = _nb01_match(value, mistakes, float(expected)) or (
            "factors of rank k store k * (m + n) numbers and the matrix m * n: find the "
            "largest k with k * (m + n) < m * n.")
        return _verdict(title, f"{call} returned {int(value)}, expected {expected}.", hint)
    return _verdict(title, None)


