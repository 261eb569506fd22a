"""numpy_lora.py: hand-derived gradients vs finite differences and torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lora_lab as L
from lora_lab import numpy_lora as nl


def problem(n: int = 5, d_in: int = 6, d_out: int = 4, r: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in))
    W0 = rng.standard_normal((d_out, d_in))
    A = rng.standard_normal((r, d_in))
    B = rng.standard_normal((d_out, r))
    target = rng.standard_normal((n, d_out))
    return x, W0, A, B, target


def test_init_matches_peft_convention() -> None:
    A, B = nl.init_lora(in_features=64, out_features=10, r=4, seed=0)
    assert A.shape == (4, 64) and B.shape == (10, 4)
    assert np.all(B == 0)
    assert np.abs(A).max() <= 1 / np.sqrt(64) and np.abs(A).max() > 0.9 / np.sqrt(64)


def test_forward_equals_column_form() -> None:
    x, W0, A, B, _ = problem()
    h = nl.lora_forward(x, W0, A, B, alpha=6)
    for i in range(x.shape[0]):  # the notebook's column form, one input at a time
        column = W0 @ x[i] + (6 / 3) * B @ (A @ x[i])
        np.testing.assert_allclose(h[i], column)
    np.testing.assert_allclose(nl.lora_forward(x[0], W0, A, B, 6), h[0])
    np.testing.assert_allclose(x @ nl.merge_weights(W0, A, B, 6).T, h)


def test_backward_vs_finite_differences() -> None:
    x, W0, A, B, target = problem()
    alpha = 5.0

    def loss(A_: np.ndarray, B_: np.ndarray, x_: np.ndarray) -> float:
        return nl.mse_loss(nl.lora_forward(x_, W0, A_, B_, alpha), target)[0]

    _, grad_h = nl.mse_loss(nl.lora_forward(x, W0, A, B, alpha), target)
    grads = nl.lora_backward(x, W0, A, B, alpha, grad_h)
    np.testing.assert_allclose(grads.A, nl.numerical_gradient(lambda a: loss(a, B, x), A),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grads.B, nl.numerical_gradient(lambda b: loss(A, b, x), B),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grads.x, nl.numerical_gradient(lambda x_: loss(A, B, x_), x),
                               rtol=1e-6, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), d_in=st.integers(1, 7), d_out=st.integers(1, 7),
       r=st.integers(1, 4), alpha=st.floats(0.5, 32), seed=st.integers(0, 1000))
def test_backward_vs_torch_autograd(n: int, d_in: int, d_out: int, r: int, alpha: float,
                                    seed: int) -> None:
    x, W0, A, B, target = problem(n, d_in, d_out, r, seed)
    _, grad_h = nl.mse_loss(nl.lora_forward(x, W0, A, B, alpha), target)
    grads = nl.lora_backward(x, W0, A, B, alpha, grad_h)
    tx, tA, tB = (torch.tensor(v, requires_grad=True) for v in (x, A, B))
    h = tx @ torch.tensor(W0).T + (alpha / r) * (tx @ tA.T) @ tB.T
    torch.nn.functional.mse_loss(h, torch.tensor(target)).backward()
    for ours, theirs in ((grads.A, tA.grad), (grads.B, tB.grad), (grads.x, tx.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(1, 5), alpha=st.floats(0.1, 64))
def test_zero_B_leaves_the_pretrained_output_unchanged(seed: int, r: int, alpha: float) -> None:
    x, W0, _, _, _ = problem(seed=seed)
    A, B = nl.init_lora(x.shape[1], W0.shape[0], r, seed)
    np.testing.assert_array_equal(nl.lora_forward(x, W0, A, B, alpha), x @ W0.T)


def test_init_ablation_gradients() -> None:
    x, W0, _, _, target = problem()
    A, B = nl.init_lora(6, 4, 3, seed=1)
    _, g = nl.mse_loss(nl.lora_forward(x, W0, A, B, 3), target)
    grads = nl.lora_backward(x, W0, A, B, 3, g)
    assert np.all(grads.A == 0) and np.abs(grads.B).max() > 0  # B moves first
    zeros = nl.lora_backward(x, W0, np.zeros_like(A), B, 3, g)
    assert np.all(zeros.A == 0) and np.all(zeros.B == 0)  # both zero: stuck forever


def test_train_lora_recovers_a_low_rank_update() -> None:
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((8, 10))
    delta = 0.5 * rng.standard_normal((8, 2)) @ rng.standard_normal((2, 10))
    x = rng.standard_normal((200, 10))
    result = nl.train_lora(x, x @ (W0 + delta).T, W0, r=2, alpha=2, lr=0.1, steps=800, seed=0)
    assert len(result.losses) == 800 and result.losses[-1] < 1e-3 * result.losses[0]
    np.testing.assert_allclose(nl.delta_weight(result.A, result.B, 2), delta, atol=2e-2)


def test_scaling_and_sgd_step() -> None:
    assert L.lora_scaling(16, 8) == 2.0
    assert L.lora_scaling(16, 4, use_rslora=True) == 8.0
    A, B = np.ones((2, 3)), np.ones((4, 2))
    grads = nl.LoRAGrads(A=np.ones_like(A), B=2 * np.ones_like(B), x=np.zeros((1, 3)))
    A2, B2 = nl.sgd_step(A, B, grads, lr=0.5)
    np.testing.assert_allclose(A2, 0.5) and np.testing.assert_allclose(B2, 0.0)


def test_numerical_gradient_of_a_known_function() -> None:
    X = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(nl.numerical_gradient(lambda M: float(np.sum(M**3)), X), 3 * X**2,
                               rtol=1e-6)
    assert X[0, 0] == 1.0  # the input is left untouched


@pytest.mark.parametrize("alpha", [1.0, 16.0])
def test_delta_weight_scaling(alpha: float) -> None:
    _, _, A, B, _ = problem()
    np.testing.assert_allclose(nl.delta_weight(A, B, alpha), alpha / 3 * B @ A)


def test_train_lora_reports_divergence_and_accepts_a_start() -> None:
    rng = np.random.default_rng(0)
    W0, x = rng.standard_normal((4, 5)), rng.standard_normal((50, 5))
    y = x @ (W0 + rng.standard_normal((4, 5))).T
    with pytest.raises(FloatingPointError, match=r"diverged at step .*lower lr"):
        nl.train_lora(x, y, W0, r=2, alpha=2, lr=50.0, steps=500)
    A0, B0 = nl.init_lora(5, 4, 2, seed=3)
    given = nl.train_lora(x, y, W0, r=2, alpha=2, lr=0.05, steps=5, init=(A0, B0))
    seeded = nl.train_lora(x, y, W0, r=2, alpha=2, lr=0.05, steps=5, seed=3)
    np.testing.assert_array_equal(given.A, seeded.A)
    assert np.all(B0 == 0)  # the caller's arrays are not modified
    with pytest.raises(ValueError, match="r=3"):
        nl.train_lora(x, y, W0, r=3, alpha=2, lr=0.05, steps=5, init=(A0, B0))


def test_train_lora_loops_on_unchecked_internals_with_the_public_functions_results(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Arguments are checked once; the loop equals forward/loss/backward/step, bit for bit."""
    x, W0, _, _, target = problem(n=20, seed=3)
    A, B = nl.init_lora(6, 4, 3, seed=5)
    losses = []
    for _ in range(25):                      # the loop written with the checked public API
        loss, grad_h = nl.mse_loss(nl.lora_forward(x, W0, A, B, 6.0), target)
        A, B = nl.sgd_step(A, B, nl.lora_backward(x, W0, A, B, 6.0, grad_h), 0.05)
        losses.append(loss)

    def refuse(*args, **kwargs):
        raise AssertionError("train_lora's loop must not call the checked public functions")

    for name in ("lora_forward", "lora_backward", "mse_loss", "sgd_step"):
        monkeypatch.setattr(nl, name, refuse)
    result = nl.train_lora(x, target, W0, r=3, alpha=6.0, lr=0.05, steps=25, seed=5)
    np.testing.assert_array_equal(result.losses, losses)
    np.testing.assert_array_equal(result.A, A)
    np.testing.assert_array_equal(result.B, B)


def test_train_lora_checks_its_arguments_before_the_loop_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    x, W0, _, _, target = problem(n=20, seed=3)
    calls = {"as_matrix": 0}
    original = nl.as_matrix

    def counting(value, name):
        calls["as_matrix"] += 1
        return original(value, name)

    monkeypatch.setattr(nl, "as_matrix", counting)
    nl.train_lora(x, target, W0, r=3, alpha=6.0, lr=0.05, steps=200, seed=5)
    assert calls["as_matrix"] == 3           # W0, x and y, once each -- not once per step


def test_train_lora_reports_the_step_where_it_diverged() -> None:
    rng = np.random.default_rng(0)
    W0, x = rng.standard_normal((4, 5)), rng.standard_normal((50, 5))
    y = x @ (W0 + rng.standard_normal((4, 5))).T
    with pytest.raises(FloatingPointError) as err:
        nl.train_lora(x, y, W0, r=2, alpha=2, lr=50.0, steps=500)
    step = int(str(err.value).split("step ")[1].split(":")[0])
    losses = nl.train_lora(x, y, W0, r=2, alpha=2, lr=50.0, steps=step).losses
    assert len(losses) == step and np.all(np.isfinite(losses))
