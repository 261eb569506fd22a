"""LoRA by hand in NumPy: init, forward, hand-derived backward, training.

Shapes follow PEFT and loralib: ``W0`` (out, in), ``A`` (r, in), ``B`` (out, r).
Inputs are a batch of rows ``x`` (N, in), as in PyTorch, so the notebook's
column form ``h = W0 x + (alpha/r) B A x`` reads here as
``h = x @ W0.T + (alpha/r) * (x @ A.T) @ B.T`` with ``h`` (N, out).

Why: with no autograd in the way, every number in a LoRA update can be
derived, printed and checked -- which is what notebook 02 does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._validate import as_array, as_matrix, check_int, check_real


def lora_scaling(alpha: float, r: int, use_rslora: bool = False) -> float:
    """The factor in front of ``B @ A``: ``alpha / r`` (or ``alpha / sqrt(r)`` for rsLoRA).

    Why: the factor decides how the first training steps change when r changes at a
    fixed alpha and learning rate. For Adam's first step from B = 0, ``alpha / r``
    keeps the first-order loss decrease roughly independent of r, while ``alpha /
    sqrt(r)`` (rsLoRA, Kalajdzievski 2023, arXiv:2312.03732) keeps the size
    ``||dW||_F`` of that step roughly independent of r; for plain gradient descent
    ``alpha / sqrt(r)`` is the one that keeps the first step's decrease steady
    (notebook 02, section 7.3, measures all three).
    """
    alpha = check_real(alpha, "alpha")
    r = check_int(r, "r", minimum=1)
    if not isinstance(use_rslora, bool):
        raise TypeError(f"use_rslora must be a bool, got {type(use_rslora).__name__}")
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def init_lora(in_features: int, out_features: int, r: int,
              seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
    """Initial factors ``A`` (r, in) and ``B`` (out, r), as PEFT and loralib start them.

    ``A`` is uniform in +-1/sqrt(in) (PyTorch's Kaiming-uniform with a=sqrt(5)),
    ``B`` is zero, so ``B @ A = 0``: the adapted model starts exactly at the
    pretrained one, yet ``A`` is random, so ``B`` receives a gradient at step 0.
    """
    in_features = check_int(in_features, "in_features", minimum=1)
    out_features = check_int(out_features, "out_features", minimum=1)
    r = check_int(r, "r", minimum=1)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
        check_int(seed, "seed", minimum=0))
    bound = 1.0 / math.sqrt(in_features)
    A = rng.uniform(-bound, bound, size=(r, in_features))
    B = np.zeros((out_features, r))
    return A, B


def _check_lora_shapes(W0: np.ndarray, A: np.ndarray, B: np.ndarray) -> None:
    out_features, in_features = W0.shape
    if A.shape[1] != in_features:
        raise ValueError(f"A must have shape (r, in_features={in_features}), got {A.shape}")
    if B.shape != (out_features, A.shape[0]):
        raise ValueError(f"B must have shape (out_features={out_features}, r={A.shape[0]}), "
                         f"got {B.shape}")


def _check_x(x: np.ndarray, in_features: int) -> np.ndarray:
    x = as_array(x, "x", ndim=(1, 2))
    if x.shape[-1] != in_features:
        raise ValueError(f"x must have in_features={in_features} entries in its last axis, "
                         f"got shape {x.shape}")
    return x


def delta_weight(A: np.ndarray, B: np.ndarray, alpha: float) -> np.ndarray:
    """The update LoRA adds to the weight: ``(alpha / r) * B @ A``, shape (out, in)."""
    A = as_matrix(A, "A")
    B = as_matrix(B, "B")
    if B.shape[1] != A.shape[0]:
        raise ValueError(f"B must have r={A.shape[0]} columns to match A {A.shape}, got {B.shape}")
    return lora_scaling(alpha, A.shape[0]) * (B @ A)


def lora_forward(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                 alpha: float) -> np.ndarray:
    """``h = x @ W0.T + (alpha/r) * (x @ A.T) @ B.T`` for ``x`` (N, in) or (in,).

    Returns ``h`` (N, out) or (out,). ``W0`` is never changed: the update lives
    in the two thin factors. Why: this is the whole of LoRA's forward pass.
    """
    W0, A, B = as_matrix(W0, "W0"), as_matrix(A, "A"), as_matrix(B, "B")
    _check_lora_shapes(W0, A, B)
    x = _check_x(x, W0.shape[1])
    return _forward(x, W0, A, B, lora_scaling(alpha, A.shape[0]))


def _forward(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
             s: float) -> np.ndarray:
    """:func:`lora_forward` without argument checks (``s`` is the scaling): for inner loops."""
    return x @ W0.T + s * ((x @ A.T) @ B.T)


def merge_weights(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float) -> np.ndarray:
    """``W' = W0 + (alpha/r) B @ A`` (out, in): one matrix, zero extra inference cost."""
    W0 = as_matrix(W0, "W0")
    A, B = as_matrix(A, "A"), as_matrix(B, "B")
    _check_lora_shapes(W0, A, B)
    return W0 + delta_weight(A, B, alpha)


@dataclass
class LoRAGrads:
    """Gradients of a scalar loss w.r.t. ``A`` (r, in), ``B`` (out, r) and ``x`` (N, in)."""

    A: np.ndarray
    B: np.ndarray
    x: np.ndarray


def lora_backward(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                  alpha: float, grad_h: np.ndarray) -> LoRAGrads:
    """Hand-derived backward pass of :func:`lora_forward`.

    With ``s = alpha/r``, ``u = x @ A.T`` (N, r) and upstream gradient ``G = dL/dh`` (N, out):

    - ``dL/dB = s * G.T @ u``                  (out, r)
    - ``dL/du = s * G @ B``                    (N, r)
    - ``dL/dA = (dL/du).T @ x``                (r, in)
    - ``dL/dx = G @ W0 + (dL/du) @ A``         (N, in)

    Why: seeing ``dL/dA`` carry a factor ``B`` explains why B = 0 with random A
    learns (B moves first) and why A = B = 0 never does.
    """
    W0, A, B = as_matrix(W0, "W0"), as_matrix(A, "A"), as_matrix(B, "B")
    _check_lora_shapes(W0, A, B)
    x = _check_x(x, W0.shape[1])
    grad_h = as_array(grad_h, "grad_h", ndim=x.ndim)
    expected = (*x.shape[:-1], W0.shape[0])
    if grad_h.shape != expected:
        raise ValueError(f"grad_h must have the output's shape {expected}, got {grad_h.shape}")
    grads = _backward(np.atleast_2d(x), W0, A, B, lora_scaling(alpha, A.shape[0]),
                      np.atleast_2d(grad_h))
    grads.x = grads.x.reshape(x.shape)
    return grads


def _backward(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray, s: float,
              grad_h: np.ndarray) -> LoRAGrads:
    """:func:`lora_backward` without argument checks, for 2-D ``x`` and ``grad_h``."""
    grad_A, grad_B, grad_u = _factor_grads(x, A, B, s, grad_h)
    return LoRAGrads(A=grad_A, B=grad_B, x=grad_h @ W0 + grad_u @ A)


def _factor_grads(x: np.ndarray, A: np.ndarray, B: np.ndarray, s: float,
                  grad_h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dL/dA, dL/dB, dL/du)`` for 2-D ``x`` and ``grad_h``, unchecked: what training needs."""
    grad_u = s * (grad_h @ B)
    return grad_u.T @ x, s * (grad_h.T @ (x @ A.T)), grad_u


def mse_loss(h: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error ``mean((h - target)**2)`` and its gradient ``dL/dh`` (same shape as h).

    Why: the simplest loss whose gradient (``2 (h - target) / h.size``) is easy to derive.
    """
    h = as_array(h, "h", ndim=(1, 2))
    target = as_array(target, "target", ndim=(1, 2))
    if target.shape != h.shape:
        raise ValueError(f"target must have the shape of h {h.shape}, got {target.shape}")
    return _mse(h, target)


def _mse(h: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`mse_loss` without argument checks."""
    diff = h - target
    return float(np.mean(diff**2)), 2.0 * diff / diff.size


def numerical_gradient(f: Callable[[np.ndarray], float], X: np.ndarray,
                       eps: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of a scalar function ``f`` at ``X`` (any shape).

    Entry by entry: ``(f(X + eps e_i) - f(X - eps e_i)) / (2 eps)``; error O(eps**2).
    Why: an independent check that a hand-derived gradient is right.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    X = np.array(as_array(X, "X", ndim=(0, 1, 2, 3)), dtype=np.float64)
    eps = check_real(eps, "eps", positive=True)
    grad = np.zeros_like(X)
    flat, gflat = X.reshape(-1), grad.reshape(-1)

    def f_at(value: float, i: int) -> float:
        flat[i] = value
        out = np.asarray(f(X))
        if out.size != 1 or not np.issubdtype(out.dtype, np.number):
            raise TypeError(f"f must return one number, got shape {out.shape}")
        if not np.isfinite(out):
            raise ValueError(f"f returned {out.item()} at entry {i} of X")
        return float(out.item())

    for i in range(flat.size):
        old = flat[i]
        up, down = f_at(old + eps, i), f_at(old - eps, i)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def sgd_step(A: np.ndarray, B: np.ndarray, grads: LoRAGrads,
             lr: float) -> tuple[np.ndarray, np.ndarray]:
    """One plain gradient-descent step on the factors: returns new ``(A, B)``; W0 is untouched."""
    lr = check_real(lr, "lr", positive=True)
    if not isinstance(grads, LoRAGrads):
        raise TypeError(f"grads must be LoRAGrads, got {type(grads).__name__}")
    A, B = as_matrix(A, "A"), as_matrix(B, "B")
    grad_A, grad_B = as_matrix(grads.A, "grads.A"), as_matrix(grads.B, "grads.B")
    if grad_A.shape != A.shape or grad_B.shape != B.shape:
        raise ValueError(f"grads.A and grads.B must have the shapes of A {A.shape} and B "
                         f"{B.shape}, got {grad_A.shape} and {grad_B.shape}")
    return A - lr * grad_A, B - lr * grad_B


@dataclass
class TrainResult:
    """What :func:`train_lora` returns: final factors and the loss at every step."""

    A: np.ndarray
    B: np.ndarray
    losses: list[float] = field(default_factory=list)


def train_lora(x: np.ndarray, y: np.ndarray, W0: np.ndarray, r: int, alpha: float,
               lr: float, steps: int, seed: int = 0,
               init: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Fit LoRA factors by full-batch gradient descent on ``mse_loss``.

    ``x`` (N, in) and ``y`` (N, out) are input/target pairs; ``W0`` (out, in)
    stays frozen. The factors start from ``init_lora(..., seed)``, or from
    ``init = (A, B)`` when given (for initialisation experiments). Returns the
    factors after ``steps`` steps and the loss before each step
    (``len(losses) == steps``). Raises ``FloatingPointError`` naming the step
    if the loss blows up (learning rate too high). The arguments are checked
    once, before the loop; the loop itself runs on unchecked internals. Why: the
    training loop with nothing hidden -- forward, loss, backward, step.
    """
    W0 = as_matrix(W0, "W0")
    x = as_matrix(x, "x")
    y = as_matrix(y, "y")
    if x.shape[1] != W0.shape[1]:
        raise ValueError(f"x must have shape (N, in_features={W0.shape[1]}), got {x.shape}")
    if y.shape != (x.shape[0], W0.shape[0]):
        raise ValueError(f"y must have shape (N={x.shape[0]}, out_features={W0.shape[0]}), "
                         f"got {y.shape}")
    steps = check_int(steps, "steps", minimum=1)
    lr = check_real(lr, "lr", positive=True)
    s = lora_scaling(alpha, r)  # checks alpha and r before the loop
    A, B = _start(W0, r, seed, init)
    losses: list[float] = []  # one per finished step, so len(losses) is the current step
    try:
        with np.errstate(over="raise", invalid="raise"):
            for _ in range(steps):
                loss, grad_h = _mse(_forward(x, W0, A, B, s), y)
                grad_A, grad_B, _ = _factor_grads(x, A, B, s, grad_h)
                A, B = A - lr * grad_A, B - lr * grad_B
                losses.append(loss)
    except FloatingPointError:
        raise FloatingPointError(f"training diverged at step {len(losses)}: the numbers "
                                 f"overflowed; lower lr (now {lr:g})") from None
    return TrainResult(A=A, B=B, losses=losses)


def _start(W0: np.ndarray, r: int, seed: int,
           init: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The checked starting factors of :func:`train_lora`: ``init_lora`` or copies of ``init``."""
    if init is None:
        return init_lora(W0.shape[1], W0.shape[0], r, seed)
    if not isinstance(init, tuple) or len(init) != 2:
        raise TypeError("init must be a pair (A, B) of arrays or None")
    A, B = as_matrix(init[0], "init[0] (A)").copy(), as_matrix(init[1], "init[1] (B)").copy()
    _check_lora_shapes(W0, A, B)
    if A.shape[0] != r:
        raise ValueError(f"init's A has rank {A.shape[0]}, but r={r}")
    return A, B
