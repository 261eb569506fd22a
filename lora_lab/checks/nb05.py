"""Self-checks for notebook 05 (what LoRA learns: the LoRA paper's §7 at toy scale).

Every exercise of notebook 05 asks for numbers (the learner replaces ``...``), checked
against a reference computed here from ``lora_lab`` -- on the notebook's own spectrum, on
subspaces built here, or on the amplification factors the notebook measured -- never
against a hard-coded value. Single numbers are compared at float32 precision at least
(:data:`SCALAR_FLOOR`), so an answer computed in float32 passes; no typical mistake comes
that close to a right answer. Each typical mistake gets its own hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._validate import as_array, check_int
from ..lowrank import energy_curve, subspace_similarity
from ..update_analysis import energy_rank, random_similarity
from ._core import (
    RTOL,
    LearnerError,
    Mistake,
    compare,
    least_precise,
    match_mistake,
    one_number,
    require_answered,
    verdict,
)

__all__ = [
    "check_amplification_prediction",
    "check_phi_by_hand",
    "check_random_baseline",
    "check_update_k90",
]

SCALAR_FLOOR = "float32"


# --------------------------------------------------------------------------- shared helpers

def _judge(title: str, check: Callable[[], None]) -> bool:
    """Run ``check()``; print the verdict (its :class:`LearnerError`, or a pass); return it."""
    try:
        check()
    except LearnerError as wrong:
        return verdict(title, wrong.problem, wrong.hint)
    return verdict(title)


def _expect(name: str, raw: Any, expected: float, mistakes: list[Mistake], fallback: str) -> None:
    """Raise :class:`LearnerError` with the matching hint unless ``raw`` equals ``expected``."""
    got = one_number(raw, name)
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
                       "A position found by np.argmax or np.searchsorted counts from 0; the "
                       "rank is that position + 1."),
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
        got = one_number(k90, "k90")
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

    return _judge("k90 of the full update", check)


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
            Mistake(3.0, "||U.T @ U||_F² = ||I₃||_F² = 3 is the overlap before the "
                         "normalisation: divide by min(i, j) = 3."),
            Mistake(9.0, "||I₃||_F² adds the squares of the 9 entries of the 3 × 3 identity; "
                         "only its 3 diagonal ones are not 0."),
            Mistake(0.5, "0.5 = max(i, j)/d = 3/6 is the average for *random* subspaces; "
                         "this is one subspace compared with itself.")]),
        ("phi_orthogonal", phi_orthogonal, subspace_similarity(first, _span(6, 4, 5, 6)), [
            Mistake(1.0, "every entry of U.T @ U' is the inner product of an axis from "
                         "e1..e3 with one from e4..e6: all 0."),
            Mistake(0.5, "0.5 = max(i, j)/d = 3/6 is the average for *random* subspaces; "
                         "these two are orthogonal, not random.")]),
        ("phi_nested", phi_nested, subspace_similarity(_span(6, 1, 2), _span(6, 1, 2, 3, 4, 5)), [
            Mistake(0.4, "2/5 divides by max(i, j); phi divides by min(i, j) = 2. The plane "
                         "lies entirely inside the 5-dimensional subspace, so nothing is "
                         "missing: phi = 1."),
            Mistake(2.0, "||U_2.T @ U_5||_F² = 2 is the overlap before the normalisation: "
                         "divide by min(i, j) = 2."),
            Mistake(5 / 6, "5/6 = max(i, j)/d is the average for *random* subspaces; these "
                           "two are nested.")]),
    ]

    def check() -> None:
        for name, raw, expected, mistakes in cases:
            _expect(name, raw, expected, mistakes,
                    f"write out U.T @ U' for the axes of {name} and add up its squared "
                    "entries, then divide by min(i, j).")

    return _judge("phi by hand", check)


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
                           "||U_i.T @ U_j||_F² before the normalisation: divide by min(i, j)."),
        Mistake(i * j / d**2, "each of the i·j entries of U_i.T @ U_j has mean square 1/d, "
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

    return _judge(f"random baseline for i = {i}, j = {j}, d = {d}", check)


# --------------------------------------------------------------------------- exercise 4

TRENDS = ("up", "down", "same")


def _trend(before: float, after: float) -> str:
    """``"up"``/``"down"`` when the two differ by more than 10 %, else ``"same"``."""
    if after > 1.1 * before:
        return "up"
    return "down" if after < before / 1.1 else "same"


def _measured(values: Mapping[int, float], name: str) -> tuple[int, int, float, float]:
    if not isinstance(values, Mapping) or len(values) != 2:
        raise TypeError(f"{name} must be the notebook's dict {{r: value}} for two ranks")
    low, high = sorted(values)
    return low, high, float(values[low]), float(values[high])


def check_amplification_prediction(trend: Any, random_growth: Any,
                                   amplification: Mapping[int, float],
                                   random_rms: Mapping[int, float]) -> bool:
    """Check two predictions about Table 7 between a small and a large LoRA rank.

    ``trend``: ``"up"``, ``"down"`` or ``"same"`` -- how the amplification factor
    ``||ΔW||_F / ||U.T W V.T||_F`` changes from the smaller rank to the larger, judged on the
    notebook's measurements ``amplification`` ({r: factor}, a change under 10 % counts as
    "same"). ``random_growth``: how many times larger ``||U.T W V.T||_F`` is for random
    directions at the larger rank than at the smaller, judged on ``random_rms`` ({r: value},
    :func:`lora_lab.update_analysis.random_projection_rms`), to 1 %. Why: the paper reads
    "large amplification at small r" as evidence for a low intrinsic rank; part of the drop
    with r is geometry that random directions show too.
    """
    low, high, a_low, a_high = _measured(amplification, "amplification")
    r_low, r_high, rms_low, rms_high = _measured(random_rms, "random_rms")
    if (r_low, r_high) != (low, high):
        raise ValueError("amplification and random_rms must be measured at the same two ranks")
    expected, growth = _trend(a_low, a_high), rms_high / rms_low
    ratio = high / low

    def check() -> None:
        require_answered(trend=trend)
        if not isinstance(trend, str) or trend.strip().lower() not in TRENDS:
            raise LearnerError(f"trend must be one of {TRENDS}, got {trend!r}.",
                               'answer with a string, e.g. "up".')
        if trend.strip().lower() != expected:
            hint = (f"the notebook measured {a_low:.3g} at r = {low} and {a_high:.3g} at "
                    f"r = {high}.")
            if expected == "down":
                hint += (" The factor divides ||ΔW||_F by the part of W inside ΔW's top-r "
                         "directions, and more directions catch more of W: even random ones "
                         f"do ({ratio:g} times more directions on each side).")
            raise LearnerError(f'trend = "{trend}" is not what happened.', hint)
        got = one_number(random_growth, "random_growth")
        if abs(got - growth) <= 0.01 * growth:
            return
        hint = match_mistake(got, [
            Mistake(ratio**2, f"{ratio:g}² is how much the *mean square* grows, "
                              f"(r/m)(r/n)||W||_F²; its square root grows {ratio:g} times."),
            Mistake(np.sqrt(ratio), "U and V both grow with r: E||U.T W V.T||_F² = "
                                    "(r/m)(r/n)||W||_F², so the root grows like r, not √r."),
            Mistake(1.0, "more random directions catch more of W: the projection grows with r."),
        ], growth, scale=growth)
        raise LearnerError(f"random_growth = {got:.4g} is not right.",
                           hint or "write E||U.T W V.T||_F² with E[U U.T] = (r/m) I and "
                                   "E[V.T V] = (r/n) I, then take the square root.")

    return _judge(f"amplification: r = {low} vs r = {high}", check)
