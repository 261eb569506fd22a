"""lowrank.py against NumPy's SVD and the Eckart-Young theorem."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lora_lab as L


def random_rank(m: int, n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)) @ rng.standard_normal((k, n))


@pytest.mark.parametrize("shape,k", [((6, 4), 1), ((5, 9), 3), ((8, 8), 8), ((20, 3), 2)])
def test_matrix_rank_matches_numpy(shape: tuple[int, int], k: int) -> None:
    M = random_rank(*shape, k)
    assert L.matrix_rank(M) == np.linalg.matrix_rank(M) == k


def test_matrix_rank_tolerance_and_noise() -> None:
    M = random_rank(10, 10, 2)
    noisy = M + 1e-6 * np.random.default_rng(1).standard_normal(M.shape)
    assert L.matrix_rank(noisy) == 10  # noise makes every matrix full rank ...
    assert L.matrix_rank(noisy, tol=1e-3) == 2  # ... but only two directions carry signal
    assert L.matrix_rank(np.zeros((3, 4))) == 0


def test_truncated_svd_shapes_and_reconstruction() -> None:
    M = np.random.default_rng(0).standard_normal((7, 5))
    U, S, Vt = L.truncated_svd(M, 3)
    assert U.shape == (7, 3) and S.shape == (3,) and Vt.shape == (3, 5)
    np.testing.assert_allclose(S, np.linalg.svd(M, compute_uv=False)[:3])
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(L.low_rank_approx(M, 5), M, atol=1e-12)
    assert L.matrix_rank(L.low_rank_approx(M, 3)) == 3


def test_errors_follow_the_discarded_singular_values() -> None:
    M = np.random.default_rng(2).standard_normal((9, 6))
    s = L.singular_values(M)
    for k in range(1, 7):
        approx = L.low_rank_approx(M, k)
        assert L.approximation_error(M, approx) == pytest.approx(np.sqrt(np.sum(s[k:] ** 2)))
        assert L.approximation_error(M, approx) == pytest.approx(L.truncation_error(s, k))
        expected_spec = s[k] if k < 6 else 0.0
        spectral = L.approximation_error(M, approx, "spectral")
        assert spectral == pytest.approx(expected_spec, abs=1e-9)
        assert L.truncation_error(s, k, "spectral") == pytest.approx(expected_spec)


def test_energy_curve_and_storage() -> None:
    s = np.array([3.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(L.energy_curve(s), [9 / 14, 13 / 14, 1.0, 1.0])
    assert L.energy_captured(s, 2) == pytest.approx(13 / 14)
    assert L.energy_captured(s, 0) == 0.0
    assert L.storage_cost(100, 50, 4) == 600
    assert L.break_even_rank(100, 50) == pytest.approx(5000 / 150)
    # the break-even rule: factors are cheaper exactly below mn/(m+n)
    for k in range(1, 50):
        assert (L.storage_cost(100, 50, k) < 100 * 50) == (k < L.break_even_rank(100, 50))


def test_subspace_similarity() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 4))
    assert L.subspace_similarity(X, X) == pytest.approx(1.0)
    assert L.subspace_similarity(X, X @ rng.standard_normal((4, 4))) == pytest.approx(1.0)
    Q = np.linalg.qr(rng.standard_normal((12, 6)))[0]
    assert L.subspace_similarity(Q[:, :3], Q[:, 3:]) == pytest.approx(0.0, abs=1e-12)
    # nested subspaces: the smaller one lies inside the larger one
    assert L.subspace_similarity(Q[:, :2], Q[:, :5]) == pytest.approx(1.0)
    # an independent reference: principal angles via the SVD of Qx^T Qy
    Y = rng.standard_normal((12, 3))
    qx, qy = np.linalg.qr(X)[0], np.linalg.qr(Y)[0]
    cosines = np.linalg.svd(qx.T @ qy, compute_uv=False)
    assert L.subspace_similarity(X, Y) == pytest.approx(np.sum(cosines**2) / 3)


matrices = st.tuples(st.integers(2, 8), st.integers(2, 8)).flatmap(
    lambda mn: arrays(np.float64, mn, elements=st.floats(-10, 10, allow_subnormal=False)))


@settings(max_examples=60, deadline=None)
@given(M=matrices, data=st.data())
def test_eckart_young_property(M: np.ndarray, data: st.DataObject) -> None:
    """No random rank-k matrix beats the truncated SVD; its error is the trailing-sigma root."""
    k = data.draw(st.integers(1, min(M.shape)))
    seed = data.draw(st.integers(0, 2**16))
    best = L.low_rank_approx(M, k)
    best_err = L.approximation_error(M, best)
    s = np.linalg.svd(M, compute_uv=False)
    assert best_err == pytest.approx(np.sqrt(np.sum(s[k:] ** 2)), abs=1e-9 * (1 + s[0]))
    rng = np.random.default_rng(seed)
    for _ in range(5):
        rival = rng.standard_normal((M.shape[0], k)) @ rng.standard_normal((k, M.shape[1]))
        # also a rival that is close to optimal: a perturbed best approximation
        near = L.low_rank_approx(best + 1e-3 * rival, k)
        for candidate in (rival, near):
            assert L.approximation_error(M, candidate) >= best_err - 1e-9 * (1 + s[0])


def test_unusual_float_types_and_huge_values() -> None:
    half = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float16)
    assert L.low_rank_approx(half, 2).shape == (5, 4)  # float16 is upcast, not refused by LAPACK
    s = np.array([1e200, 1e199])
    np.testing.assert_allclose(L.energy_curve(s), [100 / 101, 1.0])
    assert L.truncation_error(s, 1) == pytest.approx(1e199)
    assert L.energy_captured(s, 1) == pytest.approx(100 / 101)


# --------------------------------------------------------------------------- scale safety

SCALES = {np.float64: [1e-300, 1e-200, 1e-100, 1e-30, 1.0, 1e30, 1e100, 1e200, 1e300],
          np.float32: [1e-30, 1e-20, 1e-10, 1.0, 1e10, 1e20, 1e30]}
CASES = [(dtype, scale) for dtype, scales in SCALES.items() for scale in scales]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("dtype,scale", CASES)
def test_every_function_is_scale_safe(dtype: type, scale: float) -> None:
    """f(c * M) = c * f(M) (or f(M) for scale-free quantities) over the whole float range."""
    tol = 1e-12 if dtype == np.float64 else 1e-5
    rng = np.random.default_rng(3)
    M = rng.standard_normal((6, 4))
    approx = L.low_rank_approx(M, 2)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    Mc, Ac, Xc = (np.asarray(a * scale, dtype=dtype) for a in (M, approx, X))
    for norm in ("fro", "spectral"):
        ours = L.approximation_error(Mc, Ac, norm)
        assert np.isfinite(ours) and ours > 0
        assert _rel(ours / scale, L.approximation_error(M, approx, norm)) < 10 * tol
    s, sc = L.singular_values(M), L.singular_values(Mc)
    np.testing.assert_allclose(sc / scale, s, rtol=10 * tol)
    assert L.matrix_rank(Mc) == 4 and L.matrix_rank(np.asarray(approx * scale, dtype)) == 2
    np.testing.assert_allclose(L.low_rank_approx(Mc, 2) / scale, approx, rtol=0,
                               atol=100 * tol)
    assert _rel(L.truncation_error(sc, 2) / scale, L.truncation_error(s, 2)) < 10 * tol
    np.testing.assert_allclose(L.energy_curve(sc), L.energy_curve(s), rtol=10 * tol)
    assert L.energy_captured(sc, 1) == pytest.approx(L.energy_captured(s, 1), rel=10 * tol)
    assert L.subspace_similarity(Xc, Y) == pytest.approx(L.subspace_similarity(X, Y),
                                                          abs=100 * tol)


def test_the_issue_examples() -> None:
    """1e200 entries gave inf and 1e-200 entries gave 0; both are 2 * 1e+-200 (2x2 of ones)."""
    zeros = np.zeros((2, 2))
    assert L.approximation_error(np.full((2, 2), 1e200), zeros) == pytest.approx(2e200)
    assert L.approximation_error(np.full((2, 2), 1e-200), zeros) == pytest.approx(2e-200)
    # entries of opposite sign near the top of the range: M - approx itself overflows
    big = np.full((2, 2), 4e307)
    assert L.approximation_error(big, -big) == pytest.approx(1.6e308)  # 2 * 8e307
    assert L.approximation_error(big, -big, "spectral") == pytest.approx(1.6e308)
    # the rank tolerance sigma_max * max(m, n) * eps no longer overflows to inf
    assert L.matrix_rank(np.diag([1.7e308, 1e300, 0.0])) == 2


@settings(max_examples=60, deadline=None)
@given(exponent=st.integers(-300, 300), seed=st.integers(0, 2**16))
def test_approximation_error_is_homogeneous_property(exponent: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    M, approx = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    scale = 10.0 ** exponent
    for norm in ("fro", "spectral"):
        assert L.approximation_error(M * scale, approx * scale, norm) == pytest.approx(
            scale * L.approximation_error(M, approx, norm), rel=1e-12)


def test_tiny_unsorted_spectra_are_refused() -> None:
    """The sortedness check is relative: 1e-300 < 2e-300 is unsorted at every scale."""
    with pytest.raises(ValueError, match="sorted"):
        L.energy_curve(np.array([1e-300, 2e-300]))
    np.testing.assert_allclose(L.energy_curve(np.array([2e-300, 1e-300])), [0.8, 1.0])


def test_subspace_similarity_needs_real_directions() -> None:
    """Singular vectors of zero singular values are arbitrary: asking for them is an error."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 1))
    rank_one = np.hstack([a, 2 * a])  # two columns, one direction
    Y = rng.standard_normal((5, 2))
    # the default takes the one real direction ...
    assert L.subspace_similarity(rank_one, Y) == pytest.approx(L.subspace_similarity(a, Y))
    # ... and asking for a second one is refused rather than answered at random
    with pytest.raises(ValueError, match="i must be between 1 and 1"):
        L.subspace_similarity(rank_one, Y, i=2)
    with pytest.raises(ValueError, match="X is zero"):
        L.subspace_similarity(np.zeros((5, 2)), Y)
