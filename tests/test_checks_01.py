"""The self-checks of notebook 01 accept right answers and explain typical wrong ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lora_lab.checks import (
    check_break_even,
    check_energy_kept,
    check_low_rank_approx,
    check_relative_error,
)

# --------------------------------------------------------------------------- helpers


def verdict(capsys: pytest.CaptureFixture[str], checker, fn) -> tuple[bool, str]:
    """Run ``checker(fn)``; return its verdict and what it printed."""
    result = checker(fn)
    return result, capsys.readouterr().out


def assert_rejected(capsys, checker, fn, *hint_words: str) -> None:
    """The checker says "not yet", returns False and its hint contains ``hint_words``."""
    ok, out = verdict(capsys, checker, fn)
    assert ok is False
    assert "❌" in out and "not yet" in out
    assert "Hint:" in out
    for word in hint_words:
        assert word in out, f"{word!r} not in {out!r}"


def assert_accepted(capsys, checker, fn) -> None:
    ok, out = verdict(capsys, checker, fn)
    assert ok is True, out
    assert "✅" in out and "correct" in out


def svd(M):
    return np.linalg.svd(M, full_matrices=False)


# --------------------------------------------------------------------------- stubs and misuse


@pytest.mark.parametrize("checker", [check_low_rank_approx, check_energy_kept,
                                     check_relative_error, check_break_even])
def test_a_stub_gets_a_friendly_not_yet(capsys, checker) -> None:
    def stub(*args):
        raise NotImplementedError("your code here")

    assert_rejected(capsys, checker, stub, "NotImplementedError", "replace the line")


@pytest.mark.parametrize("checker", [check_low_rank_approx, check_energy_kept,
                                     check_relative_error, check_break_even])
def test_forgetting_return_is_named(capsys, checker) -> None:
    assert_rejected(capsys, checker, lambda *args: None, "returned None", "return")


@pytest.mark.parametrize("checker", [check_low_rank_approx, check_energy_kept,
                                     check_relative_error, check_break_even])
def test_passing_a_result_instead_of_the_function_is_a_type_error(checker) -> None:
    with pytest.raises(TypeError, match="pass your function itself"):
        checker(42)


def test_changing_the_argument_in_place_does_not_fool_the_check(capsys) -> None:
    def sloppy(M, k):
        U, S, Vt = svd(M)
        M[:] = (U[:, :k] * S[:k]) @ Vt[:k]  # overwrites the learner's own copy only
        return M

    assert_accepted(capsys, check_low_rank_approx, sloppy)


# --------------------------------------------------------------------------- low_rank_approx


def test_low_rank_approx_accepts_the_svd_and_the_loop(capsys) -> None:
    def sliced(M, k):
        U, S, Vt = svd(M)
        return (U[:, :k] * S[:k]) @ Vt[:k]

    def looped(M, k):
        U, S, Vt = np.linalg.svd(M)  # full_matrices=True works too
        return sum(S[i] * np.outer(U[:, i], Vt[i]) for i in range(k))

    assert_accepted(capsys, check_low_rank_approx, sliced)
    assert_accepted(capsys, check_low_rank_approx, looped)


def test_low_rank_approx_forgetting_the_singular_values(capsys) -> None:
    def no_s(M, k):
        U, _, Vt = svd(M)
        return U[:, :k] @ Vt[:k]

    assert_rejected(capsys, check_low_rank_approx, no_s, "singular values are missing")


def test_low_rank_approx_keeping_the_smallest(capsys) -> None:
    def last_k(M, k):
        U, S, Vt = svd(M)
        return (U[:, -k:] * S[-k:]) @ Vt[-k:]

    assert_rejected(capsys, check_low_rank_approx, last_k, "largest first", "first k")


def test_low_rank_approx_off_by_one(capsys) -> None:
    def one_too_many(M, k):
        U, S, Vt = svd(M)
        return (U[:, :k + 1] * S[:k + 1]) @ Vt[:k + 1]

    assert_rejected(capsys, check_low_rank_approx, one_too_many, "k + 1 pieces")


def test_low_rank_approx_wrong_shape_is_reported(capsys) -> None:
    assert_rejected(capsys, check_low_rank_approx, lambda M, k: M.T, "expected shape")


# --------------------------------------------------------------------------- energy_kept


def test_energy_kept_accepts_the_formula(capsys) -> None:
    assert_accepted(capsys, check_energy_kept, lambda s, k: np.sum(s[:k] ** 2) / np.sum(s**2))


def test_energy_kept_without_squares(capsys) -> None:
    assert_rejected(capsys, check_energy_kept, lambda s, k: s[:k].sum() / s.sum(), "squared")


def test_energy_kept_as_a_percentage(capsys) -> None:
    assert_rejected(capsys, check_energy_kept,
                    lambda s, k: 100 * np.sum(s[:k] ** 2) / np.sum(s**2), "percentage")


def test_energy_kept_off_by_one(capsys) -> None:
    assert_rejected(capsys, check_energy_kept,
                    lambda s, k: np.sum(s[:k + 1] ** 2) / np.sum(s**2), "k + 1")


def test_energy_kept_not_normalised(capsys) -> None:
    assert_rejected(capsys, check_energy_kept, lambda s, k: np.sum(s[:k] ** 2), "total energy")


def test_energy_kept_returning_an_array(capsys) -> None:
    assert_rejected(capsys, check_energy_kept, lambda s, k: s[:k] ** 2 / np.sum(s**2),
                    "not one number")


# --------------------------------------------------------------------------- relative_error


def test_relative_error_accepts_both_routes(capsys) -> None:
    def measured(M, k):
        U, S, Vt = svd(M)
        return np.linalg.norm(M - (U[:, :k] * S[:k]) @ Vt[:k]) / np.linalg.norm(M)

    def from_formula(M, k):
        s = np.linalg.svd(M, compute_uv=False)
        return math.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))

    assert_accepted(capsys, check_relative_error, measured)
    assert_accepted(capsys, check_relative_error, from_formula)


def test_relative_error_absolute_instead_of_relative(capsys) -> None:
    def absolute(M, k):
        s = np.linalg.svd(M, compute_uv=False)
        return np.sqrt(np.sum(s[k:] ** 2))

    assert_rejected(capsys, check_relative_error, absolute, "divide by ||M||_F")


def test_relative_error_spectral_instead_of_frobenius(capsys) -> None:
    def spectral(M, k):
        s = np.linalg.svd(M, compute_uv=False)
        return s[k] / np.linalg.norm(M) if k < s.size else 0.0

    assert_rejected(capsys, check_relative_error, spectral, "spectral-norm", "all of them")


def test_relative_error_off_by_one(capsys) -> None:
    def skips_one(M, k):
        s = np.linalg.svd(M, compute_uv=False)
        return np.sqrt(np.sum(s[k + 1:] ** 2)) / np.linalg.norm(M)

    assert_rejected(capsys, check_relative_error, skips_one, "s[k:]")


def test_relative_error_missing_square_root(capsys) -> None:
    def squared(M, k):
        s = np.linalg.svd(M, compute_uv=False)
        return np.sum(s[k:] ** 2) / np.sum(s**2)

    assert_rejected(capsys, check_relative_error, squared, "square root")


# --------------------------------------------------------------------------- break_even


def test_break_even_accepts_integer_answers(capsys) -> None:
    assert_accepted(capsys, check_break_even, lambda m, n: math.ceil(m * n / (m + n)) - 1)
    assert_accepted(capsys, check_break_even, lambda m, n: (m * n - 1) // (m + n))

    def searched(m, n):
        k = 0
        while (k + 1) * (m + n) < m * n:
            k += 1
        return k

    assert_accepted(capsys, check_break_even, searched)


def test_break_even_returning_the_fraction(capsys) -> None:
    assert_rejected(capsys, check_break_even, lambda m, n: m * n / (m + n),
                    "not a whole number")


def test_break_even_floor_ties_at_equal_cost(capsys) -> None:
    ok, out = verdict(capsys, check_break_even, lambda m, n: m * n // (m + n))
    assert ok is False
    assert "my_largest_saving_rank(4, 4) returned 2, expected 1" in out
    assert "strictly" in out


def test_break_even_rounding(capsys) -> None:
    assert_rejected(capsys, check_break_even, lambda m, n: round(m * n / (m + n)), "strictly")


def test_break_even_half_the_smaller_side(capsys) -> None:
    assert_rejected(capsys, check_break_even, lambda m, n: min(m, n) // 2, "square matrices")
