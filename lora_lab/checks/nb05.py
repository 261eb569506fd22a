"""Self-checks for notebook 05 (what LoRA learns: the LoRA paper's §7 at toy scale).

Every exercise of notebook 05 asks for numbers (the learner replaces ``...``), checked
against a reference computed here from ``lora_lab`` -- on the notebook's own spectrum, on
subspaces built here, or on the weight and the amplification factors the notebook measured
-- never against a hard-coded value. Single numbers are compared at float32 precision at
least (:data:`SCALAR_FLOOR`), so an answer computed in float32 passes; no typical mistake
comes that close to a right answer (the random column of exercise 4, worked from a printed
norm, passes within 1 %). Each typical mistake gets its own hint; an answer left at ``None``
is named as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._validate import as_array, as_matrix, check_int
from ..lowrank import energy_curve, subspace_similarity
from ..update_analysis import energy_rank, random_projection_rms, random_similarity
from ._core import (
    RTOL,
    LearnerError,
    Mistake,
    compare,
    judge,
    least_precise,
    match_mistake,
    one_number,
    require_answered,
)

__all__ = [
    "check_amplification_prediction",
    "check_phi_by_hand",
    "check_random_baseline",
    "check_update_k90",
]

SCALAR_FLOOR = "float32"


# --------------------------------------------------------------------------- shared helpers

def _number(raw: Any, name: str) -> float:
    """``raw`` as one number (:func:`one_number`), with ``None`` named as such.

    ``one_number`` turns None into NaN, which would read "k90 = nan is not a rank".
    """
    if raw is None:
        raise LearnerError(f"{name} is None, not a number.",
                           f"replace None in `{name} = None` with your answer, a number (an "
                           "expression is fine), and run that cell again.")
    return one_number(raw, name)


def _expect(name: str, raw: Any, expected: float, mistakes: list[Mistake], fallback: str) -> None:
    """Raise :class:`LearnerError` with the matching hint unless ``raw`` equals ``expected``."""
    got = _number(raw, name)
    dtype = max(least_precise(raw), SCALAR_FLOOR, key=RTOL.__getitem__)
    scale = max(abs(expected), 1.0)
    if compare(got, expected, name, dtype=dtype, scale=scale) is None:
        return
    hint = match_mistake(got, mistakes, expected, dtype=dtype, scale=scale)
    raise LearnerError(f"{name} = {got:.4g} is not right.", hint or fallback)


# --------------------------------------------------------------------------- exercise 1

def _first(curve: np.ndarray, target: float) -> int:
    """The smallest k (from 1) with ``curve[k - 1] >= target`` (the last k if none is)."""
    reached = np.flatnonzero(curve >= target)
    return int(reached[0]) + 1 if reached.size else curve.size


def _k90_mistakes(s: np.ndarray, expected: int, printed: int) -> list[tuple[int, str]]:
    energy = energy_curve(s)
    shown = s[:printed]
    return [
        (expected - 1, f"rank {expected - 1} keeps {energy[expected - 2]:.1%}, just under 90 %. "
                       "Two ways to land here: a share computed by hand and rounded up to "
                       "90 % (keep more digits: it must be at least 0.9), or a position found "
                       "by np.argmax or np.searchsorted, which counts from 0 (the rank is "
                       "that position + 1)."),
        (_first(np.cumsum(shown**2) / np.sum(shown**2), 0.9),
         f"you divided by the energy of the {printed} printed values only; the total is the "
         f"sum of all {s.size} squares, ||ΔW||_F², printed below the spectrum."),
        (_first(np.cumsum(s) / np.sum(s), 0.9),
         "energy adds up *squared* singular values: E(k) = (σ₁² + … + σ_k²) / ||ΔW||_F²."),
        (energy_rank(s, 0.99), "that rank keeps 99 % of the energy; the question asks for 90 %."),
        (energy_rank(s, 0.5), "that rank keeps 50 % of the energy; the question asks for 90 %."),
        (int(np.sum(s >= 0.1 * s[0])),
         "that counts the singular values above a tenth of the largest; the energy asks how "
         "much of the sum of squares the top k hold."),
    ]


def check_update_k90(k90: Any, s: np.ndarray, printed: int = 16) -> bool:
    """Check ``k90``: the smallest k whose top-k singular values of ΔW hold 90 % of its energy.

    ``s`` (p,) are the singular values of the update, largest first (the notebook prints the
    first ``printed`` of them and ``||ΔW||_F² = sum(s**2)``); the reference is
    :func:`lora_lab.update_analysis.energy_rank` ``(s, 0.9)``. Raises ``ValueError`` or
    ``TypeError`` for bad ``s`` or ``printed``. Why: "which rank keeps most of this update?"
    is read off a spectrum, and the denominator is the whole matrix.
    """
    s = as_array(s, "s", ndim=1)
    printed = check_int(printed, "printed", minimum=1, maximum=s.size)
    expected = energy_rank(s, 0.9)
    energy = energy_curve(s)

    def check() -> None:
        got = _number(k90, "k90")
        if not got.is_integer() or not 1 <= got <= s.size:
            raise LearnerError(f"k90 = {got:g} is not a rank.",
                               f"a rank is a whole number from 1 to {s.size}.")
        k = int(got)
        if k == expected:
            return
        hint = next((h for value, h in _k90_mistakes(s, expected, printed)
                     if value == k and value != expected), None)
        if hint is None and k < expected:
            hint = f"the top {k} hold {energy[k - 1]:.1%} of the energy, less than 90 %."
        elif hint is None:
            hint = (f"the top {k} hold at least 90 %, but so do the top {k - 1} "
                    f"({energy[k - 2]:.1%}); the smallest such k is asked.")
        raise LearnerError(f"k90 = {k} is not the smallest k that keeps 90 % of the energy.",
                           hint)

    return judge("k90 of the full update", check)


# --------------------------------------------------------------------------- exercise 2

def _span(d: int, *axes: int) -> np.ndarray:
    """Orthonormal basis (d, len(axes)) of the coordinate axes ``e_a`` (counted from 1)."""
    return np.eye(d)[:, [a - 1 for a in axes]]


def check_phi_by_hand(phi_same: Any, phi_orthogonal: Any, phi_nested: Any) -> bool:
    """Check phi for three pairs of subspaces of R^6 spanned by coordinate axes e1..e6.

    ``phi_same``: span(e1, e2, e3) with itself (i = j = 3); ``phi_orthogonal``:
    span(e1, e2, e3) with span(e4, e5, e6); ``phi_nested``: span(e1, e2) (i = 2) with
    span(e1, ..., e5) (j = 5). References from :func:`lora_lab.lowrank.subspace_similarity`
    on those bases (1, 0 and 1). Why: the two ends of phi's range, and the normalisation by
    min(i, j) that makes a subspace inside a bigger one score 1.
    """
    first = _span(6, 1, 2, 3)
    cases = [
        ("phi_same", phi_same, subspace_similarity(first, first), [
            Mistake(3.0, "||V.T @ V||_F² = ||I₃||_F² = 3 is the overlap before the "
                         "normalisation: divide by min(i, j) = 3."),
            Mistake(9.0, "||I₃||_F² adds the squares of the 9 entries of the 3 × 3 identity; "
                         "only its 3 diagonal ones are not 0."),
            Mistake(0.5, "0.5 would mean a partial overlap; a subspace compared with itself "
                         "overlaps completely.")]),
        ("phi_orthogonal", phi_orthogonal, subspace_similarity(first, _span(6, 4, 5, 6)), [
            Mistake(1.0, "every entry of V.T @ V' is the inner product of an axis from "
                         "e1..e3 with one from e4..e6: all 0."),
            Mistake(0.5, "0.5 would mean a partial overlap; e1..e3 and e4..e6 share no "
                         "direction at all: orthogonal.")]),
        ("phi_nested", phi_nested, subspace_similarity(_span(6, 1, 2), _span(6, 1, 2, 3, 4, 5)), [
            Mistake(0.4, "2/5 divides by max(i, j); phi divides by min(i, j) = 2. The plane "
                         "lies entirely inside the 5-dimensional subspace, so nothing is "
                         "missing: phi = 1."),
            Mistake(2.0, "||V_2.T @ V_5||_F² = 2 is the overlap before the normalisation: "
                         "divide by min(i, j) = 2.")]),
    ]

    def check() -> None:
        for name, raw, expected, mistakes in cases:
            _expect(name, raw, expected, mistakes,
                    f"write out V.T @ V' for the axes of {name} and add up its squared "
                    "entries, then divide by min(i, j).")

    return judge("phi by hand", check)


# --------------------------------------------------------------------------- exercise 3

def check_random_baseline(chance: Any, i: int, j: int, d: int) -> bool:
    """Check a prediction of phi's average for random subspaces of dimensions i and j in R^d.

    ``chance`` is the notebook's ``chance_<i>_<j>`` (the name the verdict uses). The
    reference is :func:`lora_lab.update_analysis.random_similarity` ``(i, j, d)`` =
    max(i, j) / d (which the notebook then measures by Monte Carlo). ``i`` and ``j`` must
    differ, so that the typical mistakes (min for max, and others) differ from the answer.
    Why: without its chance level, a similarity is a number without a meaning.
    """
    expected = random_similarity(i, j, d)
    if i == j:
        raise ValueError(f"i and j must differ (so that min and max differ), got {i} and {j}")
    small, large = min(i, j), max(i, j)
    mistakes = [
        Mistake(small / d, f"{small}/{d} divides the overlap i·j/d by max(i, j); phi divides "
                           "by min(i, j)."),
        Mistake(i * j / d, f"i·j/d = {i * j / d:g} is the expected overlap "
                           "||V_i.T @ V_j||_F² before the normalisation: divide by min(i, j)."),
        Mistake(i * j / d**2, "each of the i·j entries of V_i.T @ V_j has mean square 1/d, "
                              "not 1/d²: a unit vector's d squared coordinates add up to 1."),
        Mistake(1 / d, f"1/d is the chance level of two single directions (i = j = 1); with "
                       f"i = {i} and j = {j} the subspaces have more room to overlap."),
        Mistake(small / large, f"{small}/{large} compares the two dimensions with each other; "
                               f"the room they live in, d = {d}, matters too."),
        Mistake(0.0, "random subspaces are not orthogonal: a random direction has a share "
                     f"{large}/{d} of its squared length in a fixed {large}-dimensional "
                     "subspace, on average."),
    ]

    def check() -> None:
        _expect(f"chance_{i}_{j}", chance, expected, mistakes,
                "start from one random unit vector: what share of its squared length lies, "
                f"on average, in a fixed subspace of dimension {large} in R^{d}?")

    return judge(f"random baseline for i = {i}, j = {j}, d = {d}", check)


# --------------------------------------------------------------------------- exercise 4

TRENDS = ("up", "down", "same")


def _trend(before: float, after: float) -> str:
    """``"up"``/``"down"`` when the two differ by more than 10 %, else ``"same"``."""
    if after > 1.1 * before:
        return "up"
    return "down" if after < before / 1.1 else "same"


def _measured(values: Mapping[int, float]) -> tuple[int, int, float, float]:
    if not isinstance(values, Mapping) or len(values) != 2:
        raise TypeError("amplification must be the notebook's dict {r: factor} for two ranks")
    low, high = sorted(values)
    return low, high, float(values[low]), float(values[high])


def _random_mistakes(W: np.ndarray, r: int) -> list[tuple[float, str]]:
    """Typical wrong values of the random column ``r ||W||_F / sqrt(m n)``, with their hints."""
    m, n = W.shape
    norm = float(np.linalg.norm(W))
    return [
        ((r / m) * (r / n) * norm**2, "that is the mean *square* E||U.T W V.T||_F² = "
                                      "(r/m)(r/n)||W||_F²; the question asks for its root."),
        ((r / m) * (r / n) * norm, "the shares r/m and r/n apply to ||W||_F², not to ||W||_F: "
                                   "take the square root of (r/m)(r/n)||W||_F²."),
        (np.sqrt(r / m) * norm, "that keeps a share r/m on one side only (U); V, independent "
                                "of U, keeps a share r/n of what is left."),
        (np.sqrt(r / n) * norm, "that keeps a share r/n on one side only (V); U, independent "
                                "of V, keeps a share r/m of what is left."),
        (np.sqrt(r) * norm / np.sqrt(m * n), "the mean square grows like r² (a share r/m on "
                                             "one side times r/n on the other), so its root "
                                             "grows like r, not √r."),
        (r / np.sqrt(m * n), "the size of W is missing: the shares multiply ||W||_F²."),
        (norm, "that is all of W; r random directions on each side catch only a share of it."),
        (0.0, "random directions are not orthogonal to W: on average they catch a share of "
              "it that grows with r."),
    ]


def _check_trend(trend: Any, expected: str, low: int, high: int, a_low: float,
                 a_high: float) -> None:
    if not isinstance(trend, str) or trend.strip().lower() not in TRENDS:
        raise LearnerError(f"trend must be one of {TRENDS}, got {trend!r}.",
                           'answer with a string, e.g. "up".')
    if trend.strip().lower() == expected:
        return
    hint = f"the notebook measured {a_low:.3g} at r = {low} and {a_high:.3g} at r = {high}."
    if expected == "down":
        hint += (" The factor divides ||ΔW||_F by the part of W inside ΔW's top-r "
                 "directions, and more directions catch more of W: even random ones do "
                 f"({high // low if high % low == 0 else high / low:g} times more directions "
                 "on each side).")
    raise LearnerError(f'trend = "{trend}" is not what happened.', hint)


def check_amplification_prediction(trend: Any, random_low: Any,
                                   amplification: Mapping[int, float], W: np.ndarray) -> bool:
    """Check two answers about Table 7 between a small and a large LoRA rank.

    ``trend``: ``"up"``, ``"down"`` or ``"same"`` -- how the amplification factor
    ``||ΔW||_F / ||U.T W V.T||_F`` changes from the smaller rank to the larger, judged on the
    notebook's measurements ``amplification`` ({r: factor} for two ranks; a change under
    10 % counts as "same"). ``random_low``: the root-mean-square of ``||U.T W V.T||_F`` for
    random directions (independent of W) at the smaller rank, for the layer's weight ``W``
    (m, n); the reference is :func:`lora_lab.update_analysis.random_projection_rms`, and
    an answer within 1 % passes (the notebook prints ||W||_F to one decimal). Its name in
    the verdict is ``random_<r>``. Raises ``TypeError``/``ValueError`` for a bad
    ``amplification`` or ``W``. Why: the paper reads "large amplification at small r" as
    evidence for a low intrinsic rank; part of the drop with r is geometry that random
    directions show too.
    """
    low, high, a_low, a_high = _measured(amplification)
    W = as_matrix(W, "W")
    if high > min(W.shape):
        raise ValueError(f"the ranks {low} and {high} must fit in W {W.shape}")
    expected, reference = _trend(a_low, a_high), random_projection_rms(W, low)
    name = f"random_{low}"

    def check() -> None:
        require_answered(trend=trend, **{name: random_low})
        _check_trend(trend, expected, low, high, a_low, a_high)
        got = _number(random_low, name)
        if abs(got - reference) <= 0.01 * reference:
            return
        hint = next((h for value, h in _random_mistakes(W, low)
                     if abs(got - value) <= 0.02 * max(abs(value), 1e-12)
                     and abs(value - reference) > 0.02 * reference), None)
        raise LearnerError(f"{name} = {got:.4g} is not right.",
                           hint or "write E||U.T W V.T||_F² = E tr(U U.T W V.T V W.T) with "
                                   "E[U U.T] = (r/m) I and E[V.T V] = (r/n) I, then take "
                                   "the square root.")

    return judge(f"amplification: r = {low} vs r = {high}", check)
