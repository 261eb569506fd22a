"""Rank, the SVD and low-rank approximation, in plain NumPy.

Why: LoRA rests on one bet -- that a useful weight update has low rank. This
module holds the tools to measure rank and to build (and price) the best
low-rank stand-in for a matrix, as notebook 01 derives them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._validate import as_array, as_matrix, check_int, check_real

Norm = Literal["fro", "spectral"]


def singular_values(M: np.ndarray) -> np.ndarray:
    """Singular values of ``M`` (m, n), largest first, shape (min(m, n),).

    Why: every statement about rank and approximation error is a statement
    about this list.
    """
    return np.linalg.svd(as_matrix(M, "M"), compute_uv=False)


def matrix_rank(M: np.ndarray, tol: float | None = None) -> int:
    """Numerical rank of ``M`` (m, n): how many singular values exceed ``tol``.

    The default tolerance ``sigma_max * max(m, n) * eps`` is NumPy's, so the
    result agrees with ``np.linalg.matrix_rank``. Why: in floating point almost
    nothing is exactly zero; rank is "how many directions carry real signal".
    """
    M = as_matrix(M, "M")
    s = np.linalg.svd(M, compute_uv=False)
    if tol is None:
        top, eps = float(s.max(initial=0.0)), float(np.finfo(M.dtype).eps)
        tol = top * max(M.shape) * eps  # NumPy's order of operations, so the two agree
        if not np.isfinite(tol):  # sigma_max * max(m, n) overflowed: same value, other order
            tol = top * (max(M.shape) * eps)
    else:
        tol = check_real(tol, "tol")
        if tol < 0:
            raise ValueError(f"tol must be >= 0 or None, got {tol}")
    return int(np.count_nonzero(s > tol))


def _check_k(k: int, M: np.ndarray) -> int:
    return check_int(k, "k", minimum=1, maximum=min(M.shape))


def truncated_svd(M: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` singular triplets of ``M`` (m, n).

    Returns ``U_k`` (m, k), ``S_k`` (k,), ``Vt_k`` (k, n) with
    ``M ~= U_k @ np.diag(S_k) @ Vt_k``. ``k`` must be in [1, min(m, n)].
    Why: keeping the k strongest directions is the best rank-k compression.
    """
    M = as_matrix(M, "M")
    k = _check_k(k, M)
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return U[:, :k], S[:k], Vt[:k, :]


def low_rank_approx(M: np.ndarray, k: int) -> np.ndarray:
    """Best rank-``k`` approximation of ``M`` (m, n), shape (m, n).

    By the Eckart-Young theorem no rank-k matrix is closer to ``M`` in the
    Frobenius or spectral norm. Why: it is the yardstick every LoRA update of
    rank k can be compared with.
    """
    U, S, Vt = truncated_svd(M, k)
    return (U * S) @ Vt


def _check_norm(norm: str) -> str:
    if norm not in ("fro", "spectral"):
        raise ValueError(f"norm must be 'fro' or 'spectral', got {norm!r}")
    return norm


def _power_of_two_scale(*arrays: np.ndarray) -> float:
    """A power of two within a factor 2 of the largest ``|entry|`` (1.0 if all are zero).

    Dividing by it is exact (only the exponent changes) and brings every entry
    into [-2, 2], so squares can neither overflow (entries of 1e200) nor
    underflow to zero (entries of 1e-200).
    """
    top = max(float(np.max(np.abs(a))) for a in arrays)
    return 1.0 if top == 0 else float(np.ldexp(1.0, int(np.frexp(top)[1]) - 1))


def approximation_error(M: np.ndarray, approx: np.ndarray, norm: Norm = "fro") -> float:
    """Distance ``||M - approx||`` between two (m, n) matrices.

    ``norm`` is ``"fro"`` (root of the summed squares) or ``"spectral"`` (largest
    singular value). Scale-safe over the whole float range: both matrices are
    divided by a power of two first (exact), so entries of 1e300 or 1e-300 give
    the right distance rather than inf or 0. Why: "how good is this stand-in?"
    needs one number.
    """
    M = as_matrix(M, "M")
    approx = as_matrix(approx, "approx")
    _check_norm(norm)
    if approx.shape != M.shape:
        raise ValueError(f"approx must have the shape of M {M.shape}, got {approx.shape}")
    scale = _power_of_two_scale(M, approx)
    difference = M / scale - approx / scale
    return scale * float(np.linalg.norm(difference, "fro" if norm == "fro" else 2))


def truncation_error(s: np.ndarray, k: int, norm: Norm = "fro") -> float:
    """Error of the best rank-``k`` approximation, from singular values ``s`` (p,).

    Frobenius: ``sqrt(s[k]**2 + ... + s[p-1]**2)``; spectral: ``s[k]`` (0 when
    k = p). Why: Eckart-Young says the error is fixed by the singular values
    you throw away, so it can be known before building the approximation.
    """
    s = _check_singular_values(s)
    k = check_int(k, "k", minimum=0, maximum=s.size)
    _check_norm(norm)
    tail = s[k:]
    if norm == "spectral":
        return float(tail[0]) if tail.size else 0.0
    top = float(tail[0]) if tail.size else 0.0
    return top * float(np.sqrt(np.sum((tail / top) ** 2))) if top > 0 else 0.0  # no overflow


def _check_singular_values(s: np.ndarray) -> np.ndarray:
    s = as_array(s, "s", ndim=1)
    # sorted up to a relative 1e-12 (rounded input), whatever the scale of s
    if np.any(s < 0) or np.any(np.diff(s) > 1e-12 * float(np.max(s))):
        raise ValueError("s must be singular values: non-negative and sorted largest first")
    return s


def _squared_shares(s: np.ndarray) -> np.ndarray:
    """``s**2 / sum(s**2)`` without overflow (divided by s[0] first); all zeros if s is zero."""
    if s[0] == 0:
        return np.zeros_like(s)
    squares = (s / s[0]) ** 2
    return squares / np.sum(squares)


def energy_captured(s: np.ndarray, k: int) -> float:
    """Fraction of ``||M||_F**2`` kept by the top ``k`` of singular values ``s`` (p,).

    Returns a number in [0, 1]. Why: "energy" tells at a glance how much of a
    matrix a rank-k approximation keeps.
    """
    s = _check_singular_values(s)
    k = check_int(k, "k", minimum=0, maximum=s.size)
    return 1.0 if s[0] == 0 else float(np.sum(_squared_shares(s)[:k]))


def energy_curve(s: np.ndarray) -> np.ndarray:
    """Cumulative energy for every rank, shape (p,): entry k-1 is ``energy_captured(s, k)``.

    Why: the curve shows how fast a spectrum decays -- the whole case for LoRA.
    """
    s = _check_singular_values(s)
    return np.ones_like(s) if s[0] == 0 else np.cumsum(_squared_shares(s))


def storage_cost(m: int, n: int, k: int) -> int:
    """Numbers stored by a rank-``k`` factorisation of an (m, n) matrix: ``k * (m + n)``.

    Why: B (m, k) and A (k, n) replace the m*n entries; this is LoRA's saving.
    """
    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    k = check_int(k, "k", minimum=1)
    return k * (m + n)


def break_even_rank(m: int, n: int) -> float:
    """Rank at which factors cost as much as the full matrix: ``m*n / (m + n)``.

    A rank-k factorisation saves storage exactly when ``k < break_even_rank(m, n)``.
    """
    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    return m * n / (m + n)


def subspace_similarity(X: np.ndarray, Y: np.ndarray, i: int | None = None,
                        j: int | None = None) -> float:
    """The LoRA paper's phi: overlap of the top-``i`` and top-``j`` column spaces.

    ``X`` (d, p) and ``Y`` (d, q) share their row count d. With ``U_i`` the top
    ``i`` left singular vectors of ``X`` and ``U_j`` those of ``Y``,
    ``phi = ||U_i.T @ U_j||_F**2 / min(i, j)``, between 0 (orthogonal) and 1
    (one subspace contains the other). Defaults: every direction the column
    space has, i.e. the numerical rank (:func:`matrix_rank`) of X and of Y.
    ``i`` and ``j`` may not exceed those ranks: singular vectors of zero
    singular values are arbitrary, and so would phi be (``ValueError``).
    Unchanged when X or Y is scaled, from 1e-300 to 1e300.
    For LoRA's ``A`` (r, in) pass ``A.T``, as the paper compares the right
    singular vectors of A. Why: it tells whether two adapters learned the same
    directions.
    """
    X = as_matrix(X, "X")
    Y = as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {X.shape} and {Y.shape}")
    i = _directions(X, i, "X", "i")
    j = _directions(Y, j, "Y", "j")
    Ux = np.linalg.svd(X, full_matrices=False)[0][:, :i]
    Uy = np.linalg.svd(Y, full_matrices=False)[0][:, :j]
    return float(np.linalg.norm(Ux.T @ Uy, "fro") ** 2 / min(i, j))


def _directions(M: np.ndarray, count: int | None, matrix: str, name: str) -> int:
    """``count`` checked against the numerical rank of ``M`` (the rank itself when None)."""
    rank = matrix_rank(M)
    if rank == 0:
        raise ValueError(f"{matrix} is zero (numerically): it spans no direction to compare")
    if count is None:
        return rank
    return check_int(count, name, minimum=1, maximum=rank)
