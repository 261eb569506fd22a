# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · ΔW = B·A, by hand — worked solutions
#
# Solutions to the four exercises of `02_delta_w_by_hand.ipynb`. For each one: the answer with
# the reasoning behind it, the self-check passing, and a typical wrong answer together with what
# the check tells you about it. Try the exercises yourself first — the hints in the main
# notebook are designed to get you there.
#
# Conventions as in the main notebook: $W_0$ (out, in), $A$ (r, in), $B$ (out, r),
# $s = \alpha/r$, and a batch of inputs is a matrix `x` of shape (N, in), one input per row.

# %%
import numpy as np

from lora_lab import checks
from lora_lab.numpy_lora import lora_backward, lora_forward, merge_weights


# %% [markdown]
# ## Exercise 1 — count the adapters of a model
#
# For one weight of shape (out, in), $B$ has shape (out, r) and $A$ has shape (r, in). Only these
# two are trained, so the count is $\text{out}\cdot r + r\cdot\text{in} =
# r(\text{out} + \text{in})$. For a list of weights, add that up over the list. Writing it as
# two named terms keeps the reasoning visible:

# %%
def lora_param_count(shapes: list[tuple[int, int]], r: int) -> int:
    """Trainable numbers when each weight in shapes, a list of (out_features, in_features)
    pairs, gets a rank-r LoRA adapter.

    Why: each adapter's B is (out_features, r) and its A is (r, in_features); only they
    are trained.
    """
    total = 0
    for out_features, in_features in shapes:
        entries_of_B = out_features * r
        entries_of_A = r * in_features
        total += entries_of_B + entries_of_A
    return total


# %%
_ = checks.check_param_count(lora_param_count)

# %% [markdown]
# Applied to the LoRA paper's setting — $W_q$ and $W_v$ in each of RoBERTa-base's 12 layers,
# $d_\text{model} = 768$, $r = 8$ — it reproduces the 0.3M of the main notebook. Adapting *all*
# six matrices of every layer, the MLP's non-square ones included, costs about 4.5 times as much:

# %%
roberta_qv = lora_param_count([(768, 768)] * 2 * 12, 8)
layer = [(768, 768)] * 4 + [(3072, 768), (768, 3072)]      # q, k, v, out; MLP up, down
roberta_all = lora_param_count(layer * 12, 8)
assert roberta_qv == 294_912 and roberta_all == 12 * 8 * (4 * 1536 + 2 * 3840)
print(f"RoBERTa-base, r = 8:  W_q and W_v {roberta_qv:,}   all six matrices {roberta_all:,} "
      f"({roberta_all / roberta_qv:.1f} times as many)")


# %% [markdown]
# **A typical wrong answer** counts the entries of the full weight — the number of values *full*
# fine-tuning would train:

# %%
def lora_param_count_wrong(shapes: list[tuple[int, int]], r: int) -> int:
    """A typical mistake: the size of the weights themselves, not of the adapters."""
    return sum(out_features * in_features for out_features, in_features in shapes)


_ = checks.check_param_count(lora_param_count_wrong)


# %% [markdown]
# ## Exercise 2 — the forward pass in row form
#
# In column form, $h = W_0x + s\,B(Ax)$. With inputs as rows, every product is transposed:
# $(Ax)^\top = x^\top A^\top$ becomes `x @ A.T` (shape (N, r)), and $(Bu)^\top = u^\top B^\top$
# becomes `u @ B.T` (shape (N, out)). The rank $r$ is read off `A.shape[0]`. Going through the
# bottleneck `u` keeps the cost at $r(\text{in}+\text{out})$ per input instead of forming the
# out × in matrix $\Delta W$.

# %%
def my_lora_forward(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                    alpha: float) -> np.ndarray:
    """LoRA layer output for a batch of rows: x (N, in), W0 (out, in), A (r, in),
    B (out, r) -> h (N, out).

    Why: the column form W0 x + s B (A x), transposed for row inputs.
    """
    s = alpha / A.shape[0]          # r is the number of rows of A
    u = x @ A.T                     # (N, r): the bottleneck, one row per input
    return x @ W0.T + s * (u @ B.T)


# %%
_ = checks.check_lora_forward(my_lora_forward)


# %% [markdown]
# **A typical wrong answer** forgets the scaling $\alpha/r$. For one fixed $r$ the difference is
# only a constant factor, which is why it is easy to miss; the check uses $\alpha/r \ne 1$ on
# purpose:

# %%
def my_lora_forward_wrong(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                          alpha: float) -> np.ndarray:
    """A typical mistake: the LoRA branch without alpha/r."""
    return x @ W0.T + (x @ A.T) @ B.T


_ = checks.check_lora_forward(my_lora_forward_wrong)


# %% [markdown]
# ## Exercise 3 — the batch gradients
#
# For one input, $\partial L/\partial B = s\,g\,u^\top$ and $\partial L/\partial A =
# s\,B^\top g\,x^\top$. Over a batch the gradients add up, and a sum of outer products is a
# matrix product: with $G$ = `grad_h` (N, out) and $U$ = `x @ A.T` (N, r),
#
# * $\partial L/\partial B = s\,G^\top U$: (out, N) @ (N, r) → (out, r), the shape of $B$;
# * $\partial L/\partial U = s\,G B$: (N, out) @ (out, r) → (N, r);
# * $\partial L/\partial A = (\partial L/\partial U)^\top X$: (r, N) @ (N, in) → (r, in), the
#   shape of $A$.
#
# Writing the shape next to each line is the cheapest way to catch a missing transpose. There
# is no extra $1/N$: `grad_h` already holds the loss's $1/(N\cdot\text{out})$. And `W0` is
# unused — the frozen weight enters the output, not the gradients of $A$ and $B$.

# %%
def my_lora_grads(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float,
                  grad_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dA, dL/dB) with shapes (r, in) and (out, r), given grad_h = dL/dh (N, out)
    for a batch of rows x (N, in). W0 is not needed: it is here for symmetry.

    Why: the sums over examples of s g u^T and s B^T g x^T, written as matrix products.
    """
    s = alpha / A.shape[0]
    u = x @ A.T                          # (N, r)
    grad_B = s * grad_h.T @ u            # (out, N) @ (N, r) -> (out, r)
    grad_u = s * grad_h @ B              # (N, out) @ (out, r) -> (N, r)
    grad_A = grad_u.T @ x                # (r, N) @ (N, in) -> (r, in)
    return grad_A, grad_B


# %%
_ = checks.check_lora_grads(my_lora_grads)

# %% [markdown]
# The solution agrees with the package's `lora_backward` on a fresh example too:

# %%
rng = np.random.default_rng(0)
x, W0 = rng.normal(size=(8, 5)), rng.normal(size=(3, 5))
A, B, grad_h = rng.normal(size=(2, 5)), rng.normal(size=(3, 2)), rng.normal(size=(8, 3))
A_grad, B_grad = my_lora_grads(x, W0, A, B, 4.0, grad_h)
reference = lora_backward(x, W0, A, B, 4.0, grad_h)
np.testing.assert_allclose(A_grad, reference.A)
np.testing.assert_allclose(B_grad, reference.B)


# %% [markdown]
# **A typical wrong answer** returns the gradients in the wrong order — both are correct, but
# whoever uses them would update $A$ with $B$'s gradient:

# %%
def my_lora_grads_wrong(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                        alpha: float, grad_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A typical mistake: (grad_B, grad_A) instead of (grad_A, grad_B)."""
    grad_A, grad_B = my_lora_grads(x, W0, A, B, alpha, grad_h)
    return grad_B, grad_A


_ = checks.check_lora_grads(my_lora_grads_wrong)


# %% [markdown]
# ## Exercise 4 — merge an adapter
#
# $W' = W_0 + \frac{\alpha}{r}BA$: $B$ (out, r) times $A$ (r, in) has the shape of $W_0$.
# The expression `W0 + ...` builds a new array, so the frozen weight survives — which is what
# lets you unmerge later, or merge a different adapter into the same base.

# %%
def my_merge(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float) -> np.ndarray:
    """Merged weight W' (out, in) from W0 (out, in), A (r, in), B (out, r). W0 must not
    change.

    Why: one matrix that computes exactly what the frozen layer plus adapter computed.
    """
    s = alpha / A.shape[0]
    return W0 + s * (B @ A)              # a new array; W0 itself is untouched


# %%
_ = checks.check_merge(my_merge)

# %%
x_test = np.random.default_rng(1).normal(size=(4, 5))
W_merged = my_merge(W0, A, B, 4.0)
np.testing.assert_allclose(x_test @ W_merged.T, lora_forward(x_test, W0, A, B, 4.0))
np.testing.assert_allclose(W_merged, merge_weights(W0, A, B, 4.0))
print("the merged weight gives the adapter's outputs with a single matrix")


# %% [markdown]
# **A typical wrong answer** updates `W0` in place with `+=`. The returned matrix is right, but
# the pretrained weight is gone — the caller's `W0` now *is* the merged weight, so merging twice
# applies the update twice:

# %%
def my_merge_wrong(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float) -> np.ndarray:
    """A typical mistake: changes the caller's W0 in place."""
    W0 += (alpha / A.shape[0]) * (B @ A)
    return W0


_ = checks.check_merge(my_merge_wrong)

# %% [markdown]
# That's all four. Back to the main notebook for the experiments, or on to a later notebook
# (03, coming), where the same layer is built in PyTorch.
