"""What a learned update ΔW looks like: the measurements of the LoRA paper's §7, in NumPy.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models* (ICLR 2022, arXiv:2106.09685),
§7 "Understanding the low-rank updates", looks inside the updates GPT-3 175B learned:

- **Intrinsic rank** (§7.2): how many directions hold most of an update's energy
  (:func:`energy_rank`, over :func:`lora_lab.lowrank.energy_curve`) and its
  :func:`stable_rank` ``||M||_F**2 / ||M||_2**2``.
- **Subspace similarity** (§7.2, equation (4), Figures 3 and 4, Appendix G): the normalised
  overlap ``phi(A1, A2, i, j) = ||U1_i.T @ U2_j||_F**2 / min(i, j)`` of the spaces spanned by
  the top-i and top-j *right* singular vectors of two LoRA factors ``A`` (r, d), for every i
  and j at once (:func:`similarity_grid`), and what it is for random subspaces
  (:func:`random_similarity`, :func:`random_similarity_grid`): ``max(i, j) / d``.
- **How ΔW relates to W** (§7.3, Table 7, Appendix H.4 of arXiv v2): the size
  ``||U.T @ W @ V.T||_F`` of W inside the top-r singular directions of another matrix
  (:func:`projection_norm`), its expected size for random directions
  (:func:`random_projection_rms`), and the feature amplification factor
  ``||ΔW||_F / ||U.T @ W @ V.T||_F`` (:func:`amplification_factor`).

Every SVD goes through :mod:`lora_lab.lowrank` (notebook 01). Why here and not in
``lowrank``: these are questions about an *update* and the weight it changes, asked by
notebook 05; ``lowrank`` holds the general tools they are built from.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_matrix, check_int, check_real
from .lowrank import (
    energy_curve,
    matrix_rank,
    singular_values,
    truncated_svd,
    truncation_error,
)

__all__ = [
    "amplification_factor",
    "energy_rank",
    "projection_norm",
    "random_projection_rms",
    "random_similarity",
    "random_similarity_grid",
    "similarity_grid",
    "stable_rank",
]


# --------------------------------------------------------------------------- intrinsic rank

def stable_rank(M: np.ndarray) -> float:
    """Stable rank ``||M||_F**2 / ||M||_2**2 = sum(s**2) / s[0]**2`` of ``M`` (m, n).

    A number between 1 (one direction carries everything) and ``rank(M)`` (all singular
    values equal). Unlike the rank it does not jump when tiny singular values appear, so it
    is a robust "effective number of directions". Unchanged when M is scaled (computed from
    ``s / s[0]``, so entries from 1e-300 to 1e300 are fine). Raises ``ValueError`` for a
    zero matrix, which has no direction at all.
    """
    s = singular_values(M)
    if s[0] == 0:
        raise ValueError("M is zero: its stable rank is undefined (no direction carries anything)")
    return float(np.sum((s / s[0]) ** 2))


def energy_rank(s: np.ndarray, fraction: float) -> int:
    """Smallest k whose top-k singular values hold ``fraction`` of the energy ``sum(s**2)``.

    ``s`` (p,): singular values, largest first (as :func:`lora_lab.lowrank.singular_values`
    returns them); ``fraction`` in (0, 1). Returns k in 1..p with
    ``energy_curve(s)[k - 1] >= fraction`` and ``energy_curve(s)[k - 2] < fraction``. By
    Eckart-Young this is the smallest rank whose best approximation keeps that fraction of
    ``||M||_F**2``. Raises ``ValueError`` if every singular value is zero.
    """
    fraction = check_real(fraction, "fraction")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1) (0.9 means 90 %), got {fraction}")
    curve = energy_curve(s)  # checks s
    if float(np.max(np.asarray(s, dtype=np.float64))) == 0:
        raise ValueError("s is all zero: there is no energy to hold")
    # the curve ends at 1 up to rounding: a fraction just below 1 may need every value
    return min(int(np.searchsorted(curve, fraction, side="left")) + 1, curve.size)


# --------------------------------------------------------------------------- subspace similarity

def _row_space_basis(A: np.ndarray, name: str) -> np.ndarray:
    """Right singular vectors of ``A`` (r, d) as the columns of a (d, r) matrix, largest first.

    Every one of the r rows must count: a numerically rank-deficient A has right singular
    vectors of zero singular values, which are arbitrary, and so would phi be.
    """
    r = A.shape[0]
    if r > A.shape[1]:
        raise ValueError(f"{name} must have at most as many rows (r) as columns (d), got shape "
                         f"{A.shape}: r > d directions cannot be independent")
    rank = matrix_rank(A)
    if rank < r:
        raise ValueError(f"{name} (shape {A.shape}) has numerical rank {rank} < {r} rows: its "
                         "singular vectors beyond the rank are arbitrary, so phi would be too")
    return truncated_svd(A, r)[2].T


def similarity_grid(A1: np.ndarray, A2: np.ndarray) -> np.ndarray:
    """The LoRA paper's phi(A1, A2, i, j) for every i in 1..r1 and j in 1..r2, shape (r1, r2).

    ``A1`` (r1, d) and ``A2`` (r2, d) are LoRA down-projections ``lora_A`` (rows: r, columns:
    the layer's d input features), as in the paper's Figure 3 (A_{r=8} vs A_{r=64}) and
    Figure 4 (two seeds at r = 64). With ``U1`` (d, r1) and ``U2`` (d, r2) their *right*
    singular vectors, largest singular value first -- the directions of the input space that
    A reads, i.e. the row space of A --, entry ``[i - 1, j - 1]`` is::

        phi(A1, A2, i, j) = ||U1[:, :i].T @ U2[:, :j]||_F**2 / min(i, j)   (equation (4))

    in [0, 1]: 1 when one of the two subspaces contains the other, 0 when they are
    orthogonal, ``max(i, j) / d`` on average for random ones (:func:`random_similarity`).
    Each entry equals ``lowrank.subspace_similarity(A1.T, A2.T, i, j)`` (which takes column
    spaces, hence the transposes); this function gets the whole grid from one SVD of each
    factor and cumulative sums of ``(U1.T @ U2)**2``, instead of 2 * r1 * r2 SVDs. Entries
    are clipped to [0, 1] against rounding. Raises ``ValueError`` if the two factors read
    different numbers of features, or if a factor's rank is below its row count (its extra
    singular vectors would be arbitrary). Unchanged when A1 or A2 is scaled.
    """
    A1 = as_matrix(A1, "A1")
    A2 = as_matrix(A2, "A2")
    if A1.shape[1] != A2.shape[1]:
        raise ValueError(f"A1 and A2 must have the same number of columns d (input features), "
                         f"got shapes {A1.shape} and {A2.shape}")
    U1 = _row_space_basis(A1, "A1")
    U2 = _row_space_basis(A2, "A2")
    overlap = np.cumsum(np.cumsum((U1.T @ U2) ** 2, axis=0), axis=1)  # ||U1_i.T U2_j||_F^2
    i = np.arange(1, U1.shape[1] + 1)[:, None]
    j = np.arange(1, U2.shape[1] + 1)[None, :]
    return np.clip(overlap / np.minimum(i, j), 0.0, 1.0)


def _check_dims(i: int, j: int, d: int, names: tuple[str, str]) -> tuple[int, int, int]:
    d = check_int(d, "d", minimum=1)
    return (check_int(i, names[0], minimum=1, maximum=d),
            check_int(j, names[1], minimum=1, maximum=d), d)


def random_similarity(i: int, j: int, d: int) -> float:
    """Expected phi of a uniformly random i-dimensional subspace and a j-dimensional one in R^d.

    ``max(i, j) / d``, for 1 <= i, j <= d. Derivation: the orthogonal projector P onto a
    uniformly random i-dimensional subspace has ``E[P] = (i / d) I`` (by symmetry E[P]
    commutes with every rotation, so it is a multiple of I, and its trace is i). For any
    fixed j-dimensional subspace with orthonormal basis U_j, ``||U_i.T @ U_j||_F**2 =
    trace(U_j.T P U_j)``, whose expectation is ``(i / d) * j``; divided by min(i, j) this is
    ``max(i, j) / d``. Only one of the two subspaces needs to be random. The paper's
    layout (i <= 8 <= j) makes it ``j / d``. Why: a similarity means nothing until it is
    compared with what chance gives.
    """
    i, j, d = _check_dims(i, j, d, ("i", "j"))
    return max(i, j) / d


def random_similarity_grid(r1: int, r2: int, d: int) -> np.ndarray:
    """:func:`random_similarity` for every i in 1..r1 and j in 1..r2: shape (r1, r2).

    Entry ``[i - 1, j - 1]`` is ``max(i, j) / d``: the chance level of each cell of a
    :func:`similarity_grid` between factors with r1 and r2 rows and d columns.
    """
    r1, r2, d = _check_dims(r1, r2, d, ("r1", "r2"))
    return np.maximum.outer(np.arange(1, r1 + 1), np.arange(1, r2 + 1)) / d


# --------------------------------------------------------------------------- ΔW and W

def _frobenius(M: np.ndarray) -> float:
    """``||M||_F`` without overflow or underflow (from the singular values, lowrank)."""
    return truncation_error(singular_values(M), 0)


def _same_shape(W: np.ndarray, M: np.ndarray, w_name: str, m_name: str) -> None:
    if W.shape != M.shape:
        raise ValueError(f"{m_name} must have the shape of {w_name} {W.shape}, got {M.shape}")


def projection_norm(W: np.ndarray, M: np.ndarray, r: int) -> float:
    """``||U.T @ W @ V.T||_F``: how much of ``W`` lies in the top-r singular directions of ``M``.

    ``W`` and ``M`` are (m, n); ``U`` (m, r) holds the top-r left singular vectors of M as
    columns and ``V`` (r, n) its top-r right singular vectors as rows (NumPy's ``Vt[:r]``),
    the paper's notation in §7.3 and Table 7, so ``U.T @ W @ V.T`` is (r, r) and
    ``U @ (U.T @ W @ V.T) @ V`` is the projection of W onto M's r-dimensional subspace
    (Appendix H.4). Table 7's three columns are ``M = ΔW``, ``M = W`` (the largest possible
    value, ``sqrt(s_1**2 + ... + s_r**2)`` of W) and a random matrix. ``r`` must be in
    1..rank(M) (numerical, :func:`lora_lab.lowrank.matrix_rank`): the singular vectors of
    zero singular values are arbitrary (``ValueError``).
    """
    return _projection_norm(W, M, r, "M")


def _projection_norm(W: np.ndarray, M: np.ndarray, r: int, m_name: str) -> float:
    """:func:`projection_norm`, with ``m_name`` the name of M in error messages."""
    W = as_matrix(W, "W")
    M = as_matrix(M, m_name)
    _same_shape(W, M, "W", m_name)
    rank = matrix_rank(M)
    if rank == 0:
        raise ValueError(f"{m_name} is zero (numerically): it has no directions to project onto")
    r = check_int(r, "r", minimum=1, maximum=rank)
    U, _, V = truncated_svd(M, r)
    return _frobenius(U.T @ W @ V.T)


def random_projection_rms(W: np.ndarray, r: int) -> float:
    """``r * ||W||_F / sqrt(m * n)``: the root-mean-square of ``||U.T @ W @ V.T||_F`` at random.

    ``W`` (m, n); ``U`` (m, r) and ``V`` (r, n) uniformly random with orthonormal columns
    (rows), independent, as the top-r singular vectors of a Gaussian random matrix are
    (Table 7's "Random" column). Derivation: ``E[U U.T] = (r/m) I`` and ``E[V.T V] =
    (r/n) I``, so ``E||U.T W V.T||_F**2 = E trace(U U.T W V.T V W.T) = (r/m)(r/n)||W||_F**2``.
    ``r`` in 1..min(m, n). For GPT-3's W_q (12288 x 12288, ||W_q||_F = 61.95) it gives 0.020
    at r = 4 and 0.32 at r = 64, Table 7's 0.02 and 0.33.
    """
    W = as_matrix(W, "W")
    m, n = W.shape
    r = check_int(r, "r", minimum=1, maximum=min(m, n))
    return r * _frobenius(W) / float(np.sqrt(m)) / float(np.sqrt(n))


def amplification_factor(W: np.ndarray, delta: np.ndarray, r: int) -> float:
    """The feature amplification factor ``||ΔW||_F / ||U.T @ W @ V.T||_F`` (Appendix H.4).

    ``W`` (m, n) is the pretrained weight, ``delta`` (m, n) the learned update ΔW, and U, V
    the top-r singular vectors of ΔW (:func:`projection_norm`); ``r`` in 1..rank(ΔW), the
    LoRA rank in the paper (21.5 = 6.91 / 0.32 at r = 4 for GPT-3's W_q, about 2 at r = 64).
    How many times larger ΔW is than the part of W already in ΔW's own directions. Raises
    ``ValueError`` if W has nothing in those directions (the factor would be infinite).
    """
    delta = as_matrix(delta, "delta")
    inside = _projection_norm(W, delta, r, "delta")
    if inside == 0:
        raise ValueError("W has no component in the top-r directions of delta: the "
                         "amplification factor would be infinite")
    return _frobenius(delta) / inside
