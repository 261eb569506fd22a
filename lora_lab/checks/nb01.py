"""Self-checks for the exercises of notebook 01 (rank and the SVD).

Each checker is cases + a reference from :mod:`lora_lab.lowrank` + a table of
``Mistake(value, hint)``, over the shared core (:mod:`._core`). Tolerances follow
the precision the learner computed in (:func:`._core.least_precise`), and are never
tighter than float32's for a single number (``SCALAR_FLOOR``), so a correct
float32 answer passes. Answers that are values (``name = ...`` in the notebook)
count as "not answered yet" while they are still the literal ``...``.

Why these four: each one practises a step learners really get wrong -- the
maths counts singular values from 1 and NumPy from 0; the truncated SVD is a
minimum, so small changes cost only second order; "99% of the energy" is not
"1% error"; and relative error and energy are linked by Pythagoras.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._validate import as_array, as_matrix, check_real
from ..lowrank import energy_curve, singular_values, truncation_error
from ._core import (
    ERROR_HINT,
    RTOL,
    LearnerError,
    Mistake,
    call,
    compare,
    judge,
    least_precise,
    match_mistake,
    number,
    one_number,
    run_checker,
)

__all__ = [
    "check_energy_rank",
    "check_rank_2_errors",
    "check_relative_error",
    "check_shrink_prediction",
]

#: A single number carries no trace of the precision it was computed in (float(x) of a float32
#: result is a Python float), so single-number answers are accepted to float32 precision at
#: least. No typical mistake comes within that tolerance of the right answer.
SCALAR_FLOOR = "float32"

ROUNDED = ("very close, but not equal: if you typed digits from a printout, they were rounded. "
           "Compute the answer from the array's entries themselves (S[i]), not from printed "
           "digits, so that no digits are lost.")


# --------------------------------------------------------------------------- shared helpers

def _scalar_dtype(*values: Any) -> str:
    """The dtype whose tolerance a single-number answer is judged with (see SCALAR_FLOOR)."""
    return max(least_precise(*values), SCALAR_FLOOR, key=RTOL.__getitem__)


def _expect(name: str, got: float, expected: float, mistakes: list[Mistake], *, dtype: str,
            scale: float, what: str) -> None:
    """Raise :class:`LearnerError` with the matching hint unless ``got`` equals ``expected``."""
    if compare(got, expected, name, dtype=dtype, scale=scale) is None:
        return
    hint = match_mistake(got, mistakes, expected, dtype=dtype, scale=scale)
    if hint is None and abs(got - expected) <= 5e-3 * abs(expected):
        hint = ROUNDED
    raise LearnerError(f"{name} = {got:.4g} is not {what}.",
                       hint or f"look again at the formula for {what} in the text above.")


# --------------------------------------------------------------------------- exercise 1

def _spectral_mistakes(s: np.ndarray, norm: float) -> list[Mistake]:
    frobenius = float(np.sqrt(np.sum(s[2:] ** 2)))
    return [
        Mistake(s[3], "that is sigma_4 = S[3]. NumPy counts from 0: sigma_1 is S[0], so "
                      "sigma_3 is S[2]."),
        Mistake(s[1], "that is sigma_2 = S[1], the smallest singular value that rank 2 keeps. "
                      "The spectral error is the largest one it drops: sigma_3."),
        Mistake(frobenius, "that is the Frobenius error sqrt(sigma_3² + sigma_4²); the spectral "
                           "error is only the largest dropped value, sigma_3."),
        Mistake(s[2] / norm, "that is relative to ||M||_F; the exercise asks for the error "
                             "itself."),
    ]


def _frobenius_mistakes(s: np.ndarray, norm: float) -> list[Mistake]:
    tail = s[2:]
    return [
        Mistake(np.sqrt(np.sum(s[3:] ** 2)),
                "you started at S[3], which is sigma_4. Rank 2 drops sigma_3, sigma_4, ...: "
                "counting from 0, that is S[2:]."),
        Mistake(np.sqrt(np.sum(s[1:] ** 2)),
                "you started at S[1] = sigma_2, which rank 2 keeps. The dropped values start "
                "at sigma_3 = S[2]."),
        Mistake(s[2], "that is only sigma_3, the spectral error. The Frobenius error adds up "
                      "every dropped square: sqrt(sigma_3² + sigma_4² + ...)."),
        Mistake(np.sum(tail), "square the dropped singular values before adding them, then "
                              "take the square root."),
        Mistake(np.sum(tail**2), "that is the squared error: take the square root at the end."),
        Mistake(np.sqrt(np.sum(s[:2] ** 2)),
                "that is the size of the part rank 2 keeps, ||M_2||_F. The error is the part it "
                "drops."),
        Mistake(np.sqrt(np.sum(tail**2)) / norm,
                "that is relative to ||M||_F; the exercise asks for the error itself."),
    ]


def check_rank_2_errors(spectral_error_2: Any, frobenius_error_2: Any, M: np.ndarray) -> bool:
    """Check the errors of the best rank-2 approximation M_2 of ``M``, read off its singular values.

    ``spectral_error_2`` should be ``||M - M_2||_2 = sigma_3`` and
    ``frobenius_error_2`` ``||M - M_2||_F = sqrt(sigma_3² + sigma_4² + ...)``, where
    the maths counts sigma_1 >= sigma_2 >= ... from 1 (so sigma_3 is NumPy's
    ``S[2]``). ``M`` (m, n) needs min(m, n) >= 4, so that the two errors differ.
    Reference: :func:`lora_lab.lowrank.truncation_error`. Raises ``ValueError``
    or ``TypeError`` for an unsuitable ``M``. Why: translating sigma_{k+1} into
    an index is where 1-based maths meets 0-based code.
    """
    M = as_matrix(M, "M")
    if min(M.shape) < 4:
        raise ValueError(f"M must have at least 4 rows and 4 columns, got shape {M.shape}")
    s = singular_values(M)
    norm = truncation_error(s, 0)

    def check() -> None:
        spectral = one_number(spectral_error_2, "spectral_error_2")
        frobenius = one_number(frobenius_error_2, "frobenius_error_2")
        dtype = _scalar_dtype(spectral_error_2, frobenius_error_2, M)
        _expect("spectral_error_2", spectral, truncation_error(s, 2, norm="spectral"),
                _spectral_mistakes(s, norm), dtype=dtype, scale=float(s[0]),
                what="the spectral error of the best rank-2 approximation")
        _expect("frobenius_error_2", frobenius, truncation_error(s, 2),
                _frobenius_mistakes(s, norm), dtype=dtype, scale=float(s[0]),
                what="the Frobenius error of the best rank-2 approximation")

    return judge("spectral_error_2 and frobenius_error_2", check)


# --------------------------------------------------------------------------- exercise 2

SHRINK_OPTIONS = (1, 10, 100)
_SHRINK_HINTS = {
    1: "a 10 times smaller nudge puts the candidate 10 times closer to the truncated SVD, so "
       "the gap does shrink. The question is how fast.",
    10: "a gap proportional to the step is what you get on a slope. But the truncated SVD is "
        "the *best* rank-k matrix (Eckart-Young), the bottom of the valley, and at a lowest "
        "point the slope is zero: there the gap grows like the square of the step, and "
        "(1/10)² = 1/100.",
}


def check_shrink_prediction(shrink_factor: Any, measured_ratio: float) -> bool:
    """Check a prediction (1, 10 or 100) against the ratio the notebook's experiment measured.

    ``measured_ratio`` (> 0) is gap(nudge 10^-3) / gap(nudge 10^-4): how many times
    the nudged SVD's excess error shrank when the nudge shrank 10 times. The right
    option is the one closest to it on a log scale. Raises ``TypeError`` or
    ``ValueError`` for a ``measured_ratio`` that is not a positive real number.
    Why: at a minimum the first-order change vanishes, which is what "the truncated
    SVD is optimal" means locally.
    """
    measured = check_real(measured_ratio, "measured_ratio", positive=True)
    expected = min(SHRINK_OPTIONS, key=lambda option: abs(np.log(measured / option)))

    def check() -> None:
        got = one_number(shrink_factor, "shrink_factor", example="10")
        if got not in SHRINK_OPTIONS:
            raise LearnerError(f"shrink_factor = {got:g} is not one of the options.",
                               "set shrink_factor to 1, 10 or 100.")
        if got != expected:
            hint = _SHRINK_HINTS.get(int(got)) if expected == 100 else None
            raise LearnerError(
                f"you predicted {got:g}; the experiment measured {measured:.3g}.",
                hint or "pick the option closest to what the experiment measured; the text "
                        "after this check explains why it comes out that way.")

    return judge("shrink_factor", check)


# --------------------------------------------------------------------------- exercise 3

def _smallest_rank(fraction: np.ndarray, target: float) -> int:
    """The smallest k (from 1) with ``fraction[k - 1] >= target``; the last one if none is."""
    reached = np.flatnonzero(fraction >= target)
    return int(reached[0]) + 1 if reached.size else fraction.size


def _energy_rank_mistakes(s: np.ndarray, energy: np.ndarray, target: float,
                          expected: int) -> list[Mistake]:
    unsquared = _smallest_rank(np.cumsum(s) / max(float(np.sum(s)), 1e-300), target)
    strict = 1 - (1 - target) ** 2  # a relative error of 1 - target needs this much energy
    by_error = _smallest_rank(energy, strict)
    below = energy[expected - 2] if expected > 1 else 0.0
    return [
        Mistake(expected - 1, f"rank {expected - 1} keeps only {below:.3%} of the energy, just "
                              f"under {target:.0%}. np.argmax, np.searchsorted and counting "
                              "(np.sum(energy < target)) all give a position counted from 0, "
                              "and energy[k - 1] is E(k): the rank is that position + 1."),
        Mistake(unsquared, "energy adds up *squared* singular values, "
                           "E(k) = (sigma_1² + ... + sigma_k²) / (sigma_1² + ... + sigma_p²): "
                           "use `energy`, or s**2, not s itself."),
        Mistake(by_error, f"that rank has a relative error under {1 - target:.0%}, which takes "
                          f"{strict:.2%} of the energy. The question asks for {target:.0%} of "
                          "the energy, a much lower bar."),
    ]


def check_energy_rank(k99: Any, s: np.ndarray, target: float = 0.99) -> bool:
    """Check ``k99``: the smallest rank whose best approximation keeps ``target`` of the energy.

    ``s`` (p,) are singular values, largest first; the reference is the first k
    with ``lora_lab.energy_curve(s)[k - 1] >= target`` (``target`` in (0, 1)).
    Raises ``ValueError``/``TypeError`` for bad ``s`` or ``target``. Why: "which
    rank do I need?" is the question every use of low rank starts with.
    """
    s = as_array(s, "s", ndim=1)
    energy = energy_curve(s)
    target = check_real(target, "target", low=0.0, high_exclusive=1.0)
    if target == 0:
        raise ValueError("target must be > 0, got 0.0")
    expected = _smallest_rank(energy, target)

    def check() -> None:
        got = one_number(k99, "k99", example="10")
        if not got.is_integer() or not 1 <= got <= energy.size:
            raise LearnerError(f"k99 = {got:g} is not a rank.",
                               f"a rank is a whole number from 1 to {energy.size}.")
        k = int(got)
        if k == expected:
            return
        hint = match_mistake(k, _energy_rank_mistakes(s, energy, target, expected), expected)
        if hint is None and k < expected:
            hint = f"rank {k} keeps {energy[k - 1]:.3%} of the energy, less than {target:.0%}."
        elif hint is None:
            hint = (f"rank {k} keeps at least {target:.0%}, but so does rank {k - 1} "
                    f"({energy[k - 2]:.3%}); the smallest such rank is asked.")
        raise LearnerError(f"k99 = {k} is not the smallest rank that keeps {target:.0%} of "
                           "the energy.", hint)

    return judge("k99", check)


# --------------------------------------------------------------------------- exercise 4

RELATIVE_ERROR_CASES = (
    (np.array([4.0, 3.0, 2.0, 1.0]), 2),
    (np.array([10.0, 2.0, 1.0, 0.5, 0.5]), 1),
    (np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], dtype=np.float32), 3),
    (np.array([3.0, 2.0, 2.0]), 3),  # k = p: nothing is dropped, the error is exactly 0
    # k = p again, on a spectrum where E(p) read off np.cumsum overshoots 1 by 2e-16, so that
    # sqrt(1 - E(p)) is NaN: a cumulative-sum answer must clip (tests/test_checks_01.py)
    (np.array([0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.3, 0.1, 0.1]), 10),
)


def _relative_error_mistakes(s: np.ndarray, k: int) -> list[Mistake]:
    total = float(np.sum(s**2))
    kept = float(np.sum(s[:k] ** 2)) / total
    mistakes = [
        Mistake(np.sqrt(1 - np.sum(s[1:k + 1] ** 2) / total),
                "you kept sigma_2 .. sigma_{k+1}, i.e. s[1:k+1] or range(1, k + 1). NumPy "
                "counts from 0: the first k singular values are s[0] .. s[k-1], i.e. s[:k]."),
        Mistake(np.sqrt(1 - np.sum(s[:k - 1] ** 2) / total),
                "you kept only k - 1 values: s[:k-1] (or dropping from s[k-1:]) is one short. "
                "The first k are s[:k], and the dropped ones start at s[k]."),
        Mistake(np.sqrt(np.sum(s[k + 1:] ** 2) / total),
                "you skipped one: the dropped values start at s[k] (that is sigma_{k+1}), "
                "so the tail is s[k:]."),
        Mistake(kept, "that is the energy kept, E(k), close to 1 when the approximation is "
                      "good. The error measures what is dropped."),
        Mistake(1 - kept, "that is the squared relative error, 1 - E(k): take its square root."),
        Mistake(np.sqrt(kept), "that is ||M_k||_F / ||M||_F, the relative size of what is kept."),
        Mistake(1 - np.sqrt(kept), "norms do not subtract, squares do (Pythagoras): "
                                   "||M||² = ||M_k||² + ||M - M_k||²."),
        Mistake(np.sqrt(np.sum(s[k:] ** 2)), "divide by ||M||_F = sqrt(sum of all s²): the "
                                             "error should be relative to the size of M."),
        Mistake(np.sum(s[k:]) / np.sum(s), "square the singular values before adding them up."),
    ]
    if k < s.size:
        spectral = ("that is sigma_{k+1}, the spectral-norm error. The Frobenius error adds up "
                    "every dropped square: sqrt(s[k]² + s[k+1]² + ...) / ||M||_F.")
        mistakes += [Mistake(s[k] / np.sqrt(total), spectral), Mistake(s[k] / s[0], spectral)]
    return mistakes


def _relative(s: np.ndarray, k: int) -> float:
    """The reference: ||M - M_k||_F / ||M||_F for singular values ``s``."""
    return truncation_error(s, k) / truncation_error(s, 0)


def _ignores_s(fn: Callable[..., Any], s: np.ndarray, k: int, value: float) -> bool:
    """Whether ``fn`` returns ``value`` again for another spectrum whose answer differs."""
    other = np.ones_like(s)  # flat: relative error sqrt((p - k) / p)
    if np.isclose(_relative(other, k), _relative(s, k)):
        return False
    try:
        again = number(call(fn, other, k))
    except LearnerError:
        return False
    return again is not None and bool(np.isclose(again, value, rtol=1e-9, atol=0.0))


def _relative_error_hint(fn: Callable[..., Any], s: np.ndarray, k: int, value: float,
                         expected: float, dtype: str) -> str:
    """The hint for a wrong ``value`` of ``fn(s, k)``: a NaN, a listed mistake, or ``s`` unused."""
    if np.isnan(value) and expected == 0:
        return ("at k = p nothing is dropped and the error is 0. If you computed "
                "sqrt(1 - E(k)) with E(k) read off a cumulative sum (np.cumsum, energy[k - 1]), "
                "rounding can make 1 - E(k) a hair below 0: use np.sqrt(max(1 - E, 0)), or "
                "add up the dropped squares directly.")
    hint = match_mistake(value, _relative_error_mistakes(s.astype(float), k), expected,
                         dtype=dtype, scale=1.0)
    if hint is None and _ignores_s(fn, s, k, value):
        hint = ("your function gives the same number whatever `s` is: use the argument `s`, "
                "not the notebook's `energy` (or another array defined outside the function).")
    return hint or "relative error² = (sum of the dropped s²) / (sum of all s²)."


def _check_relative_error_case(fn: Callable[..., Any], case: tuple[np.ndarray, int]) -> None:
    s, k = case
    where = f"my_relative_error(s={np.round(s.astype(float), 3).tolist()}, k={k})"
    got = call(fn, s, k, names=("s",), error_hint=_error_hint,
               in_place_hint="build new arrays (`s**2`, `np.sort(s)`) instead of changing `s` "
                             "in place.")
    value = number(got)
    if value is None:
        raise LearnerError(f"{where} returned {type(got).__name__}, not one number.",
                           "return a single number, e.g. float(...).")
    expected = _relative(s, k)
    if value < 0:
        raise LearnerError(f"{where} returned {value:.4g}, expected {expected:.4g}.",
                           "an error is a length and is never negative.")
    dtype = _scalar_dtype(got, s)
    # Compared as squares: sqrt(1 - E(k)) is exact in its square, and 1 - E(k) rounds to
    # ~1e-7 (float32) near zero, so a correct answer may be sqrt(1e-7), not 0.
    if compare(value**2, expected**2, where, dtype=dtype, scale=1.0) is None:
        return
    raise LearnerError(f"{where} returned {value:.4g}, expected {expected:.4g}.",
                       _relative_error_hint(fn, s, k, value, expected, dtype))


def _error_hint(problem: str) -> str:
    if "IndexError" in problem:
        return ("s has p entries, s[0] .. s[p-1]: at k = p there is no s[k]. Slices like "
                "s[k:] are safe (empty at k = p); single indices are not.")
    return ERROR_HINT


def check_relative_error(my_relative_error: Callable[[np.ndarray, int], float]) -> bool:
    """Check ``my_relative_error(s, k)`` -> ``||M - M_k||_F / ||M||_F`` from singular values.

    ``s`` (p,) are the singular values of some M, largest first (float64 or
    float32), ``k`` in [1, p]; the answer is ``sqrt(1 - E(k))``, equivalently
    ``sqrt(sum(s[k:]**2) / sum(s**2))``. Reference: :func:`lora_lab.lowrank.truncation_error`.
    Raises ``TypeError`` if ``my_relative_error`` is not callable. Why: the
    relative error is the measure this course judges approximations by, and it
    follows from the energy by Pythagoras.
    """
    return run_checker("my_relative_error", my_relative_error, _check_relative_error_case,
                       RELATIVE_ERROR_CASES)
