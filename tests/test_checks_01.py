"""The self-checks of notebook 01 accept every correct answer and name each typical mistake.

For every checker: correct answers in float64 and in float32 pass; each mistake in its
table is rejected with its own hint (and not another's); the untouched stub gets a
friendly "not yet"; a non-answer is a clear error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lora_lab.checks import (
    check_energy_rank,
    check_rank_2_errors,
    check_relative_error,
    check_shrink_prediction,
)
from lora_lab.checks import nb01 as checks01

# --------------------------------------------------------------------------- helpers


def run(capsys: pytest.CaptureFixture[str], checker, *args) -> tuple[bool, str]:
    """Run ``checker(*args)``; return its verdict and what it printed."""
    result = checker(*args)
    return result, capsys.readouterr().out


def accepted(capsys, checker, *args) -> None:
    ok, out = run(capsys, checker, *args)
    assert ok is True, out
    assert "✅" in out and "correct" in out


def rejected(capsys, checker, *args) -> str:
    """The checker says "not yet" and gives a hint; return the hint's text."""
    ok, out = run(capsys, checker, *args)
    assert ok is False, out
    assert "❌" in out and "not yet" in out, out
    assert "Hint:" in out, out
    return out.split("Hint:", 1)[1].strip()


def assert_own_hints(table: dict[str, str], hints: dict[str, str]) -> None:
    """Each mistake got a hint containing its phrase, and no two mistakes share a hint."""
    for mistake, phrase in table.items():
        assert phrase in hints[mistake], f"{mistake}: {phrase!r} not in {hints[mistake]!r}"
    assert len(set(hints.values())) == len(hints), "two mistakes got the same hint"


# --------------------------------------------------------------------------- exercise 1


@pytest.fixture
def M() -> np.ndarray:
    return np.random.default_rng(21).normal(size=(6, 4))  # as in notebook 01, section 2.1


@pytest.fixture
def S(M: np.ndarray) -> np.ndarray:
    return np.linalg.svd(M, compute_uv=False)


def test_rank_2_errors_accepts_float64_and_float32(capsys, M, S) -> None:
    accepted(capsys, check_rank_2_errors, S[2], np.sqrt(S[2] ** 2 + S[3] ** 2), M)
    accepted(capsys, check_rank_2_errors, float(S[2]), float(np.linalg.norm(S[2:])), M)
    S32 = np.linalg.svd(M.astype(np.float32), compute_uv=False)
    assert S32.dtype == np.float32 and S32[2] != S[2]
    accepted(capsys, check_rank_2_errors, S32[2], np.sqrt(np.sum(S32[2:] ** 2)), M)
    accepted(capsys, check_rank_2_errors, float(S32[2]), float(np.linalg.norm(S32[2:])), M)
    accepted(capsys, check_rank_2_errors, np.array([S[2]]), np.linalg.norm(S[2:]), M)


def test_rank_2_errors_names_each_mistake(capsys, M, S) -> None:
    frobenius, norm = np.sqrt(np.sum(S[2:] ** 2)), np.linalg.norm(M)
    spectral = {"S[3]": (S[3], "sigma_3 is S[2]"),
                "S[1]": (S[1], "smallest singular value that rank 2 keeps"),
                "Frobenius": (frobenius, "only the largest dropped value"),
                "relative": (S[2] / norm, "relative to ||M||_F")}
    hints = {k: rejected(capsys, check_rank_2_errors, v, frobenius, M)
             for k, (v, _) in spectral.items()}
    assert_own_hints({k: phrase for k, (_, phrase) in spectral.items()}, hints)

    frobenius_mistakes = {
        "S[3:]": (np.sqrt(np.sum(S[3:] ** 2)), "you started at S[3]"),
        "S[1:]": (np.linalg.norm(S[1:]), "you started at S[1]"),
        "spectral": (S[2], "only sigma_3"), "no squares": (S[2] + S[3], "square the dropped"),
        "no root": (S[2] ** 2 + S[3] ** 2, "squared error"),
        "kept part": (np.linalg.norm(S[:2]), "the part rank 2 keeps"),
        "relative": (frobenius / norm, "relative to ||M||_F")}
    hints = {k: rejected(capsys, check_rank_2_errors, S[2], v, M)
             for k, (v, _) in frobenius_mistakes.items()}
    assert_own_hints({k: phrase for k, (_, phrase) in frobenius_mistakes.items()}, hints)


def test_rank_2_errors_typed_from_the_printout(capsys, M, S) -> None:
    hint = rejected(capsys, check_rank_2_errors, round(float(S[2]), 3), np.linalg.norm(S[2:]), M)
    assert "typed digits from a printout" in hint
    # the exercise is about index slips: the hint must not suggest an index (S[0] is sigma_1)
    assert "entries themselves (S[i])" in hint and "S[0]" not in hint


def test_rank_2_errors_stub_and_non_answers(capsys, M, S) -> None:
    hint = rejected(capsys, check_rank_2_errors, ..., ..., M)
    assert "replace `...` in `spectral_error_2 = ...`" in hint
    ok, out = run(capsys, check_rank_2_errors, S[2], ..., M)
    assert not ok and "frobenius_error_2 is still `...`" in out
    ok, out = run(capsys, check_rank_2_errors, lambda: S[2], 1.0, M)
    assert not ok and "is a function" in out
    ok, out = run(capsys, check_rank_2_errors, S[2:], 1.0, M)
    assert not ok and "should be one number, got ndarray" in out


@pytest.mark.parametrize(("bad", "error"), [(np.ones((3, 5)), ValueError),
                                            ("M", TypeError), (np.ones(4), ValueError)])
def test_rank_2_errors_rejects_an_unsuitable_matrix(bad, error) -> None:
    with pytest.raises(error, match="M"):
        check_rank_2_errors(1.0, 1.0, bad)


# --------------------------------------------------------------------------- exercise 2


@pytest.mark.parametrize("answer", [100, 100.0, np.int64(100), np.float32(100)])
def test_shrink_prediction_accepts_the_measured_option(capsys, answer) -> None:
    accepted(capsys, check_shrink_prediction, answer, 99.7)


def test_shrink_prediction_names_each_mistake(capsys) -> None:
    hints = {got: rejected(capsys, check_shrink_prediction, got, 100.3) for got in (1, 10)}
    assert_own_hints({1: "the gap does shrink", 10: "grows like the square of the step"}, hints)
    assert "1, 10 or 100" in rejected(capsys, check_shrink_prediction, 50, 100.3)


def test_shrink_prediction_hints_follow_the_measurement(capsys) -> None:
    """Had the experiment measured 10, no hint may argue for 100."""
    accepted(capsys, check_shrink_prediction, 10, 9.8)
    hint = rejected(capsys, check_shrink_prediction, 100, 9.8)
    assert "square" not in hint and "closest to what the experiment measured" in hint


def test_shrink_prediction_stub_and_bad_measurements(capsys) -> None:
    assert "replace `...` in `shrink_factor = ...`" in rejected(capsys, check_shrink_prediction,
                                                                 ..., 100.0)
    hint = rejected(capsys, check_shrink_prediction, "100", 100.0)
    assert "to one number such as 10 " in hint  # an example that is one of the options
    for bad, error in [(-1.0, ValueError), (0.0, ValueError), ("100", TypeError),
                       (math.nan, ValueError)]:
        with pytest.raises(error, match="measured_ratio"):
            check_shrink_prediction(100, bad)


# --------------------------------------------------------------------------- exercise 3


@pytest.fixture
def spectrum() -> np.ndarray:
    """A slowly decaying (power-law) spectrum, so that the typical mistakes all differ."""
    return 1.0 / np.arange(1, 401) ** 1.2


def smallest_rank(shares: np.ndarray, target: float) -> int:
    """Brute force, independent of lora_lab: the first k whose first k shares reach target."""
    return next(k for k in range(1, shares.size + 1) if shares[:k].sum() >= target)


def test_energy_rank_accepts_whole_numbers(capsys, spectrum) -> None:
    k99 = smallest_rank(spectrum**2 / np.sum(spectrum**2), 0.99)
    for answer in (k99, np.int64(k99), float(k99), np.float32(k99)):
        accepted(capsys, check_energy_rank, answer, spectrum)
    accepted(capsys, check_energy_rank, k99, spectrum.astype(np.float32))
    k90 = smallest_rank(spectrum**2 / np.sum(spectrum**2), 0.9)
    accepted(capsys, check_energy_rank, k90, spectrum, 0.9)


def test_energy_rank_names_each_mistake(capsys, spectrum) -> None:
    energy = spectrum**2 / np.sum(spectrum**2)
    k99 = smallest_rank(energy, 0.99)
    assert int(np.argmax(energy.cumsum() >= 0.99)) == k99 - 1  # the 0-based slip, three ways
    assert np.searchsorted(energy.cumsum(), 0.99) == np.sum(energy.cumsum() < 0.99) == k99 - 1
    mistakes = {"0-based": k99 - 1, "unsquared": smallest_rank(spectrum / spectrum.sum(), 0.99),
                "1% error": smallest_rank(energy, 0.9999), "too high": k99 + 1,
                "too low": k99 - 5}
    assert len(set(mistakes.values()) | {k99}) == 6, "the mistakes must differ here"
    hints = {name: rejected(capsys, check_energy_rank, k, spectrum) for name, k in mistakes.items()}
    assert "np.argmax, np.searchsorted and counting" in hints["0-based"]
    assert_own_hints({"0-based": "position + 1", "unsquared": "*squared* singular values",
                      "1% error": "much lower bar", "too high": "the smallest such rank",
                      "too low": "less than 99%"}, hints)


def test_energy_rank_stub_and_non_ranks(capsys, spectrum) -> None:
    assert "replace `...` in `k99 = ...`" in rejected(capsys, check_energy_rank, ..., spectrum)
    for bad in (56.5, 0, 401, -3):
        assert "a whole number from 1 to 400" in rejected(capsys, check_energy_rank, bad,
                                                          spectrum)
    assert "to one number such as 10 " in rejected(capsys, check_energy_rank, [57, 58], spectrum)
    ok, out = run(capsys, check_energy_rank, len, spectrum)
    assert not ok and "k99 is a function" in out


@pytest.mark.parametrize(("s", "target", "error", "name"), [
    (np.array([1.0, 2.0]), 0.99, ValueError, "s"), ("s", 0.99, TypeError, "s"),
    (np.array([2.0, 1.0]), 1.0, ValueError, "target"),
    (np.array([2.0, 1.0]), 0.0, ValueError, "target"),
    (np.array([2.0, 1.0]), "0.99", TypeError, "target")])
def test_energy_rank_rejects_bad_notebook_arguments(s, target, error, name) -> None:
    with pytest.raises(error, match=name):
        check_energy_rank(1, s, target)


# --------------------------------------------------------------------------- exercise 4


def from_energy(s, k):
    energy_kept = np.sum(s[:k] ** 2) / np.sum(s**2)
    return np.sqrt(max(1 - energy_kept, 0))


def from_the_tail(s, k):
    return math.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))


def measured(s, k):
    """Builds a matrix with these singular values and measures ||M - M_k|| / ||M||."""
    M = np.diag(s)
    U, S, Vt = np.linalg.svd(M)
    return np.linalg.norm(M - (U[:, :k] * S[:k]) @ Vt[:k]) / np.linalg.norm(M)


@pytest.mark.parametrize("fn", [from_energy, from_the_tail, measured])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relative_error_accepts_every_route_and_dtype(capsys, fn, dtype) -> None:
    accepted(capsys, check_relative_error, lambda s, k: fn(s.astype(dtype), k))
    # and when the float32 result comes back as a Python float
    accepted(capsys, check_relative_error, lambda s, k: float(fn(s.astype(dtype), k)))


def test_relative_error_accepts_a_rounding_residue_at_full_rank(capsys) -> None:
    """In float32, 1 - E(p) may come out ~1e-7 instead of 0, and its root ~3e-4 instead of 0."""
    def with_residue(s, k):
        squared = np.float32(from_the_tail(s, k) ** 2 + 1e-7)  # the rounding of 1 - E(k)
        return np.sqrt(squared)
    assert with_residue(np.array([3.0, 2.0, 2.0]), 3) > 3e-4
    accepted(capsys, check_relative_error, with_residue)


RELATIVE_ERROR_MISTAKES = {
    "range(1, k + 1)": (lambda s, k: np.sqrt(1 - np.sum(s[1:k + 1] ** 2) / np.sum(s**2)),
                        "range(1, k + 1)"),
    "s[:k-1]": (lambda s, k: np.sqrt(1 - np.sum(s[:k - 1] ** 2) / np.sum(s**2)),
                "only k - 1 values"),
    "s[k+1:]": (lambda s, k: np.sqrt(np.sum(s[k + 1:] ** 2) / np.sum(s**2)), "you skipped one"),
    "spectral": (lambda s, k: s[k] / np.linalg.norm(s), "spectral-norm error"),
    "spectral / sigma_1": (lambda s, k: s[k] / s[0], "spectral-norm error"),
    "energy kept": (lambda s, k: np.sum(s[:k] ** 2) / np.sum(s**2), "the energy kept"),
    "no root": (lambda s, k: 1 - np.sum(s[:k] ** 2) / np.sum(s**2), "squared relative error"),
    "root of kept": (lambda s, k: np.sqrt(np.sum(s[:k] ** 2) / np.sum(s**2)),
                     "relative size of what is kept"),
    "1 - sqrt(E)": (lambda s, k: 1 - np.sqrt(np.sum(s[:k] ** 2) / np.sum(s**2)), "Pythagoras"),
    "absolute": (lambda s, k: np.sqrt(np.sum(s[k:] ** 2)), "divide by ||M||_F"),
    "no squares": (lambda s, k: np.sum(s[k:]) / np.sum(s), "square the singular values"),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relative_error_names_each_mistake(capsys, dtype) -> None:
    hints = {name: rejected(capsys, check_relative_error,
                            lambda s, k, fn=fn: fn(s.astype(dtype), k))
             for name, (fn, _) in RELATIVE_ERROR_MISTAKES.items()}
    phrases = {name: phrase for name, (_, phrase) in RELATIVE_ERROR_MISTAKES.items()}
    spectral = hints.pop("spectral / sigma_1")  # the same mistake as "spectral", the same hint
    assert spectral == hints["spectral"]
    assert_own_hints({k: v for k, v in phrases.items() if k != "spectral / sigma_1"}, hints)


def by_cumsum(s, k):
    """E(k) read off a cumulative sum, as `energy[k - 1]` in the notebook."""
    return np.sqrt(1 - (np.cumsum(s**2) / np.sum(s**2))[k - 1])


def test_relative_error_case_where_the_cumulative_sum_overshoots() -> None:
    """The last case is there because np.cumsum's E(p) exceeds 1 on it: sqrt gives NaN."""
    s, k = checks01.RELATIVE_ERROR_CASES[-1]
    assert k == s.size and s.dtype == np.float64
    assert 1 - (np.cumsum(s**2) / np.sum(s**2))[-1] < 0
    with np.errstate(invalid="ignore"):
        assert np.isnan(by_cumsum(s, k))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relative_error_cumulative_sum_needs_clipping(capsys, dtype) -> None:
    with np.errstate(invalid="ignore"):
        hint = rejected(capsys, check_relative_error,
                        lambda s, k: by_cumsum(s.astype(np.float64), k))
    assert "a hair below 0" in hint and "cumulative sum" in hint

    def clipped(s, k):
        energy = np.cumsum(s.astype(dtype) ** 2) / np.sum(s.astype(dtype) ** 2)
        return np.sqrt(max(1 - energy[k - 1], 0))
    accepted(capsys, check_relative_error, clipped)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relative_error_rejects_a_negative_answer(capsys, dtype) -> None:
    """Its square is right, but an error is never negative."""
    hint = rejected(capsys, check_relative_error, lambda s, k: -from_energy(s.astype(dtype), k))
    assert "never negative" in hint


def test_relative_error_names_a_function_that_ignores_s(capsys) -> None:
    photo_energy = np.cumsum(np.linspace(1, 0.1, 512) ** 2)
    photo_energy /= photo_energy[-1]  # a global array, as `energy` in the notebook

    def uses_the_global(s, k):
        return np.sqrt(1 - photo_energy[k - 1])
    hint = rejected(capsys, check_relative_error, uses_the_global)
    assert "the same number whatever `s` is" in hint and "not the notebook's `energy`" in hint
    # a wrong answer that does depend on s keeps the general hint
    hint = rejected(capsys, check_relative_error, lambda s, k: from_energy(s, k) + 0.05)
    assert "whatever `s` is" not in hint and "sum of the dropped" in hint


def test_relative_error_nan_at_full_rank_and_index_errors(capsys) -> None:
    def unclipped(s, k):  # 1 - E(k) a hair below 0 at k = p
        error = from_the_tail(s, k)
        return math.nan if k == s.size else error
    assert "a hair below 0" in rejected(capsys, check_relative_error, unclipped)

    def indexes_past_the_end(s, k):
        return float(np.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))) + 0 * s[k]
    hint = rejected(capsys, check_relative_error, indexes_past_the_end)
    assert "at k = p there is no s[k]" in hint


def test_relative_error_stub_non_numbers_and_in_place_edits(capsys) -> None:
    def stub(s, k):
        raise NotImplementedError("exercise: write my_relative_error")
    assert "replace the line `raise NotImplementedError(...)`" in rejected(
        capsys, check_relative_error, stub)
    assert "did you forget the `return` line?" in rejected(capsys, check_relative_error,
                                                           lambda s, k: None)
    assert "return a single number" in rejected(capsys, check_relative_error,
                                                lambda s, k: s[k:] ** 2 / np.sum(s**2))
    accepted(capsys, check_relative_error, lambda s, k: np.array([from_the_tail(s, k)]))

    def normalises_in_place(s, k):
        s /= np.linalg.norm(s)
        return from_the_tail(s, k)
    ok, out = run(capsys, check_relative_error, normalises_in_place)
    assert not ok and "changed its argument s in place" in out
    with pytest.raises(TypeError, match="pass your function itself"):
        check_relative_error(0.41)


def test_every_exported_checker_is_used_by_an_exercise() -> None:
    assert sorted(checks01.__all__) == ["check_energy_rank", "check_rank_2_errors",
                                        "check_relative_error", "check_shrink_prediction"]
