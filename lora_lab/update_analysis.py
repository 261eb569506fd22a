"""What a learned update ΔW looks like: the measurements of the LoRA paper's §7, in NumPy.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models* (ICLR 2022, arXiv:2106.09685),
§7 "Understanding the low-rank updates", looks inside the updates GPT-3 175B learned:

- **Intrinsic rank** (§7.2): how many directions hold most of an update's energy
  (:func:`energy_rank`, over :func:`lora_lab.lowrank.energy_curve`) and its
  :func:`stable_rank` ``sum(s**2) / s[0]**2``, both from the singular values ``s``.
- **Subspace similarity** (§7.2, equation (4), Figures 3 and 4, Appendix G): the normalised
  overlap ``phi(A1, A2, i, j) = ||V1_i.T @ V2_j||_F**2 / min(i, j)`` of the spaces spanned by
  the top-i and top-j *right* singular vectors of two LoRA factors ``A`` (r, d)
  (:func:`row_space_svd`), for every i and j at once (:func:`similarity_grid`, or
  :func:`basis_similarity_grid` from bases already computed), and what it is for random
  subspaces (:func:`random_similarity`, :func:`random_similarity_grid`): ``max(i, j) / d``.
- **How ΔW relates to W** (§7.3, Table 7, Appendix H.4 of arXiv v2): the size
  ``||U.T @ W @ V.T||_F`` of W inside the top-r singular directions of another matrix
  (:func:`projection_norm`), its expected size for random directions
  (:func:`random_projection_rms`), and the feature amplification factor
  ``||ΔW||_F / ||U.T @ W @ V.T||_F`` (:func:`amplification_factor`;
  :func:`compare_to_weight` returns all of one update's numbers from one SVD).

Every function takes one SVD of each matrix it is given, and no more (a 256 x 256 SVD takes
about 12 ms on one core of our 2-core machine, and over 40 ms when BLAS runs it on two or more
threads). Why here and
not in ``lowrank``: these are questions about an *update* and the weight it changes, asked by
notebook 05; ``lowrank`` holds the general tools they are built from.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import as_array, as_matrix, check_int, check_real
from .lowrank import approximation_error, energy_curve, truncation_error

__all__ = [
    "WeightComparison",
    "amplification_factor",
    "basis_similarity_grid",
    "compare_to_weight",
    "energy_rank",
    "projection_norm",
    "random_projection_rms",
    "random_similarity",
    "random_similarity_grid",
    "row_space_svd",
    "similarity_grid",
    "stable_rank",
]


# --------------------------------------------------------------------------- intrinsic rank

def _spectrum(s: np.ndarray) -> np.ndarray:
    """``s`` checked as singular values (1-D, non-negative, largest first), via ``energy_curve``."""
    if np.ndim(s) == 2:
        raise ValueError(f"s must be the singular values of a matrix (1-D), got a matrix of "
                         f"shape {np.shape(s)}: pass lora_lab.singular_values(M)")
    energy_curve(s)  # checks: 1-D, finite, non-negative, sorted largest first
    return as_array(s, "s", ndim=1)


def stable_rank(s: np.ndarray) -> float:
    """Stable rank ``sum(s**2) / s[0]**2 = ||M||_F**2 / ||M||_2**2`` from singular values ``s``.

    ``s`` (p,): the singular values of a matrix M, largest first
    (:func:`lora_lab.lowrank.singular_values`), so one SVD serves this, :func:`energy_rank`
    and a plot. A number between 1 (one direction carries everything) and ``rank(M)`` (all
    singular values equal). Unlike the rank it does not jump when tiny singular values
    appear, so it is a robust "effective number of directions". Unchanged when M is scaled
    (computed from ``s / s[0]``, so values from 1e-300 to 1e300 are fine). Raises
    ``ValueError`` for a matrix instead of its singular values, and for all-zero ``s`` (no
    direction at all).
    """
    s = _spectrum(s)
    if s[0] == 0:
        raise ValueError("s is all zero: the stable rank is undefined (no direction carries "
                         "anything)")
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
    curve = energy_curve(_spectrum(s))
    if float(np.max(np.asarray(s, dtype=np.float64))) == 0:
        raise ValueError("s is all zero: there is no energy to hold")
    # the curve ends at 1 up to rounding: a fraction just below 1 may need every value
    return min(int(np.searchsorted(curve, fraction, side="left")) + 1, curve.size)


def _numerical_rank(s: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """How many of ``s`` exceed NumPy's tolerance ``s[0] * max(shape) * eps``.

    The rule of :func:`lora_lab.lowrank.matrix_rank` (and ``np.linalg.matrix_rank``), applied
    to singular values already computed, so the SVD is not taken twice.
    """
    top, eps = float(s[0]) if s.size else 0.0, float(np.finfo(dtype).eps)
    tol = top * max(shape) * eps
    if not np.isfinite(tol):  # top * max(shape) overflowed: same value, other order
        tol = top * (max(shape) * eps)
    return int(np.count_nonzero(s > tol))


# --------------------------------------------------------------------------- subspace similarity

def _check_factor_shapes(A1: np.ndarray, A2: np.ndarray) -> None:
    """Both (r, d) with the same d; a (d, r) orientation (B, or a transposed A) is named."""
    if A1.shape[1] == A2.shape[1]:
        return
    if A1.shape[0] == A2.shape[0] and all(A.shape[0] > A.shape[1] for A in (A1, A2)):
        raise ValueError(
            f"A1 {A1.shape} and A2 {A2.shape} share their number of rows, not of columns: "
            "they look like (d, r) matrices -- a factor B (out, r) or a transposed A. Pass "
            "the down-projections A as (r, d), e.g. layer.lora_A (to compare B factors, "
            "pass B.T).")
    raise ValueError(f"A1 and A2 must have the same number of columns d (input features), "
                     f"got shapes {A1.shape} and {A2.shape}")


def row_space_svd(A: np.ndarray, name: str = "A") -> tuple[np.ndarray, np.ndarray]:
    """Singular values and right singular vectors of a LoRA factor ``A`` (r, d), from one SVD.

    Returns ``s`` (r,), largest first, and ``V`` (d, r) whose columns are the matching right
    singular vectors: an orthonormal basis of A's row space, the directions of the input
    space that A reads, in order of importance (NumPy's ``np.linalg.svd(A)[2][:r].T``). The
    paper's §7.2 calls this matrix ``U_A`` ("the right-singular unitary matrices").
    ``name`` is used in error messages. Raises ``ValueError`` if r > d (A looks transposed)
    or if the numerical rank of A (NumPy's rule, as :func:`lora_lab.lowrank.matrix_rank`) is
    below r: right singular vectors of zero singular values are arbitrary, and so would
    every phi built from them be.
    """
    A = as_matrix(A, name)
    r, d = A.shape
    if r > d:
        raise ValueError(f"{name} must be (r, d) with r <= d, got shape {A.shape}: more rows "
                         f"than columns. Is it transposed (a (d, r) matrix, or a factor B)? "
                         "Pass A as (r, d), e.g. layer.lora_A.")
    _, s, Vt = np.linalg.svd(A, full_matrices=False)
    rank = _numerical_rank(s, A.shape, A.dtype)
    if rank < r:
        raise ValueError(f"{name} (shape {A.shape}) has numerical rank {rank} < {r} rows: its "
                         "singular vectors beyond the rank are arbitrary, so phi would be too")
    return s, Vt.T


def _orthonormal_basis(V: np.ndarray, name: str) -> np.ndarray:
    V = as_matrix(V, name)
    if V.shape[1] > V.shape[0]:
        raise ValueError(f"{name} must be (d, r) with r <= d orthonormal columns, got shape "
                         f"{V.shape}")
    deviation = float(np.max(np.abs(V.T @ V - np.eye(V.shape[1]))))
    if deviation > 1e-4:
        raise ValueError(f"{name} must have orthonormal columns ({name}.T @ {name} = I), e.g. "
                         f"row_space_svd(A)[1]; got a largest deviation of {deviation:.2g}")
    return V


def basis_similarity_grid(V1: np.ndarray, V2: np.ndarray) -> np.ndarray:
    """phi for every i in 1..r1 and j in 1..r2 from orthonormal bases V1 (d, r1) and V2 (d, r2).

    Columns in order of importance, as :func:`row_space_svd` returns them. Entry
    ``[i - 1, j - 1]`` is ``||V1[:, :i].T @ V2[:, :j]||_F**2 / min(i, j)`` (equation (4)),
    obtained for the whole grid from cumulative sums of ``(V1.T @ V2)**2`` and clipped to
    [0, 1] against rounding. Use it when the bases are computed once and compared several
    times; :func:`similarity_grid` starts from the factors. Raises ``ValueError`` if the
    bases live in spaces of different dimension or their columns are not orthonormal (to
    1e-4, so float32 bases pass).
    """
    V1 = _orthonormal_basis(V1, "V1")
    V2 = _orthonormal_basis(V2, "V2")
    if V1.shape[0] != V2.shape[0]:
        raise ValueError(f"V1 and V2 must live in the same space R^d (same number of rows), "
                         f"got shapes {V1.shape} and {V2.shape}")
    overlap = np.cumsum(np.cumsum((V1.T @ V2) ** 2, axis=0), axis=1)  # ||V1_i.T V2_j||_F^2
    i = np.arange(1, V1.shape[1] + 1)[:, None]
    j = np.arange(1, V2.shape[1] + 1)[None, :]
    return np.clip(overlap / np.minimum(i, j), 0.0, 1.0)


def similarity_grid(A1: np.ndarray, A2: np.ndarray) -> np.ndarray:
    """The LoRA paper's phi(A1, A2, i, j) for every i in 1..r1 and j in 1..r2, shape (r1, r2).

    ``A1`` (r1, d) and ``A2`` (r2, d) are LoRA down-projections ``lora_A`` (rows: r, columns:
    the layer's d input features), as in the paper's Figure 3 (A_{r=8} vs A_{r=64}) and
    Figure 4 (two seeds at r = 64). With ``V1`` (d, r1) and ``V2`` (d, r2) their *right*
    singular vectors, largest singular value first (:func:`row_space_svd`) -- the directions
    of the input space that A reads, i.e. the row space of A --, entry ``[i - 1, j - 1]`` is::

        phi(A1, A2, i, j) = ||V1[:, :i].T @ V2[:, :j]||_F**2 / min(i, j)   (equation (4))

    in [0, 1]: 1 when one of the two subspaces contains the other, 0 when they are
    orthogonal, ``max(i, j) / d`` on average for random ones (:func:`random_similarity`).
    Each entry equals ``lowrank.subspace_similarity(A1.T, A2.T, i, j)`` (which takes column
    spaces, hence the transposes); this function gets the whole grid from one SVD of each
    factor (:func:`basis_similarity_grid`), instead of 2 * r1 * r2 SVDs. Raises
    ``ValueError`` if the two factors read different numbers of features (naming the likely
    cause when both look like (d, r) matrices: B factors or transposed As), or if a factor's
    rank is below its row count. Unchanged when A1 or A2 is scaled.
    """
    A1 = as_matrix(A1, "A1")
    A2 = as_matrix(A2, "A2")
    _check_factor_shapes(A1, A2)
    return basis_similarity_grid(row_space_svd(A1, "A1")[1], row_space_svd(A2, "A2")[1])


def _check_dims(i: int, j: int, d: int, names: tuple[str, str]) -> tuple[int, int, int]:
    d = check_int(d, "d", minimum=1)
    return (check_int(i, names[0], minimum=1, maximum=d),
            check_int(j, names[1], minimum=1, maximum=d), d)


def random_similarity(i: int, j: int, d: int) -> float:
    """Expected phi of a uniformly random i-dimensional subspace and a j-dimensional one in R^d.

    ``max(i, j) / d``, for 1 <= i, j <= d. Derivation: the orthogonal projector P onto a
    uniformly random i-dimensional subspace has ``E[P] = (i / d) I`` (by symmetry E[P]
    commutes with every rotation, so it is a multiple of I, and its trace is i). For any
    fixed j-dimensional subspace with orthonormal basis V_j, ``||V_i.T @ V_j||_F**2 =
    trace(V_j.T P V_j)``, whose expectation is ``(i / d) * j``; divided by min(i, j) this is
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
    """``||M||_F`` without overflow or underflow and without an SVD (lowrank's scaled norm)."""
    return approximation_error(M, np.zeros_like(M))


def _top_directions(W: np.ndarray, M: np.ndarray, r: int, m_name: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W and M checked, and the top-r singular vectors of M: ``W, U (m, r), s, Vt (r, n)``.

    One SVD of M; ``s`` holds all its singular values. ``r`` must be in 1..rank(M).
    """
    W = as_matrix(W, "W")
    M = as_matrix(M, m_name)
    if W.shape != M.shape:
        raise ValueError(f"{m_name} must have the shape of W {W.shape}, got {M.shape}")
    r = check_int(r, "r", minimum=1)
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    rank = _numerical_rank(s, M.shape, M.dtype)
    if rank == 0:
        raise ValueError(f"{m_name} is zero (numerically): it has no directions to project onto")
    if r > rank:
        raise ValueError(f"r must be between 1 and rank({m_name}) = {rank}, got {r}: "
                         f"{m_name} has only {rank} directions with a nonzero singular value "
                         "(the singular vectors beyond them are arbitrary). For a LoRA update "
                         "the rank is at most the LoRA r it was trained with.")
    return W, U[:, :r], s, Vt[:r]


def projection_norm(W: np.ndarray, M: np.ndarray, r: int) -> float:
    """``||U.T @ W @ V.T||_F``: how much of ``W`` lies in the top-r singular directions of ``M``.

    ``W`` and ``M`` are (m, n); ``U`` (m, r) holds the top-r left singular vectors of M as
    columns and ``V`` (r, n) its top-r right singular vectors as rows (NumPy's ``Vt[:r]``),
    the paper's notation in §7.3 and Table 7, so ``U.T @ W @ V.T`` is (r, r) and
    ``U @ (U.T @ W @ V.T) @ V`` is the projection of W onto M's r-dimensional subspace
    (Appendix H.4). Table 7's three columns are ``M = ΔW``, ``M = W`` (the largest possible
    value, ``sqrt(s_1**2 + ... + s_r**2)`` of W, by Ky Fan's theorem) and a random matrix.
    One SVD of M. ``r`` must be in 1..rank(M) (numerical, NumPy's rule): the singular
    vectors of zero singular values are arbitrary (``ValueError`` naming the rank).
    """
    W, U, _, Vt = _top_directions(W, M, r, "M")
    return _frobenius(U.T @ W @ Vt.T)


def random_projection_rms(W: np.ndarray, r: int) -> float:
    """``r * ||W||_F / sqrt(m * n)``: the root-mean-square of ``||U.T @ W @ V.T||_F`` at random.

    ``W`` (m, n); ``U`` (m, r) and ``V`` (r, n) uniformly random with orthonormal columns
    (rows), independent of each other *and of W*, as the top-r singular vectors of a
    Gaussian random matrix are (Table 7's "Random" column). Derivation: ``E[U U.T] = (r/m) I``
    and ``E[V.T V] = (r/n) I``, so ``E||U.T W V.T||_F**2 = E trace(U U.T W V.T V W.T) =
    (r/m)(r/n)||W||_F**2``. ``r`` in 1..min(m, n). For GPT-3's W_q (12288 x 12288,
    ||W_q||_F = 61.95) it gives 0.020 at r = 4 and 0.323 at r = 64, against one draw's 0.02
    and 0.33 in Table 7.
    """
    W = as_matrix(W, "W")
    m, n = W.shape
    r = check_int(r, "r", minimum=1, maximum=min(m, n))
    return r * _frobenius(W) / float(np.sqrt(m)) / float(np.sqrt(n))


class WeightComparison(NamedTuple):
    """One update ΔW against the weight W it changes (a row of the paper's Table 7).

    Attributes:
        projection: ``||U.T @ W @ V.T||_F`` with U, V the top-r singular vectors of ΔW.
        update_norm: ``||ΔW||_F``.
        amplification: ``update_norm / projection`` (Appendix H.4).
        singular_values: all singular values of ΔW, (min(m, n),), largest first (for
            :func:`stable_rank` or :func:`energy_rank` without another SVD).
        left: the top-r left singular vectors of ΔW as columns, (m, r) -- the paper's U.
        right: the top-r right singular vectors of ΔW as rows, (r, n) -- the paper's V.
    """

    projection: float
    update_norm: float
    amplification: float
    singular_values: np.ndarray
    left: np.ndarray
    right: np.ndarray


def compare_to_weight(W: np.ndarray, delta: np.ndarray, r: int) -> WeightComparison:
    """Table 7's numbers for one update ``delta`` (m, n) of the weight ``W`` (m, n), one SVD.

    ``r`` in 1..rank(ΔW), the LoRA rank in the paper. Returns a :class:`WeightComparison`:
    the part of W inside ΔW's top-r directions (:func:`projection_norm`), ``||ΔW||_F``, the
    feature amplification factor ``||ΔW||_F / ||U.T @ W @ V.T||_F`` (21.5 = 6.91 / 0.32 at
    r = 4 for GPT-3's W_q, "around 2" at r = 64), the singular values of ΔW and its top-r
    singular vectors U and V (for more comparisons without another SVD). Raises
    ``ValueError`` if W has (numerically) nothing in those directions -- less than
    ``eps * max(m, n) * ||W||_F``, where rounding alone can put it --, since the factor
    would then be infinite or meaningless.
    """
    W, U, s, Vt = _top_directions(W, delta, r, "delta")
    inside = _frobenius(U.T @ W @ Vt.T)
    norm_w = _frobenius(W)
    if inside <= float(np.finfo(W.dtype).eps) * max(W.shape) * norm_w:
        raise ValueError(f"W has no component in the top-{r} directions of delta beyond "
                         f"rounding (||U.T W V.T||_F = {inside:.2g} against ||W||_F = "
                         f"{norm_w:.3g}): the amplification factor would be infinite")
    norm = truncation_error(s, 0)  # ||ΔW||_F from the singular values, no overflow
    return WeightComparison(inside, norm, norm / inside, s, U, Vt)


def amplification_factor(W: np.ndarray, delta: np.ndarray, r: int) -> float:
    """The feature amplification factor ``||ΔW||_F / ||U.T @ W @ V.T||_F`` (Appendix H.4).

    ``W`` (m, n) is the pretrained weight, ``delta`` (m, n) the learned update ΔW, and U, V
    the top-r singular vectors of ΔW (:func:`projection_norm`); ``r`` in 1..rank(ΔW), the
    LoRA rank in the paper (21.5 = 6.91 / 0.32 at r = 4 for GPT-3's W_q, around 2 at
    r = 64). How many times larger ΔW is than the part of W already in ΔW's own directions.
    Its value scales with the size of ΔW, which the optimiser (learning rate, steps, alpha)
    sets as much as the task does. One SVD (:func:`compare_to_weight`). Raises
    ``ValueError`` if W has nothing in those directions beyond rounding.
    """
    return compare_to_weight(W, delta, r).amplification
