"""lora_lab.update_analysis: the LoRA paper's §7 measurements, checked against independent
references -- NumPy's SVD, brute force over every (i, j), Monte Carlo over random subspaces,
and small cases worked out by hand -- and against bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lora_lab.lowrank import energy_captured, singular_values, subspace_similarity
from lora_lab.update_analysis import (
    amplification_factor,
    energy_rank,
    projection_norm,
    random_projection_rms,
    random_similarity,
    random_similarity_grid,
    similarity_grid,
    stable_rank,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


def orthonormal_rows(rng: np.random.Generator, r: int, d: int) -> np.ndarray:
    """r orthonormal rows in R^d, uniformly random (QR of a Gaussian matrix, signs fixed)."""
    q, upper = np.linalg.qr(rng.normal(size=(d, r)))
    return (q * np.sign(np.diag(upper))).T


# --------------------------------------------------------------------------- stable rank

def test_stable_rank_matches_numpy_norms(rng) -> None:
    for shape in [(7, 3), (3, 7), (20, 20), (1, 5)]:
        M = rng.normal(size=shape)
        expected = np.linalg.norm(M, "fro") ** 2 / np.linalg.norm(M, 2) ** 2
        assert stable_rank(M) == pytest.approx(expected, rel=1e-12)


def test_stable_rank_by_hand() -> None:
    assert stable_rank(np.outer([1.0, 2.0, 3.0], [4.0, 5.0])) == pytest.approx(1.0)
    assert stable_rank(np.eye(6)) == pytest.approx(6.0)
    assert stable_rank(np.diag([2.0, 1.0, 1.0])) == pytest.approx(1.5)  # (4 + 1 + 1) / 4


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_stable_rank_is_scale_free(scale, rng) -> None:
    M = rng.normal(size=(6, 4))
    assert stable_rank(scale * M) == pytest.approx(stable_rank(M), rel=1e-12)


def test_stable_rank_accepts_float32(rng) -> None:
    M = rng.normal(size=(6, 4))
    assert stable_rank(M.astype(np.float32)) == pytest.approx(stable_rank(M), rel=1e-5)


def test_stable_rank_bad_input() -> None:
    with pytest.raises(ValueError, match="M is zero"):
        stable_rank(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="M must be 2-D"):
        stable_rank(np.ones(3))
    with pytest.raises(TypeError, match="M must"):
        stable_rank("abc")
    with pytest.raises(ValueError, match="M contains NaN"):
        stable_rank(np.array([[1.0, np.nan]]))


# --------------------------------------------------------------------------- energy rank

def brute_energy_rank(s: np.ndarray, fraction: float) -> int:
    return next(k for k in range(1, s.size + 1) if energy_captured(s, k) >= fraction)


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.9, 0.99, 0.999])
def test_energy_rank_matches_brute_force(fraction, rng) -> None:
    for _ in range(20):
        s = singular_values(rng.normal(size=(12, 9)) * rng.uniform(0.1, 3, size=9))
        assert energy_rank(s, fraction) == brute_energy_rank(s, fraction)


def test_energy_rank_by_hand() -> None:
    s = np.array([3.0, 2.0, 1.0, 1.0, 1.0])  # energies 9, 4, 1, 1, 1 of 16
    assert energy_rank(s, 0.5) == 1          # 9/16 = 0.5625
    assert energy_rank(s, 0.6) == 2          # 13/16 = 0.8125
    assert energy_rank(s, 0.9) == 4          # 14/16 = 0.875 < 0.9 <= 15/16
    assert energy_rank(s, 0.95) == 5         # 15/16 = 0.9375
    assert energy_rank(np.array([2.0, 0.0, 0.0]), 0.999) == 1
    assert energy_rank([1.0, 1.0], 1 - 1e-16) == 2   # just below 1: needs every value


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_energy_rank_refuses_fractions_outside_0_1(fraction) -> None:
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        energy_rank(np.array([2.0, 1.0]), fraction)


def test_energy_rank_bad_input() -> None:
    with pytest.raises(TypeError, match="fraction must be a real number"):
        energy_rank(np.array([2.0, 1.0]), "0.9")
    with pytest.raises(TypeError, match="fraction must be a real number"):
        energy_rank(np.array([2.0, 1.0]), True)
    with pytest.raises(ValueError, match="s must be singular values"):
        energy_rank(np.array([1.0, 2.0]), 0.5)
    with pytest.raises(ValueError, match="s is all zero"):
        energy_rank(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="s must be 1-D"):
        energy_rank(np.ones((2, 2)), 0.5)


# --------------------------------------------------------------------------- similarity grid

def test_grid_equals_lowrank_subspace_similarity_everywhere(rng) -> None:
    A1, A2 = rng.normal(size=(5, 16)), rng.normal(size=(9, 16))
    grid = similarity_grid(A1, A2)
    assert grid.shape == (5, 9)
    brute = np.array([[subspace_similarity(A1.T, A2.T, i, j) for j in range(1, 10)]
                      for i in range(1, 6)])
    np.testing.assert_allclose(grid, brute, atol=1e-12)


def test_grid_uses_right_singular_vectors_of_A(rng) -> None:
    """The row space of A (r, d), where A reads its input: phi built from NumPy's Vt by hand."""
    A1, A2 = rng.normal(size=(3, 10)), rng.normal(size=(4, 10))
    V1 = np.linalg.svd(A1)[2][:3].T        # right singular vectors, (d, r1)
    V2 = np.linalg.svd(A2)[2][:4].T
    by_hand = np.linalg.norm(V1[:, :2].T @ V2[:, :3], "fro") ** 2 / 2
    assert similarity_grid(A1, A2)[1, 2] == pytest.approx(by_hand, abs=1e-12)


def test_grid_identical_and_orthogonal_subspaces() -> None:
    eye = np.eye(8)
    A = np.diag([4.0, 3.0, 2.0, 1.0]) @ eye[:4]          # spans e1..e4, ordered
    np.testing.assert_allclose(similarity_grid(A, A), np.ones((4, 4)), atol=1e-12)
    np.testing.assert_allclose(similarity_grid(A, 5 * eye[4:]), np.zeros((4, 4)), atol=1e-12)
    nested = similarity_grid(np.diag([2.0, 1.0]) @ eye[:2], A)  # e1, e2 inside e1..e4
    assert nested[1, 3] == pytest.approx(1.0)               # contained: 1, not 2/4
    assert nested[1, 0] == pytest.approx(1.0)               # e1 inside span(e1, e2)
    assert nested[0, 1] == pytest.approx(1.0)


def test_grid_symmetry_scaling_and_rotation_of_rows(rng) -> None:
    A1, A2 = rng.normal(size=(4, 12)), rng.normal(size=(6, 12))
    grid = similarity_grid(A1, A2)
    np.testing.assert_allclose(similarity_grid(A2, A1), grid.T, atol=1e-12)
    np.testing.assert_allclose(similarity_grid(1e-200 * A1, 1e200 * A2), grid, atol=1e-12)
    Q = orthonormal_rows(rng, 4, 4)                 # mixing the rows keeps A's row space
    np.testing.assert_allclose(similarity_grid(Q @ A1, A2), grid, atol=1e-12)
    assert np.all((grid >= 0) & (grid <= 1))


def test_grid_accepts_float32(rng) -> None:
    A1, A2 = rng.normal(size=(3, 20)), rng.normal(size=(5, 20))
    np.testing.assert_allclose(similarity_grid(A1.astype(np.float32), A2.astype(np.float32)),
                               similarity_grid(A1, A2), atol=1e-5)


def test_grid_bad_input(rng) -> None:
    with pytest.raises(ValueError, match="same number of columns d"):
        similarity_grid(rng.normal(size=(2, 5)), rng.normal(size=(2, 6)))
    low_rank = np.outer(rng.normal(size=3), rng.normal(size=8))
    with pytest.raises(ValueError, match=r"A2 .* numerical rank 1 < 3"):
        similarity_grid(rng.normal(size=(2, 8)), low_rank)
    with pytest.raises(ValueError, match="A1 must have at most as many rows"):
        similarity_grid(rng.normal(size=(6, 4)), rng.normal(size=(2, 4)))
    with pytest.raises(ValueError, match="A1 must be 2-D"):
        similarity_grid(np.ones(4), rng.normal(size=(2, 4)))
    with pytest.raises(TypeError, match="A2 must"):
        similarity_grid(rng.normal(size=(2, 4)), None)


# --------------------------------------------------------------------------- random baseline

@pytest.mark.parametrize(("i", "j", "d", "expected"), [
    (1, 1, 256, 1 / 256), (8, 64, 256, 0.25), (64, 8, 256, 0.25), (5, 5, 5, 1.0), (3, 7, 10, 0.7)])
def test_random_similarity_by_hand(i, j, d, expected) -> None:
    assert random_similarity(i, j, d) == pytest.approx(expected)


def test_random_similarity_by_monte_carlo(rng) -> None:
    """Random Gaussian factors (row spaces uniformly random) average max(i, j)/d in every cell."""
    r1, r2, d, trials = 4, 10, 24, 3000
    total = sum(similarity_grid(rng.normal(size=(r1, d)), rng.normal(size=(r2, d)))
                for _ in range(trials))
    expected = random_similarity_grid(r1, r2, d)
    # standard error of each cell's mean is below 0.16 / sqrt(3000) = 0.003
    np.testing.assert_allclose(total / trials, expected, atol=0.012)
    assert expected[0, 0] == pytest.approx(1 / d) and expected[3, 9] == pytest.approx(10 / d)


def test_random_similarity_holds_when_only_one_subspace_is_random(rng) -> None:
    fixed = np.eye(20)[:6]                              # span(e1..e6), not random at all
    mean = np.mean([similarity_grid(rng.normal(size=(3, 20)), fixed)[2, 5]
                    for _ in range(3000)])
    assert mean == pytest.approx(random_similarity(3, 6, 20), abs=0.01)   # 6/20


def test_random_similarity_grid_matches_the_scalar() -> None:
    grid = random_similarity_grid(3, 5, 16)
    assert grid.shape == (3, 5)
    for i in range(1, 4):
        for j in range(1, 6):
            assert grid[i - 1, j - 1] == random_similarity(i, j, 16)


@pytest.mark.parametrize(("args", "error", "pattern"), [
    ((0, 1, 5), ValueError, "{i} must be >= 1"), ((1, 6, 5), ValueError, "{j} must be between"),
    ((1, 1, 0), ValueError, "d must be >= 1"), ((1.0, 1, 5), TypeError, "{i} must be an int"),
    ((1, 1, "5"), TypeError, "d must be an int"), ((True, 1, 5), TypeError, "{i} must be an int")])
def test_random_similarity_bad_input(args, error, pattern) -> None:
    with pytest.raises(error, match=pattern.format(i="i", j="j")):
        random_similarity(*args)
    with pytest.raises(error, match=pattern.format(i="r1", j="r2")):
        random_similarity_grid(*args)


# --------------------------------------------------------------------------- W and ΔW

def test_projection_norm_by_numpy_svd(rng) -> None:
    W, M = rng.normal(size=(9, 7)), rng.normal(size=(9, 7))
    U, _, Vt = np.linalg.svd(M)
    for r in (1, 3, 7):
        expected = np.linalg.norm(U[:, :r].T @ W @ Vt[:r].T, "fro")
        assert projection_norm(W, M, r) == pytest.approx(expected, rel=1e-12)


def test_projection_of_W_onto_its_own_directions_is_its_top_energy(rng) -> None:
    W = rng.normal(size=(8, 11))
    s = np.linalg.svd(W, compute_uv=False)
    for r in range(1, 9):
        assert projection_norm(W, W, r) == pytest.approx(np.sqrt(np.sum(s[:r] ** 2)))
    assert projection_norm(W, W, 8) == pytest.approx(np.linalg.norm(W))


def test_projection_norm_is_at_most_the_top_energy(rng) -> None:
    """Ky Fan: no r directions hold more of W than W's own top r."""
    W = rng.normal(size=(10, 10))
    for _ in range(20):
        M = rng.normal(size=(10, 10))
        assert projection_norm(W, M, 3) <= projection_norm(W, W, 3) + 1e-12


def test_projection_norm_by_hand() -> None:
    W = np.diag([10.0, 1.0, 0.0])
    delta = 5.0 * np.outer([0, 1, 0], [0, 1, 0])        # along e2, where W has 1
    assert projection_norm(W, delta, 1) == pytest.approx(1.0)
    assert amplification_factor(W, delta, 1) == pytest.approx(5.0)
    assert amplification_factor(W, 3 * delta, 1) == pytest.approx(15.0)
    assert amplification_factor(2 * W, delta, 1) == pytest.approx(2.5)


def test_random_projection_rms_by_monte_carlo(rng) -> None:
    W, r = rng.normal(size=(12, 20)) * np.linspace(0.1, 2, 20), 3
    squares = [projection_norm(W, rng.normal(size=W.shape), r) ** 2 for _ in range(4000)]
    assert np.sqrt(np.mean(squares)) == pytest.approx(random_projection_rms(W, r), rel=0.03)


def test_random_projection_rms_formula_and_papers_table_7() -> None:
    W = np.full((4, 9), 0.5)                             # ||W||_F = 3
    assert random_projection_rms(W, 2) == pytest.approx(2 * 3 / 6)
    # GPT-3's W_q (Table 7): 12288 x 12288, ||W_q||_F = 61.95; the formula's r ||W|| / 12288
    for r, table in ((4, 0.02), (64, 0.33)):
        assert abs(r * 61.95 / 12288 - table) < 0.01   # 0.0202 and 0.323 (one draw: 0.33)


def test_amplification_factor_of_a_lora_update(rng) -> None:
    W = rng.normal(size=(16, 16))
    B, A = rng.normal(size=(16, 2)), rng.normal(size=(2, 16))
    delta = B @ A
    U, _, Vt = np.linalg.svd(delta)
    expected = np.linalg.norm(delta) / np.linalg.norm(U[:, :2].T @ W @ Vt[:2].T)
    assert amplification_factor(W, delta, 2) == pytest.approx(expected, rel=1e-10)


def test_projection_and_amplification_bad_input(rng) -> None:
    W = rng.normal(size=(5, 4))
    rank_two = rng.normal(size=(5, 2)) @ rng.normal(size=(2, 4))
    with pytest.raises(ValueError, match="r must be between 1 and 2"):
        projection_norm(W, rank_two, 3)
    with pytest.raises(ValueError, match="r must be between 1 and 2"):
        amplification_factor(W, rank_two, 3)
    with pytest.raises(ValueError, match="M must have the shape of W"):
        projection_norm(W, rng.normal(size=(4, 5)), 1)
    with pytest.raises(ValueError, match="delta must have the shape of W"):
        amplification_factor(W, rng.normal(size=(4, 5)), 1)
    with pytest.raises(ValueError, match="delta is zero"):
        amplification_factor(W, np.zeros((5, 4)), 1)
    with pytest.raises(ValueError, match="infinite"):
        amplification_factor(np.diag([1.0, 0.0]), np.diag([0.0, 1.0]), 1)
    with pytest.raises(TypeError, match="r must be an int"):
        projection_norm(W, W, 1.5)
    with pytest.raises(ValueError, match="r must be between 1 and 4"):
        random_projection_rms(W, 5)
    with pytest.raises(TypeError, match="W must"):
        random_projection_rms("W", 1)


# --------------------------------------------------------------------------- notebook 05's setup

def test_r64_gets_the_learning_rate_the_sweep_rule_would_pick() -> None:
    """Notebook 05 trains LoRA r = 64 at r = 8's swept learning rate: on the same validation
    split and by the same rule (best worst seed of five, tools/sweep_digits_lr.py), it is
    also r = 64's best among it and its neighbours in the sweep's grid."""
    import torch

    from lora_lab.digits_task import (
        SweepRow,
        best_lr,
        load_lr_sweep,
        make_task,
        run_variant,
        tuning_split,
    )

    torch.set_num_threads(1)
    chosen = best_lr(load_lr_sweep(), "rotate", "LoRA r=8")
    assert chosen == 0.02   # if the sweep changes, change the neighbours below with it
    task, rows = tuning_split(make_task("rotate")), []
    for lr in (0.01, 0.02, 0.05):
        for seed in range(5):
            try:
                correct = run_variant(task, "lora", r=64, lr=lr, seed=seed).correct
            except FloatingPointError:
                correct = 0
            rows.append(SweepRow("rotate", "LoRA r=64", lr, seed, correct, 100))
    assert best_lr(rows, "rotate", "LoRA r=64") == chosen
