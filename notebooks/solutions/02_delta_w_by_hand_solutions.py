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
# Exercises 2–4 are predictions; each is checked against a small experiment that this notebook
# runs itself, with the functions of `lora_lab`.

# %%
import numpy as np

from lora_lab import checks
from lora_lab.numpy_lora import (
    init_lora,
    lora_backward,
    lora_forward,
    merge_weights,
    mse_loss,
    numerical_gradient,
    train_lora,
)


# %% [markdown]
# ## Exercise 1 — the gradient with respect to x
#
# Start from the column form $h = W_0x + s\,B(Ax)$ and follow $x$ to $h$. It gets there along
# two paths: directly through $W_0$, and through $A$ (to $u = Ax$) and then $B$. The chain rule
# adds one term per path:
#
# $$\frac{\partial L}{\partial x} = W_0^\top g + A^\top\frac{\partial L}{\partial u}
# = W_0^\top g + s\,A^\top B^\top g .$$
#
# In row form, with the $g_n^\top$ as the rows of $G$ (N, out): $G\,W_0$ is (N, out) @ (out, in)
# → (N, in), and $s\,(G B) A$ is (N, out) @ (out, r) @ (r, in) → (N, in). Unlike the gradients of
# $A$ and $B$, this one needs $W_0$: the frozen weight gets no gradient *of its own*, but the
# backward pass still goes through it.

# %% tags=["solution"]
def my_grad_x(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float,
              grad_h: np.ndarray) -> np.ndarray:
    """dL/dx (N, in) for a batch of rows x (N, in), given grad_h = dL/dh (N, out)."""
    # ✏️ your code here: one term per path from x to h; write the shape under each factor
    ### BEGIN SOLUTION
    s = alpha / A.shape[0]               # r is the number of rows of A
    through_W0 = grad_h @ W0             # (N, out) @ (out, in) -> (N, in)
    through_A_and_B = s * (grad_h @ B) @ A   # (N, out) @ (out, r) @ (r, in) -> (N, in)
    return through_W0 + through_A_and_B
    ### END SOLUTION


# %%
_ = checks.check_grad_x(my_grad_x)

# %% [markdown]
# Finite differences agree, on a fresh example with the mean squared error:

# %%
rng = np.random.default_rng(0)
x, W0 = rng.normal(size=(8, 5)), rng.normal(size=(3, 5))
A, B, target = rng.normal(size=(2, 5)), rng.normal(size=(3, 2)), rng.normal(size=(8, 3))
G = mse_loss(lora_forward(x, W0, A, B, 4.0), target)[1]
numeric = numerical_gradient(lambda x_: mse_loss(lora_forward(x_, W0, A, B, 4.0), target)[0], x)
np.testing.assert_allclose(my_grad_x(x, W0, A, B, 4.0, G), numeric, atol=1e-8)
np.testing.assert_allclose(my_grad_x(x, W0, A, B, 4.0, G), lora_backward(x, W0, A, B, 4.0, G).x)
print("my_grad_x agrees with finite differences and with lora_backward")


# %% [markdown]
# **A typical wrong answer** leaves out the path through $W_0$ ("$W_0$ is frozen, so it has no
# gradient"). Frozen means $W_0$ is not *updated*; the signal still flows through it:

# %%
def my_grad_x_wrong(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                    alpha: float, grad_h: np.ndarray) -> np.ndarray:
    """A typical mistake: only the LoRA path."""
    return (alpha / A.shape[0]) * (grad_h @ B) @ A


_ = checks.check_grad_x(my_grad_x_wrong)

# %% [markdown]
# ## Exercise 2 — predict the three starting points
#
# Everything follows from the two gradient formulas of §3: $\partial L/\partial A =
# s\,(GB)^\top X$ contains $B$, and $\partial L/\partial B = s\,G^\top XA^\top$ contains $A$.
#
# * $A$ gets a gradient only where $B \neq 0$: "both random".
# * $B$ gets a gradient wherever $A \neq 0$ (and $G \neq 0$, which holds because the
#   pretrained layer does not fit the new task): LoRA's start and "both random".
# * The outputs change at step 0 only where $BA \neq 0$: "both random".
# * "Both zero" never learns: both gradients are zero, so nothing ever moves. LoRA's start
#   learns — $B$ moves at step 0, and then $A$ has a gradient too.

# %% tags=["solution"]
# ✏️ For each statement, the set of starts for which it holds, from "lora" (B = 0, A random),
# "zeros" (both zero) and "random" (both random); write set() for none of them.
### BEGIN SOLUTION
A_gets_gradient = {"random"}               # dL/dA contains B: zero wherever B = 0
B_gets_gradient = {"lora", "random"}       # dL/dB contains A: zero only where A = 0
outputs_change_at_step_0 = {"random"}      # B A != 0 only when both factors are non-zero
never_learns = {"zeros"}                   # both gradients zero: gradient descent never moves
### END SOLUTION

# %% [markdown]
# The experiment, small and self-contained: a frozen layer, a new task that needs a rank-4
# change, and the three starts.

# %%
rng = np.random.default_rng(42)
W_pre, X_task = rng.normal(size=(12, 16)) / 4, rng.normal(size=(256, 16))
Y_task = X_task @ (W_pre + rng.normal(size=(12, 4)) @ rng.normal(size=(4, 16)) / 4).T
A_rand, B_zero = init_lora(16, 12, 4, seed=1)
B_rand = np.random.default_rng(2).uniform(-0.5, 0.5, size=(12, 4))
starts = {"lora": (A_rand, B_zero), "zeros": (0 * A_rand, B_zero), "random": (A_rand, B_rand)}
observed = {name: set() for name in
            ("A_gets_gradient", "B_gets_gradient", "outputs_change_at_step_0", "never_learns")}
for name, (A0, B0) in starts.items():
    H0 = lora_forward(X_task, W_pre, A0, B0, 8.0)
    grads = lora_backward(X_task, W_pre, A0, B0, 8.0, mse_loss(H0, Y_task)[1])
    losses = train_lora(X_task, Y_task, W_pre, 4, 8.0, lr=0.5, steps=100, init=(A0, B0)).losses
    for key, holds in (("A_gets_gradient", grads.A.any()), ("B_gets_gradient", grads.B.any()),
                       ("outputs_change_at_step_0", np.any(H0 != X_task @ W_pre.T)),
                       ("never_learns", losses[-1] == losses[0])):
        if holds:
            observed[key].add(name)

# %%
_ = checks.check_init_predictions(A_gets_gradient, B_gets_gradient, outputs_change_at_step_0,
                                  never_learns, observed=observed)

# %% [markdown]
# **A typical wrong answer** expects that $A$, being the random factor, is the one that moves
# first at LoRA's start:

# %%
_ = checks.check_init_predictions({"lora", "random"}, B_gets_gradient, outputs_change_at_step_0,
                                  never_learns, observed=observed)

# %% [markdown]
# ## Exercise 3 — the unmerge error in float32
#
# A float32 number keeps 24 significant bits: neighbouring float32 numbers near a value $w$ are
# about $\varepsilon\,|w|$ apart, with $\varepsilon$ = `np.finfo(np.float32).eps` $= 2^{-23}
# \approx 1.2\cdot10^{-7}$. Rounding to the nearest one changes $w$ by at most half that
# spacing. The round trip rounds each entry twice — once when $W_0 + \Delta W$ is stored, once
# when $\Delta W$ is subtracted again — so the error is at most about
# $\tfrac{\varepsilon}{2}(|W'| + |W_0|) \le \varepsilon\max(|W'|, |W_0|)$ entry by entry.
# For entries of similar size, predicting with the largest entry of the merged weight gets the
# order right:

# %%
rng = np.random.default_rng(3)
W0, A, B = rng.normal(size=(12, 16)) / 4, rng.normal(size=(4, 16)) / 4, rng.normal(size=(12, 4)) / 4
W_merged = merge_weights(W0, A, B, 8.0)

# %% tags=["solution"]
# ✏️ Your prediction: the largest |W_back - W0| after merging and unmerging in float32
### BEGIN SOLUTION
predicted_error = np.finfo(np.float32).eps * np.abs(W_merged).max()
### END SOLUTION

# %%
W0_32, delta_32 = W0.astype(np.float32), (W_merged - W0).astype(np.float32)
W_back = (W0_32 + delta_32) - delta_32                 # merge, then unmerge, in float32
measured_error = float(np.abs(W_back - W0_32).max())
eps32, W_merged_32 = np.finfo(np.float32).eps, W0_32 + delta_32
bound = eps32 / 2 * (np.abs(W_merged_32) + np.abs(W0_32)).max()       # two roundings
assert measured_error <= bound <= eps32 * max(np.abs(W_merged_32).max(), np.abs(W0_32).max())
print(f"predicted {predicted_error:.2g}, measured {measured_error:.2g}")
_ = checks.check_unmerge_error(predicted_error, measured_error)

# %% [markdown]
# **A typical wrong answer** uses float64's precision, as if the merge happened in NumPy's
# default type:

# %%
_ = checks.check_unmerge_error(np.finfo(np.float64).eps * np.abs(W_merged).max(), measured_error)

# %% [markdown]
# ## Exercise 4 — which scaling keeps what steady
#
# Write $\nabla_W L$ for the gradient with respect to the whole weight. At LoRA's start
# ($B_0 = 0$) only $B$ moves, and $\partial L/\partial B = s\,\nabla_W L\,A^\top$.
#
# * **Adam's first step** moves every entry of $B$ by exactly lr against the sign of its
#   gradient: $B_1 = -\text{lr}\cdot\operatorname{sign}(\nabla_W L\,A^\top)$, whatever $s$ is.
#   So $\Delta W_1 = s\,B_1A$. Its progress $s\cdot\text{lr}\cdot\sum|\nabla_W L\,A^\top|$ adds up
#   out·r terms: it grows like $s\,r$, and $s = \alpha/r$ cancels that. Its size adds up $r$
#   rank-1 pieces with random-looking signs, which grows like $s\sqrt{r}$: $s = \alpha/\sqrt{r}$
#   cancels that.
# * **Plain gradient descent** moves $B$ by lr times its gradient, which itself carries $s$:
#   $B_1 = -\text{lr}\cdot s\,\nabla_W L\,A^\top$ and $\Delta W_1 = -\text{lr}\cdot s^2\,
#   \nabla_W L\,A^\top A$. Its progress $\text{lr}\cdot s^2\,\lVert\nabla_W L\,A^\top\rVert_F^2$
#   grows like $s^2 r$: $s = \alpha/\sqrt{r}$ cancels that.

# %% tags=["solution"]
# ✏️ For each, "alpha/r", "alpha/sqrt(r)" or "none": which scaling keeps it steadiest as r grows?
### BEGIN SOLUTION
adam_progress = "alpha/r"          # Adam: progress ~ s * r
adam_step_size = "alpha/sqrt(r)"   # Adam: ||ΔW_1|| ~ s * sqrt(r)
gd_progress = "alpha/sqrt(r)"      # plain gradient descent: progress ~ s**2 * r
### END SOLUTION

# %% [markdown]
# The measurement, from the closed forms above (the main notebook checks them against real
# Adam and gradient-descent steps): a 32 × 64 layer, ranks 1 to 64, and for each quantity the
# spread max/min over the ranks.

# %%
rng = np.random.default_rng(11)
W_grad = rng.normal(size=(32, 64))                        # stands in for ∇_W L
scalings = {"alpha/r": lambda r: 8 / r, "alpha/sqrt(r)": lambda r: 8 / np.sqrt(r),
            "none": lambda r: 1.0}
values = {}
for r in (1, 2, 4, 8, 16, 32, 64):
    A = init_lora(64, 32, r, seed=1)[0]
    for name, scale in scalings.items():
        s, step_adam = scale(r), -0.005 * np.sign(W_grad @ A.T) @ A   # ΔW_1 / s, Adam
        values[name, r] = (-s * np.sum(W_grad * step_adam), s * np.linalg.norm(step_adam),
                           0.5 * s**2 * np.linalg.norm(W_grad @ A.T) ** 2)

# %%
def steadiest(column: int) -> str:
    """The scaling whose values in `column` vary least (max/min) over the ranks."""
    spreads = {name: max(v[column] for (n, _), v in values.items() if n == name)
               / min(v[column] for (n, _), v in values.items() if n == name)
               for name in scalings}
    return min(spreads, key=spreads.get)


observed = {q: steadiest(i) for i, q in enumerate(("adam_progress", "adam_step_size",
                                                   "gd_progress"))}
_ = checks.check_scaling_choices(adam_progress, adam_step_size, gd_progress, observed=observed)

# %% [markdown]
# **A typical wrong answer** carries the Adam result over to plain gradient descent:

# %%
_ = checks.check_scaling_choices(adam_progress, adam_step_size, "alpha/r", observed=observed)

# %% [markdown]
# That's all four. Back to the main notebook for the experiments, or on to notebook
# 03 (`03_lora_layer.ipynb`), where the same layer is built in PyTorch.
