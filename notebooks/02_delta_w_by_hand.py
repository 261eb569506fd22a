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
# # 02 · ΔW = B·A, by hand
#
# Fine-tuning a pretrained model means nudging its weight matrices towards a new task. *Full*
# fine-tuning learns a new value for every single weight. **LoRA** — *Low-Rank Adaptation*
# (Hu et al., 2021) — freezes the pretrained weights and learns only a small **correction**
# ΔW for some of them, built from two thin matrices:
#
# $$W_0 \;\longrightarrow\; W_0 + \Delta W, \qquad \Delta W = \frac{\alpha}{r}\,B A .$$
#
# $r$ is the **rank** (the width of $B$ and the height of $A$) and $\alpha/r$ a fixed scale:
# $\alpha$ is a constant you choose once. The title's shorthand ΔW = B·A leaves the scale out;
# §7.3 shows why the division by $r$ matters.
#
# Notebook 01 showed that a low-rank matrix can stand in for a full one at a fraction of the
# storage. This notebook turns that idea into a training method, using nothing but NumPy and
# pencil-and-paper maths. Every formula is derived, coded, and checked by an `assert`.
#
# ## Learning objectives
#
# By the end of this notebook you will be able to
#
# 1. give the shapes of $W_0$, $A$, $B$ and $\Delta W$, and count LoRA's trainable
#    parameters — including those of real models from the LoRA paper;
# 2. compute a LoRA layer's output $h = W_0x + \frac{\alpha}{r}BAx$, in the column form of the
#    maths and in the row form of the code;
# 3. derive the gradients of the loss with respect to $A$ and $B$ by hand, and confirm them
#    with finite differences;
# 4. explain, with experiments, why LoRA starts from $B = 0$ and a random $A$;
# 5. train $A$ and $B$ with plain gradient descent, and compare the result with the best
#    rank-$r$ approximation from notebook 01;
# 6. merge the adapter into $W_0$, so that inference costs nothing extra;
# 7. spot three mistakes that are common in popular write-ups, and show why each one fails.
#
# ## Exercises
#
# Four short exercises sit right after the ideas they practise, each marked ✏️:
#
# 1. count the parameters of the adapters of a whole model (§1),
# 2. write the forward pass in row form (§2),
# 3. write the batch gradients of $A$ and $B$ (§3),
# 4. merge an adapter into the frozen weight (§6).
#
# Each asks for a short function; the cell after it checks your answer and, if something is
# off, gives a hint that names the likely mistake. Until you have written your answer, the check
# says "not yet" — that is expected. Worked solutions are in
# `solutions/02_delta_w_by_hand_solutions.ipynb`.
#
# Run the cells from top to bottom. Only NumPy is used here; PyTorch arrives in a later
# notebook (03, coming).

# %%
# %matplotlib inline
import numpy as np
from IPython.display import display

from lora_lab import checks, plots
from lora_lab.lowrank import (
    low_rank_approx,
    matrix_rank,
    singular_values,
    storage_cost,
    truncation_error,
)

# %%
# LoRA in NumPy, as derived in this notebook (and tested in the package)
from lora_lab.numpy_lora import (
    delta_weight,
    init_lora,
    lora_backward,
    lora_forward,
    merge_weights,
    mse_loss,
    numerical_gradient,
    train_lora,
)


# %%
def fmt(values: np.ndarray, digits: int = 3) -> str:
    """Format a few numbers for printing, e.g. "[0.120, -1.500]".

    Why: printed arrays should be short, rounded and identical on every machine.
    """
    return "[" + ", ".join(f"{v:.{digits}f}" for v in np.ravel(values)) + "]"


def relative_error(M: np.ndarray, reference: np.ndarray) -> float:
    """||M - reference||_F / ||reference||_F for two arrays of the same shape.

    Why: "how close?" needs one number that does not depend on the overall scale.
    """
    return float(np.linalg.norm(M - reference) / np.linalg.norm(reference))


# %% [markdown]
# ## 1 · The shapes of ΔW = B·A
#
# A linear layer with `in` inputs and `out` outputs holds a weight matrix $W_0$ of shape
# (out, in) and computes $h = W_0x$. Fine-tuning replaces $W_0$ by $W_0 + \Delta W$. LoRA only
# allows updates of the form
#
# $$\Delta W = \frac{\alpha}{r}\,B A,\qquad
# B \in \mathbb{R}^{\text{out}\times r},\quad A \in \mathbb{R}^{r\times \text{in}} .$$
#
# * $r$, the **rank**, is small — typically 1 to 64. It is the width of a bottleneck that the
#   update has to squeeze through.
# * $\alpha$ (alpha) is a constant chosen once and never trained; §7.3 explains the factor
#   $\alpha/r$.
# * Only $A$ and $B$ are trained. $W_0$ is **frozen**: it never changes.
#
# Every column of $BA$ is a combination of the $r$ columns of $B$, so
# $\operatorname{rank}(\Delta W) \le r$, however large the layer is. Let's check this on a
# small layer.

# %%
d_out, d_in, r, alpha = 6, 10, 2, 4.0
rng = np.random.default_rng(0)
A = rng.normal(size=(r, d_in))
B = rng.normal(size=(d_out, r))
delta = delta_weight(A, B, alpha)                   # (alpha / r) * B @ A

np.testing.assert_allclose(delta, (alpha / r) * B @ A)
assert delta.shape == (d_out, d_in) and matrix_rank(delta) == r
print(f"B {B.shape} @ A {A.shape}  ->  ΔW {delta.shape} of rank {matrix_rank(delta)}")

# %% [markdown]
# A full update would need `out × in` numbers. LoRA stores $B$ and $A$ instead:
# $\text{out}\cdot r + r\cdot\text{in} = r\,(\text{out}+\text{in})$ numbers — the storage
# cost of a rank-$r$ factorisation from notebook 01.

# %%
full = d_out * d_in                       # entries of a full ΔW
lora = storage_cost(d_out, d_in, r)       # entries of B plus entries of A
assert lora == B.size + A.size == r * (d_out + d_in)
print(f"full ΔW: {full} numbers   LoRA at r = {r}: {lora} numbers ({lora / full:.0%})")

# %% [markdown]
# On a 6 × 10 toy layer the saving is modest. It grows with the layer, because the full count
# grows like $d^2$ and LoRA's like $2rd$:

# %%
for d in (768, 4096, 12288):              # widths of real transformer layers
    share = storage_cost(d, d, 8) / d**2
    print(f"{d:>6} × {d:<6} layer, r = 8: {storage_cost(d, d, 8):>7,} of {d * d:>11,} "
          f"numbers ({share:.3%})")
    assert share < 2.1e-2


# %% [markdown]
# ### 1.1 Real models, counted rather than copied
#
# The LoRA paper adapts two matrices in every transformer layer: the attention's **query** and
# **value** projections $W_q$ and $W_v$. In the models it studies both are square,
# $d_\text{model}\times d_\text{model}$, so
#
# $$\#\text{trainable} = \text{layers}\times 2\times r\,(d_\text{model}+d_\text{model}).$$
#
# Let's compute the paper's reported counts from the architectures, and assert that they
# round to the published numbers.

# %%
def lora_params_for_model(n_layers: int, d_model: int, r: int, n_adapted: int = 2) -> int:
    """Trainable LoRA numbers when n_adapted square (d_model, d_model) weights per layer
    get a rank-r adapter each.

    Why: a model's adapter size follows from four integers -- no need to trust a table.
    """
    return n_layers * n_adapted * storage_cost(d_model, d_model, r)


# name: (layers, d_model, r on W_q and W_v, trainable parameters the paper reports, in millions)
paper = {
    "RoBERTa-base": (12, 768, 8, 0.3),
    "RoBERTa-large": (24, 1024, 8, 0.8),
    "GPT-3 175B, r = 1": (96, 12288, 1, 4.7),
    "GPT-3 175B, r = 8": (96, 12288, 8, 37.7),
}

# %%
for name, (n_layers, d_model, r_paper, reported) in paper.items():
    count = lora_params_for_model(n_layers, d_model, r_paper)
    print(f"{name:<18} {n_layers:>2} layers × 2 × {r_paper} × ({d_model:>5} + {d_model:>5}) "
          f"= {count:>10,} ≈ {count / 1e6:>4.1f}M   (paper: {reported:>4}M)")
    assert round(count / 1e6, 1) == reported
assert lora_params_for_model(12, 768, 8) == 12 * 2 * 8 * (768 + 768) == 294_912


# %% [markdown]
# How big are the models themselves? A transformer layer of width $d$ holds four $d\times d$
# attention matrices (query, key, value, output) and an MLP with a $d\times 4d$ and a
# $4d\times d$ matrix: $12d^2$ weights, plus $13d$ biases and normalisation parameters. Add the
# token and position embeddings and we land within about 1 % of the published sizes (we leave
# out a few small pieces, such as RoBERTa's pooler).

# %%
def transformer_params(n_layers: int, d_model: int, vocab: int, n_positions: int) -> int:
    """Approximate weight count of a BERT/GPT-style transformer with a 4x-wide MLP.

    Per layer: 12 d^2 matrix entries + 13 d biases/LayerNorm; plus (vocab + positions) x d
    embeddings. Why: to compare the adapter with the whole model, computed, not quoted.
    """
    per_layer = 12 * d_model**2 + 13 * d_model
    return n_layers * per_layer + (vocab + n_positions) * d_model


full_models = {"RoBERTa-base": (transformer_params(12, 768, 50_265, 514), 125e6),
               "GPT-3 175B": (transformer_params(96, 12288, 50_257, 2048), 175e9)}
for name, (count, published) in full_models.items():
    print(f"{name:<13} ≈ {count:>15,} parameters   (published: {published:,.0f})")
    assert abs(count / published - 1) < 0.015

# %%
pairs = [("RoBERTa-base", "RoBERTa-base"), ("GPT-3 175B", "GPT-3 175B, r = 1"),
         ("GPT-3 175B", "GPT-3 175B, r = 8")]
for model, config in pairs:
    n_layers, d_model, r_paper, _ = paper[config]
    share = lora_params_for_model(n_layers, d_model, r_paper) / full_models[model][0]
    print(f"{config:<18} trains {share:.4%} of the model (1 number in {1 / share:>6,.0f})")
    assert share < 2.5e-3 and (model == "RoBERTa-base" or share < 2.2e-4)


# %% [markdown]
# The adapters are tiny next to the models: under a quarter of a percent for RoBERTa-base, and
# for GPT-3 about 0.003 % at $r = 1$ and 0.02 % at $r = 8$ (one number in 37,000 and in 4,600).
# Whether such a small update is *enough* is an empirical question; later notebooks (04 and 05,
# coming) look at it. Here we learn how it works.
#
# ### ✏️ Exercise 1 — count the adapters of a model
#
# `lora_params_for_model` assumed square weights. Real models also adapt non-square ones — an
# MLP's (4d × d) and (d × 4d) matrices, say. Write `lora_param_count(shapes, r)`: the total number
# of trainable numbers when every weight in `shapes`, a list of (out_features, in_features)
# pairs, gets a rank-`r` adapter. For example, all six matrices of one layer of width 768 are
# `[(768, 768)] * 4 + [(3072, 768), (768, 3072)]`.

# %%
def lora_param_count(shapes: list[tuple[int, int]], r: int) -> int:
    """Trainable numbers when each weight in shapes, a list of (out_features, in_features)
    pairs, gets a rank-r LoRA adapter."""
    # ✏️ your code here: for each weight, count the entries of its B and its A; add them up
    raise NotImplementedError("exercise 1: write lora_param_count")


# %%
_ = checks.check_param_count(lora_param_count)

# %% [markdown]
# ## 2 · The forward pass
#
# In the maths, an input is a column vector $x$ and a LoRA layer computes
#
# $$h = W_0x + \frac{\alpha}{r}\,B\,(A x).$$
#
# Read it from right to left: $A$ squeezes the input ($\text{in}$ numbers) down to
# $u = Ax$ ($r$ numbers); $B$ expands $u$ back to $\text{out}$ numbers; the result, scaled by
# $s = \alpha/r$, is added to what the frozen layer computes anyway.
#
# The brackets matter in practice: $B(Ax)$ costs $r\cdot\text{in} + \text{out}\cdot r$
# multiply-adds per input, far fewer than the $\text{out}\cdot\text{in}$ of multiplying by a
# full $\Delta W$. So during training LoRA never forms $\Delta W$ at all.
#
# Let's compute one output by hand. Here $B$ is random rather than zero, so that the LoRA branch
# visibly does something — §4 is about the proper starting values.

# %%
rng = np.random.default_rng(1)                         # each cell seeds its own draws
W0 = rng.normal(size=(d_out, d_in)) / np.sqrt(d_in)   # stands in for a pretrained weight
x_col = rng.normal(size=d_in)                          # one input, as a column vector
s = alpha / r

u = A @ x_col                                          # (r,)   the bottleneck
h_col = W0 @ x_col + s * (B @ u)                       # (out,)
np.testing.assert_allclose(h_col, (W0 + delta) @ x_col)  # the same as forming ΔW first
print(f"x: {x_col.size} numbers -> u: {u.size} numbers -> h: {h_col.size} numbers")
print(f"h = {fmt(h_col)}")

# %% [markdown]
# ### From columns to rows
#
# Deep-learning code (PyTorch, PEFT, loralib and `lora_lab`) stacks a **batch** of $N$ inputs
# as the **rows** of a matrix $X$ of shape (N, in). Transposing $h = Wx$ gives
# $h^\top = x^\top W^\top$: a row vector times the transposed weight. Doing that for every row at once,
#
# $$H = X W_0^\top + \frac{\alpha}{r}\,(X A^\top)\,B^\top, \qquad H \in \mathbb{R}^{N\times\text{out}}.$$
#
# The weights keep their shapes — $W_0$ is still (out, in), $A$ is (r, in), $B$ is (out, r);
# only the side they act from changes, which is why each appears transposed. In NumPy:
# `x @ W0.T + s * (x @ A.T) @ B.T`. This is exactly what `lora_lab.numpy_lora.lora_forward`
# computes. Let's confirm that each row of its output is our column formula.
#
# (**PEFT** is Hugging Face's library of parameter-efficient fine-tuning methods, LoRA among
# them; **loralib** is the reference implementation released with the LoRA paper.)

# %%
rng = np.random.default_rng(2)
X = np.vstack([x_col, rng.normal(size=(4, d_in))])     # a batch of N = 5 inputs, one per row
H = lora_forward(X, W0, A, B, alpha)                   # (N, out)
print(f"X {X.shape} -> H {H.shape}")

for n in range(X.shape[0]):                            # row n of H = column formula for x_n
    np.testing.assert_allclose(H[n], W0 @ X[n] + s * B @ (A @ X[n]))
np.testing.assert_allclose(H[0], h_col)
np.testing.assert_allclose(H, X @ (W0 + delta).T)     # the same as (W0 + ΔW) x, too


# %% [markdown]
# ### ✏️ Exercise 2 — the forward pass in row form
#
# Write `my_lora_forward(x, W0, A, B, alpha)` for a batch of rows `x` (N, in), returning
# `h` (N, out). Use neither `lora_forward` nor `delta_weight`: go through the bottleneck
# `x @ A.T`. (Where does $r$ come from? It is the number of rows of `A`.)

# %%
def my_lora_forward(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray,
                    alpha: float) -> np.ndarray:
    """LoRA layer output for a batch of rows: x (N, in), W0 (out, in), A (r, in),
    B (out, r) -> h (N, out)."""
    # ✏️ your code here: one line, without lora_forward and without forming ΔW
    raise NotImplementedError("exercise 2: write my_lora_forward")


# %%
_ = checks.check_lora_forward(my_lora_forward)

# %% [markdown]
# ## 3 · Gradients of A and B, by hand
#
# To train $A$ and $B$ we need the gradient of the loss $L$ with respect to each of them. We
# derive it for one input first, then for a batch.
#
# **One input.** Let $g = \partial L/\partial h \in \mathbb{R}^{\text{out}}$ be the gradient of
# the loss with respect to the layer's output, the **upstream gradient**: whatever comes after
# the layer, backpropagation delivers it from above. Name the bottleneck $u = Ax$ and write
# $s = \alpha/r$. Entry by entry,
#
# $$u_k = \sum_j A_{kj}\,x_j, \qquad h_i = \sum_j (W_0)_{ij}\,x_j + s\sum_k B_{ik}\,u_k .$$
#
# *Gradient of $B$.* $B_{ik}$ appears only in $h_i$, multiplied by $s\,u_k$. So
# $\partial L/\partial B_{ik} = g_i\, s\, u_k$ — for all $i, k$ at once, an outer product:
#
# $$\frac{\partial L}{\partial B} = s\; g\, u^\top \qquad (\text{out}\times r).$$
#
# *Gradient of $u$.* $u_k$ feeds every $h_i$ with weight $s B_{ik}$, so
# $\partial L/\partial u_k = \sum_i g_i\, s B_{ik}$:
#
# $$\frac{\partial L}{\partial u} = s\,B^\top g \qquad (r).$$
#
# *Gradient of $A$.* $A_{kj}$ appears only in $u_k$, multiplied by $x_j$, so
# $\partial L/\partial A_{kj} = (\partial L/\partial u_k)\, x_j$:
#
# $$\frac{\partial L}{\partial A} = s\,B^\top g\; x^\top \qquad (r\times\text{in}).$$
#
# Notice two things now; they matter in §4. The gradient of $B$ contains $A$ (through
# $u = Ax$), and the gradient of $A$ contains $B$. And $W_0$ needs no gradient at all: it is
# frozen. (Its gradient would be $g\,x^\top$ — a full out × in matrix, exactly what LoRA avoids.)
#
# **A batch of rows.** For $N$ inputs the loss is a sum over the examples, $L = \sum_n
# \ell(h_n)$, so the gradients add up too. Stack the per-example $g_n^\top$ as the rows of
# $G = \partial L/\partial H$ (N × out) and the $u_n^\top$ as the rows of $U = XA^\top$ (N × r).
# A sum of outer products is a matrix product, $\sum_n g_n u_n^\top = G^\top U$, so
#
# $$\frac{\partial L}{\partial B} = s\,G^\top U = s\,G^\top X A^\top, \qquad
# \frac{\partial L}{\partial A} = s\,(G B)^\top X .$$
#
# A quick test for transposition slips: **a gradient always has the shape of its parameter** —
# (out, r) for $B$, (r, in) for $A$.
#
# *Sum or mean?* Training usually averages: the mean squared error over all $N\cdot\text{out}$
# entries, $L = \operatorname{mean}\big((H - Y)^2\big)$, which is a sum with every term divided
# by $N\cdot\text{out}$. That constant lives **inside $G$**: `mse_loss` returns the loss and
# $G = 2(H - Y)/(N\cdot\text{out})$. The formulas above stay sums, with no further $1/N$.

# %% [markdown]
# Now the formulas in code, for the single input `x_col` of §2 with a made-up target $y$ and
# the plain squared error $L = \lVert h - y\rVert^2$ (one input, no averaging), so
# $g = 2(h - y)$. We check them against **finite differences**: nudge one entry of $A$ by
# $\pm\varepsilon$, watch the loss, and take $\big(L(A + \varepsilon E) - L(A - \varepsilon E)\big)/2\varepsilon$ — no
# calculus involved. `numerical_gradient` does that for every entry.

# %%
y_col = np.random.default_rng(3).normal(size=d_out)  # a made-up target for our one input


def loss_one(A_: np.ndarray, B_: np.ndarray) -> float:
    """Squared error of the single input x_col for factors A_ (r, in) and B_ (out, r).

    Why: a scalar function of A and B that finite differences can differentiate.
    """
    h = W0 @ x_col + s * B_ @ (A_ @ x_col)
    return float(np.sum((h - y_col) ** 2))


g = 2 * (h_col - y_col)                              # dL/dh of the squared error
B_grad_hand = s * np.outer(g, u)                     # s g u^T      (out, r)
A_grad_hand = s * np.outer(B.T @ g, x_col)           # s B^T g x^T  (r, in)

# %%
A_grad_num = numerical_gradient(lambda A_: loss_one(A_, B), A)
B_grad_num = numerical_gradient(lambda B_: loss_one(A, B_), B)
np.testing.assert_allclose(A_grad_hand, A_grad_num, rtol=1e-6, atol=1e-6)
np.testing.assert_allclose(B_grad_hand, B_grad_num, rtol=1e-6, atol=1e-6)
print(f"both hand-derived gradients agree with finite differences; "
      f"grad A {A_grad_hand.shape}, grad B {B_grad_hand.shape}")

# %% [markdown]
# For a batch, the gradient is the sum of the per-example gradients. Let's add them up one
# example at a time with our column formulas — using the rows of $G$ from `mse_loss`, which
# already carry the $1/(N\cdot\text{out})$ — and compare with the package's `lora_backward`,
# which uses the matrix form $s\,(GB)^\top X$ and $s\,G^\top U$, and with finite differences
# of the batch loss (the mean).

# %%
Y_batch = np.random.default_rng(4).normal(size=(len(X), d_out))  # made-up batch targets
loss, G = mse_loss(lora_forward(X, W0, A, B, alpha), Y_batch)  # G = dL/dH, (N, out)
A_grad_sum = sum(s * np.outer(B.T @ G[n], X[n]) for n in range(len(X)))
B_grad_sum = sum(s * np.outer(G[n], A @ X[n]) for n in range(len(X)))

grads = lora_backward(X, W0, A, B, alpha, G)                # the package, matrix form
np.testing.assert_allclose(grads.A, A_grad_sum)
np.testing.assert_allclose(grads.B, B_grad_sum)


# %%
def batch_loss(A_: np.ndarray, B_: np.ndarray) -> float:
    """Mean squared error of the batch X for factors A_ (r, in), B_ (out, r).

    Why: the scalar whose finite differences check lora_backward.
    """
    return mse_loss(lora_forward(X, W0, A_, B_, alpha), Y_batch)[0]


np.testing.assert_allclose(grads.A, numerical_gradient(lambda A_: batch_loss(A_, B), A),
                           atol=1e-7)
np.testing.assert_allclose(grads.B, numerical_gradient(lambda B_: batch_loss(A, B_), B),
                           atol=1e-7)
print("per-example sums, lora_backward and finite differences all agree")


# %% [markdown]
# ### ✏️ Exercise 3 — the batch gradients
#
# Write `my_lora_grads(x, W0, A, B, alpha, grad_h)` returning the pair `(grad_A, grad_B)` for a
# batch of rows, using the matrix form — no loop over examples. `grad_h` is $G$, shape (N, out);
# it already holds the loss's $1/(N\cdot\text{out})$, so do not average again. `W0` is in the
# signature only for symmetry with the forward pass: neither gradient needs it.

# %%
def my_lora_grads(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float,
                  grad_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dA, dL/dB) with shapes (r, in) and (out, r), given grad_h = dL/dh (N, out)
    for a batch of rows x (N, in). W0 is not needed: it is here for symmetry."""
    # ✏️ your code here: the batch formulas of §3, no loop over examples
    raise NotImplementedError("exercise 3: write my_lora_grads")


# %%
_ = checks.check_lora_grads(my_lora_grads)


# %% [markdown]
# ## 4 · Where to start: B = 0 and A random
#
# At step 0 the adapted model should *be* the pretrained model — everything pretraining
# learned is what we build on. That needs $BA = 0$, and the simplest way to get it is to start one factor at zero.
# Which one? The gradients of §3 give the answer:
#
# * $\partial L/\partial B = s\,G^\top X A^\top$ is zero when $A = 0$;
# * $\partial L/\partial A = s\,(GB)^\top X$ is zero when $B = 0$.
#
# For linear layers, LoRA starts from **B = 0 and a random A**: the paper draws $A$ from a
# Gaussian, while PEFT, loralib and this course's `init_lora` use PyTorch's default
# (Kaiming-uniform) initialisation. (For *embedding* layers, PEFT and loralib do the reverse:
# $A = 0$ and a normal $B$ — one factor is zero either way.) With $B = 0$, $\Delta W = 0$; $A$
# gets no gradient at step 0, but $B$ does. $B$ moves first, and from step 1 on $A$ gets
# gradients too. Let's test this, and the two tempting alternatives, on a small task.
#
# ### The task used from here on
#
# A "pretrained" layer $W_0$ (12 × 16; in code `W_pre`, so that §1–3's toy layer keeps its
# names) meets a new task whose ideal weight is $W_0 + \Delta W_\text{true}$, where
# $\Delta W_\text{true}$ has rank 4 — precisely the situation LoRA bets on. We do not get to see
# $\Delta W_\text{true}$, only $N = 256$ input/output pairs. The inputs are **whitened**:
# $X^\top X / N = I$, meaning every input direction is equally represented and any two input directions are
# orthogonal across the data set. §5 shows why that matters and what changes without it.
#
# To build them, take the QR decomposition $Z = QR$ of a random $N\times 16$ matrix: $Q$ has
# orthonormal columns, $Q^\top Q = I$, so $X = \sqrt{N}\,Q$ has $X^\top X = N I$. (Flipping the
# signs of $Q$'s columns to make $R$'s diagonal positive makes $Q$ unique, so the result does
# not depend on the linear-algebra library's sign convention.)

# %%
def orthonormal_columns(Z: np.ndarray) -> np.ndarray:
    """Q of the QR decomposition Z = QR (Z (n, k), n >= k), signs fixed so diag(R) > 0.

    Why: Q^T Q = I, and with the signs fixed the result is the same on every machine.
    """
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.diag(R))


n_out, n_in, N = 12, 16, 256
rng_task = np.random.default_rng(42)
W_pre = rng_task.normal(size=(n_out, n_in)) / np.sqrt(n_in)     # frozen "pretrained" weight
X_task = np.sqrt(N) * orthonormal_columns(rng_task.normal(size=(N, n_in)))  # whitened rows
np.testing.assert_allclose(X_task.T @ X_task / N, np.eye(n_in), atol=1e-12)


# %%
def random_update(spectrum: list[float], shape: tuple[int, int], seed: int) -> np.ndarray:
    """A matrix of the given shape with the given singular values, random singular vectors.

    Why: a hidden ΔW whose rank and strength we control exactly.
    """
    g = np.random.default_rng(seed)
    U, V = (orthonormal_columns(g.normal(size=(n, len(spectrum)))) for n in shape)
    return (U * spectrum) @ V.T


delta_true = random_update([1.0, 0.8, 0.6, 0.4], (n_out, n_in), seed=7)
Y_task = X_task @ (W_pre + delta_true).T                      # the new task's outputs
H_pre = X_task @ W_pre.T                                      # what the pretrained layer says
loss_pre = mse_loss(H_pre, Y_task)[0]
assert matrix_rank(delta_true) == 4
print(f"loss of the untouched pretrained layer on the new task: {loss_pre:.4f}")


# %% [markdown]
# Here is the whole training loop, with nothing hidden: forward, loss, backward, step. Plain
# gradient descent, full batch.

# %%
def train_by_hand(A: np.ndarray, B: np.ndarray, X: np.ndarray, Y: np.ndarray, W0: np.ndarray,
                  alpha: float, lr: float, steps: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Gradient descent on A (r, in) and B (out, r) for inputs X (N, in), targets Y (N, out).

    Returns the final (A, B) and the loss before each step; W0 (out, in) stays frozen.
    Why: these four lines are all there is to training a LoRA adapter.
    """
    losses = []
    for _ in range(steps):
        H = lora_forward(X, W0, A, B, alpha)              # forward
        loss, G = mse_loss(H, Y)                          # loss and dL/dH
        grads = lora_backward(X, W0, A, B, alpha, G)      # backward: the formulas of §3
        A, B = A - lr * grads.A, B - lr * grads.B         # step (W0 is never touched)
        losses.append(loss)
    return A, B, losses


# %% [markdown]
# Three ways to start. LoRA's start and "both random" share the same random $A$; "both zero"
# sets $A = 0$ as well as $B = 0$. For "both random", $B$ gets the uniform values that an
# ordinary linear layer with $r$ inputs would get by default.

# %%
r_task, alpha_task, lr = 4, 8.0, 1.5
A_rand, B_zero = init_lora(n_in, n_out, r_task, seed=1)        # LoRA's start
B_rand = np.random.default_rng(2).uniform(-1, 1, size=(n_out, r_task)) / np.sqrt(r_task)
starts = {"B = 0, A random (LoRA)": (A_rand, B_zero),
          "both zero": (np.zeros_like(A_rand), np.zeros_like(B_zero)),
          "both random": (A_rand, B_rand)}

step0 = {}
for name, (A0, B0) in starts.items():
    H0 = lora_forward(X_task, W_pre, A0, B0, alpha_task)
    loss0, G0 = mse_loss(H0, Y_task)
    g0 = lora_backward(X_task, W_pre, A0, B0, alpha_task, G0)
    step0[name] = (np.abs(H0 - H_pre).max(), np.abs(g0.A).max(), np.abs(g0.B).max(), loss0)
    print(f"{name:<23} step 0: max|h - h_pretrained| = {step0[name][0]:<5.3g} "
          f"max|grad A| = {step0[name][1]:<5.3g}  max|grad B| = {step0[name][2]:.3g}")

# %%
ours, zeros, rand = (step0[name] for name in starts)
assert ours[0] == 0.0 and ours[1] == 0.0 and ours[2] > 0        # exact start; only B moves
assert zeros[0] == 0.0 and zeros[1] == 0.0 and zeros[2] == 0.0  # no gradient at all
assert rand[0] > 2 and rand[3] > 2 * loss_pre                   # pretrained model disturbed
print(f"step-0 loss: pretrained {loss_pre:.3f}, LoRA start {ours[3]:.3f}, "
      f"both zero {zeros[3]:.3f}, both random {rand[3]:.3f}")

# %% [markdown]
# Why is `lr = 1.5` — large by deep-learning standards — safe here? Plain gradient descent is
# stable as long as the learning rate stays below $2/c$, where $c$ is the loss's curvature
# along the direction of the step. With whitened inputs the loss is
# $\lVert\Delta W - \Delta W_\text{true}\rVert_F^2/\text{out}$ (derived in §5.2), and its
# largest curvature along $B$ is $c = \frac{2}{\text{out}}\,s^2\,\lambda_\max(AA^\top)$. At the start
# that allows steps up to about 5 — and indeed `lr = 5` blows up, which `train_lora` reports
# as a `FloatingPointError`:

# %%
s_task = alpha_task / r_task
curvature = 2 / n_out * s_task**2 * np.linalg.eigvalsh(A_rand @ A_rand.T).max()
print(f"largest stable learning rate along B at the start: 2 / c = {2 / curvature:.2f}")
try:
    train_lora(X_task, Y_task, W_pre, r=r_task, alpha=alpha_task, lr=5.0, steps=150,
               init=(A_rand, B_zero))
except FloatingPointError as err:
    print(f"lr = 5: {err}")
assert 1.5 < 2 / curvature < 5

# %% [markdown]
# Now train from each start for 150 steps.

# %%
runs = {name: train_by_hand(A0, B0, X_task, Y_task, W_pre, alpha_task, lr, steps=150)
        for name, (A0, B0) in starts.items()}
curves = {name: run[2] for name, run in runs.items()}
fig = plots.loss_curves_figure({"training from three starting points": curves})
display(fig)

# %%
A_end, B_end, losses = runs["both zero"]
assert len(set(losses)) == 1 and not A_end.any() and not B_end.any()  # flat loss, never moved
assert curves["B = 0, A random (LoRA)"][-1] < 1e-8 * loss_pre           # learns the task
assert curves["both random"][0] > 2 * loss_pre                          # starts off worse
for name, c in curves.items():
    print(f"{name:<23} loss at step 0: {c[0]:.4f}   after 150 steps: "
          f"{'below 1e-8' if c[-1] < 1e-8 else f'{c[-1]:.4f}'}")

# %% [markdown]
# What the experiment shows:
#
# * **B = 0, A random** keeps the pretrained outputs *exactly* at step 0 (not approximately:
#   $BA$ is exactly zero), and learns the task. At step 0 only $B$ has a gradient; $A$ starts
#   moving one step later.
# * **Both zero** never learns. Both gradients are exactly zero, so gradient descent has
#   nowhere to go: the loss stays flat forever. The point $A = B = 0$ is not a minimum — it is a
#   *saddle point*, and its gradient vanishes by structure, not by accident: each factor's
#   gradient contains the other factor, and both are zero.
# * **Both random** learns too, in this forgiving toy problem (a single linear layer with a
#   perfectly learnable target). But it starts from a different model
#   than the pretrained one: at step 0 its outputs are off by as much as 3, and its loss is almost
#   three times that of the untouched layer. In a deep network this random change passes through
#   every later layer, so fine-tuning starts from a damaged model, and whatever the adapter does
#   not learn to undo stays damaged. The point of LoRA's start is not speed: it is that step 0
#   *is* the pretrained model.

# %% [markdown]
# ## 5 · Training by hand: recovering a hidden update
#
# ### 5.1 When the rank is right
#
# The LoRA start at rank $r = 4$ — the rank of $\Delta W_\text{true}$ — reached a loss of
# essentially zero above. Did it find $\Delta W_\text{true}$ itself? Let's train a little longer
# and compare the learned update $\frac{\alpha}{r}BA$ with the hidden one.

# %%
A_fit, B_fit, losses_fit = train_by_hand(A_rand, B_zero, X_task, Y_task, W_pre, alpha_task,
                                         lr, steps=300)
delta_fit = delta_weight(A_fit, B_fit, alpha_task)
assert relative_error(delta_fit, delta_true) < 1e-7
print(f"learned ΔW vs ΔW_true: relative error below 1e-7: "
      f"{relative_error(delta_fit, delta_true) < 1e-7}")

# %% [markdown]
# The package's `train_lora` runs the same loop (same start, same steps), so it must land on the
# same factors:

# %%
result = train_lora(X_task, Y_task, W_pre, r=r_task, alpha=alpha_task, lr=lr, steps=300,
                    seed=1)
np.testing.assert_allclose(result.losses, losses_fit, rtol=1e-9, atol=1e-30)
np.testing.assert_allclose(result.A, A_fit, atol=1e-12)
np.testing.assert_allclose(result.B, B_fit, atol=1e-12)
print("train_lora and our loop agree step by step")

# %% [markdown]
# The *product* is what the data pins down, not the factors: for any invertible $r\times r$
# matrix $M$, the pair $(BM^{-1},\, MA)$ gives the same $\Delta W$. So do not expect a learned $A$
# to look like anything in particular — compare updates, not factors.

# %%
M = np.random.default_rng(3).normal(size=(r_task, r_task))    # almost surely invertible
np.testing.assert_allclose(delta_weight(M @ A_fit, B_fit @ np.linalg.inv(M), alpha_task),
                           delta_fit, atol=1e-10)

# %% [markdown]
# ### 5.2 When the update has a higher rank than r
#
# Real updates are rarely *exactly* low-rank. Suppose $\Delta W_\text{true}$ has rank 8 while the
# adapter has rank 4. What is the best it can do, and does gradient descent get there?
#
# With whitened inputs ($X^\top X = N I$) the training loss is a distance between matrices:
#
# $$L(\Delta W) = \frac{1}{N\cdot\text{out}}\big\|X(\Delta W - \Delta W_\text{true})^\top\big\|_F^2
# = \frac{1}{N\cdot\text{out}}\operatorname{tr}\!\big(D\,X^\top X\,D^\top\big)
# = \frac{1}{\text{out}}\big\|\Delta W - \Delta W_\text{true}\big\|_F^2,
# \qquad D = \Delta W - \Delta W_\text{true}.$$
#
# So minimising the loss over rank-4 updates *is* the problem of notebook 01, and by the
# Eckart–Young theorem the answer is the truncated SVD, `low_rank_approx(ΔW_true, 4)`. The
# lowest reachable loss is $\big(\sigma_5^2 + \dots + \sigma_8^2\big)/\text{out}$.
#
# Whether gradient descent *finds* that optimum is a separate question: the loss is not convex
# in $(A, B)$. With whitened inputs, though, the problem is plain low-rank approximation of
# $\Delta W_\text{true}$, and for that every local minimum of the factorised loss is a global one
# (Srebro and Jaakkola, 2003; the study of such two-layer linear problems goes back to Baldi and
# Hornik, 1989). Saddle points exist — "both zero" of §4 is one. That gradient descent moves past
# them from LoRA's start is what the experiments below *show* for this problem; it is an
# observation, not a theorem we rely on. First, the identity above, on a random matrix:

# %%
D_any = np.random.default_rng(4).normal(size=(n_out, n_in))
loss_any = mse_loss(X_task @ (W_pre + D_any).T, X_task @ W_pre.T)[0]
np.testing.assert_allclose(loss_any, np.linalg.norm(D_any) ** 2 / n_out)

# %%
delta_rank8 = random_update([1.0, 0.8, 0.6, 0.4, 0.15, 0.1, 0.07, 0.05], (n_out, n_in), seed=8)
Y_rank8 = X_task @ (W_pre + delta_rank8).T
best = low_rank_approx(delta_rank8, r_task)                         # Eckart–Young optimum
floor = truncation_error(singular_values(delta_rank8), r_task) ** 2 / n_out  # lowest loss

A8, B8, losses8 = train_by_hand(A_rand, B_zero, X_task, Y_rank8, W_pre, alpha_task, lr,
                                steps=300)
delta_learned = delta_weight(A8, B8, alpha_task)
print(f"final loss {losses8[-1]:.6f}   Eckart–Young floor {floor:.6f}")
print(f"learned ΔW vs truncated SVD: relative distance below 1e-6: "
      f"{relative_error(delta_learned, best) < 1e-6};  vs ΔW_true: "
      f"{relative_error(delta_learned, delta_rank8):.3f}")

# %% [markdown]
# Each panel below has its own loss axis, so that the approach to the floor is visible:

# %%
np.testing.assert_allclose(losses8[-1], floor, rtol=1e-8)
assert relative_error(delta_learned, best) < 1e-6
np.testing.assert_allclose(singular_values(delta_learned)[:r_task],
                           singular_values(delta_rank8)[:r_task])
fig = plots.loss_curves_figure(
    {"rank-4 target, r = 4": {"training loss": losses_fit},
     "rank-8 target, r = 4": {"training loss": losses8}},
    floors={"rank-8 target, r = 4": (floor, "best rank-4 loss (Eckart–Young)")},
    sharey=False)
display(fig)

# %% [markdown]
# With a rank-4 target, the loss falls towards zero (it stops only at rounding level). With a
# rank-8 target, it levels off at the dashed line, the Eckart–Young floor, and the learned
# update *is* the truncated SVD. Its singular values are the four largest of the target; the
# four weakest directions are simply out of reach for a rank-4 adapter:

# %%
fig = plots.singular_values_figure(
    {"ΔW_true (rank 8)": singular_values(delta_rank8)[:8],
     "learned (α/r)·B·A": singular_values(delta_learned)[:r_task],
     "truncated SVD (rank 4)": singular_values(best)[:r_task]},
    title="singular values of the updates")
display(fig)
print(f"learned: {fmt(singular_values(delta_learned)[:r_task])}   "
      f"target: {fmt(singular_values(delta_rank8)[:8])}")

# %% [markdown]
# ### 5.3 Careful: the SVD is the optimum only for whitened inputs
#
# The step "loss = $\|\Delta W - \Delta W_\text{true}\|_F^2/\text{out}$" used $X^\top X = NI$.
# Real activations are not whitened: some input directions are stronger than others. With
# $\Sigma = X^\top X/N$ the loss becomes
# $\frac{1}{\text{out}}\|(\Delta W - \Delta W_\text{true})\,\Sigma^{1/2}\|_F^2$: errors along
# strong input directions cost more. Here $\Sigma^{1/2}$ is the **matrix square root**, the
# symmetric matrix whose square is $\Sigma$. `np.linalg.eigh` (for symmetric matrices) gives
# $\Sigma = V\operatorname{diag}(\lambda)V^\top$; then $\Sigma^{1/2} =
# V\operatorname{diag}(\sqrt{\lambda})V^\top$ and $\Sigma^{-1/2} =
# V\operatorname{diag}(1/\sqrt{\lambda})V^\top$.
#
# The best rank-$r$ update is then the truncated SVD *in that metric*,
# $\;\texttt{low\_rank\_approx}(\Delta W_\text{true}\Sigma^{1/2}, r)\,\Sigma^{-1/2}$, not the
# plain truncated SVD of $\Delta W_\text{true}$. Gradient descent minimises the loss it is given,
# so it finds the former:

# %%
rng_an = np.random.default_rng(9)
X_an = rng_an.normal(size=(N, n_in)) * np.linspace(1.5, 0.5, n_in)  # unequal input strengths
Y_an = X_an @ (W_pre + delta_rank8).T
evals, evecs = np.linalg.eigh(X_an.T @ X_an / N)                    # Σ = V diag(evals) V^T
S_sqrt, S_inv_sqrt = (evecs * evals**0.5) @ evecs.T, (evecs * evals**-0.5) @ evecs.T
np.testing.assert_allclose(S_sqrt @ S_sqrt, X_an.T @ X_an / N, atol=1e-12)
best_weighted = low_rank_approx(delta_rank8 @ S_sqrt, r_task) @ S_inv_sqrt

A_an, B_an, losses_an = train_by_hand(A_rand, B_zero, X_an, Y_an, W_pre, alpha_task, lr,
                                      steps=600)
delta_an = delta_weight(A_an, B_an, alpha_task)

# %%
loss_svd = mse_loss(X_an @ (W_pre + best).T, Y_an)[0]      # plug in the plain truncated SVD
loss_weighted = mse_loss(X_an @ (W_pre + best_weighted).T, Y_an)[0]
print(f"loss: learned {losses_an[-1]:.5f}   weighted optimum {loss_weighted:.5f}   "
      f"plain truncated SVD {loss_svd:.5f}")
print(f"learned ΔW vs weighted optimum: relative distance below 1e-3: "
      f"{relative_error(delta_an, best_weighted) < 1e-3};  vs plain truncated SVD: "
      f"{relative_error(delta_an, best):.3f}")
assert relative_error(delta_an, best_weighted) < 1e-3      # gradient descent finds this one
assert relative_error(delta_an, best) > 0.01               # ... and not the plain SVD
assert losses_an[-1] < loss_svd

# %% [markdown]
# So the precise statement, for the setting of this section — **one linear layer, noise-free
# targets that a linear map produces, full-batch gradient descent run to convergence** — is:
# *with whitened inputs*, LoRA trained on the squared error converges to the best rank-$r$
# approximation of the true update, the truncated SVD of notebook 01. With other inputs it
# converges to the best rank-$r$ update *as measured by the inputs it sees*, which weights input
# directions by how strongly they occur. In a real network there is no $\Delta W_\text{true}$
# for each layer to compare with — layers interact, data are noisy, and training stops early —
# so take this as intuition for what a low-rank adapter can and cannot capture, not as a
# guarantee.

# %% [markdown]
# ## 6 · Merging: zero extra inference cost
#
# After training, the adapter can be folded into the weight once and for all:
#
# $$W' = W_0 + \frac{\alpha}{r}BA, \qquad W'x = W_0x + \frac{\alpha}{r}BAx .$$
#
# $W'$ has exactly the shape of $W_0$, so the merged layer costs exactly what the pretrained
# layer cost: no extra matrices, no extra multiply-adds, no extra latency. This is one of LoRA's
# big practical advantages over adapter methods that insert new layers into the network —
# such as the *adapters* of Houlsby et al. (2019), small bottleneck layers placed after the
# attention and MLP blocks. They cannot be folded into an existing weight, so they stay in the
# network at inference and add latency.

# %%
W_merged = merge_weights(W_pre, A_fit, B_fit, alpha_task)   # W0 + (alpha/r) B A, (out, in)
np.testing.assert_allclose(X_task @ W_merged.T,
                           lora_forward(X_task, W_pre, A_fit, B_fit, alpha_task), atol=1e-12)
assert W_merged.shape == W_pre.shape
print(f"merged weight {W_merged.shape}: same outputs as frozen layer + adapter")


# %%
def macs_per_input(out_f: int, in_f: int, r: int = 0) -> int:
    """Multiply-adds for one input through an (out_f, in_f) layer, plus an unmerged
    rank-r adapter when r > 0 (A x costs r*in_f, B u costs out_f*r).

    Why: inference cost as one number (the scale s can be folded into B).
    """
    return out_f * in_f + r * in_f + out_f * r


for name, (o, i, rr) in {"our toy layer": (n_out, n_in, r_task),
                         "RoBERTa-base W_q, r = 8": (768, 768, 8),
                         "GPT-3 W_q, r = 8": (12288, 12288, 8)}.items():
    unmerged, merged = macs_per_input(o, i, rr), macs_per_input(o, i)
    print(f"{name:<24} unmerged {unmerged:>11,}  merged {merged:>11,}  "
          f"extra {unmerged / merged - 1:6.2%} -> 0%")
    assert merged == o * i and unmerged > merged

# %% [markdown]
# Unmerging subtracts the same update again, so one frozen base can take turns serving several
# tasks. In floating point the round trip is exact only up to rounding — one more reason to
# keep the original $W_0$ around (a later notebook, 03, coming, returns to this).

# %%
W_back = W_merged - delta_weight(A_fit, B_fit, alpha_task)
np.testing.assert_allclose(W_back, W_pre, atol=1e-12)
print(f"largest |W_back - W0| is below 1e-12: {np.abs(W_back - W_pre).max() < 1e-12}")


# %% [markdown]
# ### ✏️ Exercise 4 — merge an adapter
#
# Write `my_merge(W0, A, B, alpha)` returning the merged weight $W'$ (out, in), without
# `merge_weights` or `delta_weight`. Do not change `W0` itself — return a new array.

# %%
def my_merge(W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float) -> np.ndarray:
    """Merged weight W' (out, in) from W0 (out, in), A (r, in), B (out, r). W0 must not
    change."""
    # ✏️ your code here
    raise NotImplementedError("exercise 4: write my_merge")


# %%
_ = checks.check_merge(my_merge)

# %% [markdown]
# ## 7 · Three mistakes from popular write-ups
#
# Many blog posts and tutorials describe LoRA slightly wrong. Each of the following mistakes
# sounds harmless; each one breaks LoRA in a way a small experiment can show.
#
# ### 7.1 Mistake: training W as well
#
# Some write-ups let the optimiser update $W_0$ *together with* $A$ and $B$ ("W is still a
# parameter, after all"). Then the adapter is decoration: this is full fine-tuning. Every
# weight has a gradient again, the optimiser keeps its state for every weight, and the
# pretrained weight is overwritten. First, what it costs for GPT-3 with the paper's
# $r = 1$ adapters on $W_q$ and $W_v$, trained with **Adam** (Kingma and Ba, 2015), the optimiser
# LoRA is usually trained with: a gradient-descent variant that divides each entry's step by a
# running estimate of that entry's gradient size. It keeps two running averages per trainable
# number; with the gradient, that is 12 bytes per trainable number in 32-bit floats.

# %%
n_layers, d_model, r_gpt, _ = paper["GPT-3 175B, r = 1"]
lora_only = lora_params_for_model(n_layers, d_model, r_gpt)
everything = full_models["GPT-3 175B"][0] + lora_only       # every weight trainable again
for name, count in {"LoRA (W frozen)": lora_only, "LoRA + training W": everything}.items():
    print(f"{name:<18} trainable {count:>15,}   gradient + Adam state: "
          f"{12 * count / 1e9:>9,.2f} GB")
assert everything / lora_only > 30_000

# %% [markdown]
# Now the experiment, on our task from §4: the same loop, but with $W$ trainable too. Its
# gradient is the full matrix $G^\top X$ (out × in).

# %%
W, A_m, B_m = W_pre.copy(), A_rand, B_zero
for _ in range(150):
    loss_m, G_m = mse_loss(lora_forward(X_task, W, A_m, B_m, alpha_task), Y_task)
    grads_m = lora_backward(X_task, W, A_m, B_m, alpha_task, G_m)
    W = W - lr * (G_m.T @ X_task)                            # the mistake: W moves too
    A_m, B_m = A_m - lr * grads_m.A, B_m - lr * grads_m.B

assert loss_m < 1e-12
print(f"final loss below 1e-12: {loss_m < 1e-12};  "
      f"trainable numbers: {W.size + A_m.size + B_m.size} instead of {A_m.size + B_m.size}")
print(f"W drifted from W0 by {relative_error(W, W_pre):.0%} of its size")

# %%
removed = np.abs(X_task @ W.T - H_pre).max()                # switch the adapter off
share_adapter = np.linalg.norm(delta_weight(A_m, B_m, alpha_task)) / np.linalg.norm(delta_true)
print(f"with the adapter switched off, outputs still differ from the pretrained model by "
      f"up to {removed:.3f}")
print(f"the adapter's update is only {share_adapter:.0%} the size of the update the task needed")
assert relative_error(W, W_pre) > 0.1 and removed > 0.1 and share_adapter < 0.5

# %% [markdown]
# The task is learned — full fine-tuning can do that — but LoRA's promises are gone. The
# pretrained weight has changed, so switching the adapter off no longer gives back the
# pretrained model; most of the update now lives in $W$ rather than in the adapter; and the
# adapter file alone cannot reproduce the fine-tuned model. Only $A$ and $B$ may be trained.
#
# ### 7.2 Mistake: adding the low-rank product to the output (logits) instead of a weight
#
# Another recurring picture adds the product $BA$ to a model's *outputs* — its logits — rather
# than to a weight matrix. Whatever the details, a correction applied after the layer only sees
# what the layer already computed, $h_0 = W_0x$. It can add a constant, or it can remix the
# entries of $h_0$; it cannot react to anything in $x$ that $W_0$ throws away.
#
# Consider a classifier head: 16 input features, 4 logits. $W_0$ (4 × 16) has a 12-dimensional
# null space — input directions it ignores completely. Suppose the new task needs one of them
# (say, a feature that was irrelevant during pretraining):
# $\Delta W_\text{true} = u\,v^\top$ with $W_0 v = 0$. We give the output-side fixes every
# advantage: the best constant and the best full (not even low-rank) linear remix
# $h_0 \mapsto h_0 + Mh_0$ with $M$ (4 × 4) — in row form `H0 + H0 @ M.T` — both solved exactly
# by least squares. LoRA on the weight gets rank 1 and plain gradient descent.
#
# The inputs are whitened as in §4, and also **centred**: every feature has mean 0 over the
# batch. Then the change the task asks for has mean 0 over the batch too, so the best constant
# can only remove what is genuinely constant (here nothing), instead of soaking up a small
# offset that a finite random sample happens to have.

# %%
n_cls = 4
rng_head = np.random.default_rng(5)
W_head = rng_head.normal(size=(n_cls, n_in)) / np.sqrt(n_in)
Z = rng_head.normal(size=(N, n_in))
X_head = np.sqrt(N) * orthonormal_columns(Z - Z.mean(axis=0))  # centred, whitened inputs
v = np.linalg.svd(W_head)[2][-1]                                 # a direction W_head ignores
u_dir = rng_head.normal(size=n_cls)
delta_head = np.outer(u_dir / np.linalg.norm(u_dir), v)          # rank-1 update, norm 1
assert np.abs(W_head @ v).max() < 1e-12


# %%
def output_side_losses(X: np.ndarray, W: np.ndarray,
                       change: np.ndarray) -> tuple[float, float, float]:
    """Losses of (untouched W, best constant on its outputs, best remix h0 -> h0 + M h0) on
    the task W + change, for inputs X (N, in); in row form the remix is H0 + H0 @ M.T.

    Why: the output-side fixes at their very best, solved exactly.
    """
    H0, Y_t = X @ W.T, X @ (W + change).T
    residual = Y_t - H0
    constant = residual.mean(axis=0)                              # best additive offset
    M = np.linalg.lstsq(H0, residual, rcond=None)[0].T           # best remix, (n_cls, n_cls)
    remixed = H0 + H0 @ M.T
    return mse_loss(H0, Y_t)[0], mse_loss(H0 + constant, Y_t)[0], mse_loss(remixed, Y_t)[0]


# %%
untouched, const_loss, remix_loss = output_side_losses(X_head, W_head, delta_head)
lora_head = train_lora(X_head, X_head @ (W_head + delta_head).T, W_head, r=1, alpha=2.0,
                       lr=0.5, steps=150, seed=0)
print(f"untouched head {untouched:.4f}   best constant on logits {const_loss:.4f}   "
      f"best remix of logits {remix_loss:.4f}   "
      f"LoRA r = 1 on the weight {'below 1e-12' if lora_head.losses[-1] < 1e-12 else 'above'}")
np.testing.assert_allclose([const_loss, remix_loss], untouched, rtol=1e-10)  # no help at all
assert lora_head.losses[-1] < 1e-12 * untouched

# %% [markdown]
# Neither output-side fix recovers *any* of the change — not approximately, exactly none —
# while a rank-1 update of the weight learns it completely. The constructed case makes the point
# crisp; for a random direction $v$ it is less extreme but still clear. Part of $v$ then lies in
# the 4 directions $W_0$ does see, and only that part is reachable from the logits:

# %%
v_random = np.random.default_rng(6).normal(size=n_in)
delta_generic = np.outer(u_dir / np.linalg.norm(u_dir), v_random / np.linalg.norm(v_random))
untouched_g, _, remix_g = output_side_losses(X_head, W_head, delta_generic)
lora_g = train_lora(X_head, X_head @ (W_head + delta_generic).T, W_head, r=1, alpha=2.0,
                    lr=0.5, steps=150, seed=0)
print(f"random direction: best remix of logits removes {1 - remix_g / untouched_g:.0%} of the "
      f"loss; LoRA on the weight removes {1 - lora_g.losses[-1] / untouched_g:.2%}")
assert remix_g > 0.5 * untouched_g and lora_g.losses[-1] < 1e-10 * untouched_g


# %% [markdown]
# ### 7.3 Mistake: leaving out α/r
#
# Some implementations compute $W_0x + BAx$ and drop the factor $\alpha/r$ ("it's just a
# constant"). For one fixed $r$ a constant factor $c$ in front of $BA$ is indeed harmless, but
# it is not simply "absorbed into the learning rate". With plain gradient descent it is
# equivalent to multiplying the learning rate by $c$ *and* rescaling $A$'s initialisation by
# $\sqrt{c}$. With Adam, which rescales every gradient entry anyway, and because $B$ starts at
# zero, it is equivalent to multiplying **$B$'s learning rate alone** by $c$ — the paper's remark
# that with Adam, tuning $\alpha$ is roughly tuning the learning rate "if we scale the
# initialization appropriately". Either way, a different $c$ means re-tuning. And $c$ does change when you
# **change $r$** — the first thing everyone does.
#
# Here is what goes wrong, for Adam (LoRA's usual optimiser, §7.1). In its first step Adam
# moves every entry by exactly the learning rate (up to its tiny $\varepsilon$), against the
# sign of that entry's gradient. At the LoRA start ($B_0 = 0$), $A$ has no gradient and stays
# put (a zero gradient gives a zero Adam step), and $\partial L/\partial B
# = s\,\nabla_W L\,A^\top$ with $\nabla_W L = G^\top X$, the gradient with respect to the whole
# weight. So, entry by entry,
#
# $$B_1 = -\,\text{lr}\cdot\operatorname{sign}\big(\nabla_W L\,A^\top\big),\qquad
# \Delta W_1 = s\,B_1A .$$
#
# To first order a step $\Delta W_1$ lowers the loss by $-\langle\nabla_W L, \Delta W_1\rangle$
# (the sum of the entrywise products): the step's **progress**. With the expression for $B_1$,
#
# $$-\langle\nabla_W L, \Delta W_1\rangle = s\cdot\text{lr}\cdot\textstyle\sum_{i,k}
# \big|(\nabla_W L\,A^\top)_{ik}\big|,$$
#
# a sum of $\text{out}\cdot r$ terms of similar size: proportional to $s\cdot r$. With
# $s = \alpha/r$ the $r$ cancels; with $s = 1$ the first step grows with $r$. Let's measure it on
# a wider layer (32 × 64), so that ranks up to 64 fit, with a target update of rank 8.

# %%
def adam_update(p: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, t: int,
                lr: float, b1: float = 0.9, b2: float = 0.999,
                eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam step for a parameter p of any shape; m, v are its running averages.

    Returns the new (p, m, v). Why: Adam moves each entry by about lr, whatever the
    gradient's size -- the reason LoRA divides by r.
    """
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), m, v


# %%
def adam_lora(X: np.ndarray, Y: np.ndarray, W0: np.ndarray, r: int, scale: float, lr: float,
              steps: int, seed: int = 1) -> tuple[list, np.ndarray]:
    """Adam on A (r, in), B (out, r) with ΔW = scale * B @ A, from LoRA's start; returns
    the loss before each step and ΔW after the first. Why: §7.3's experiment, with or
    without the 1/r."""
    A, B = init_lora(X.shape[1], Y.shape[1], r, seed)
    mA, vA, mB, vB = (np.zeros_like(A), np.zeros_like(A), np.zeros_like(B), np.zeros_like(B))
    losses, first_step = [], None
    for t in range(1, steps + 1):
        loss, G = mse_loss(lora_forward(X, W0, A, B, scale * r), Y)   # alpha/r = scale
        grads = lora_backward(X, W0, A, B, scale * r, G)
        A, mA, vA = adam_update(A, grads.A, mA, vA, t, lr)
        B, mB, vB = adam_update(B, grads.B, mB, vB, t, lr)
        losses.append(loss)
        first_step = scale * B @ A if t == 1 else first_step
    return losses, first_step


# %%
rng_w = np.random.default_rng(11)
W_wide = rng_w.normal(size=(32, 64)) / 8.0                   # a wider "pretrained" layer
X_wide = rng_w.normal(size=(N, 64))
U8, V8 = (orthonormal_columns(rng_w.normal(size=(n, 8))) for n in (32, 64))
Y_wide = X_wide @ (W_wide + (U8 * np.linspace(1.0, 0.5, 8)) @ V8.T).T  # rank-8 update
W_grad = mse_loss(X_wide @ W_wide.T, Y_wide)[1].T @ X_wide    # ∇_W L at the start, (32, 64)

alpha_w, lr_w, ranks = 8.0, 0.005, (1, 2, 4, 8, 16, 32, 64)
scales = {rr: {"with α/r": alpha_w / rr, "without": 1.0} for rr in ranks}
adam_runs = {(label, rr): adam_lora(X_wide, Y_wide, W_wide, rr, scale, lr=lr_w, steps=40)
             for rr in ranks for label, scale in scales[rr].items()}

# %%
progress = {key: -np.sum(W_grad * first) for key, (_, first) in adam_runs.items()}
for (label, rr), value in progress.items():                  # the formula above, checked
    A_start = init_lora(64, 32, rr, seed=1)[0]
    predicted = scales[rr][label] * lr_w * np.abs(W_grad @ A_start.T).sum()
    np.testing.assert_allclose(value, predicted, rtol=1e-4)


# %%
def spread(label: str, values: dict, over: tuple = ranks) -> float:
    """max / min of values[label, r] over the ranks r in `over`.

    Why: one number for "how much does this depend on r?".
    """
    picked = [values[label, rr] for rr in over]
    return max(picked) / min(picked)


# %%
print(" r   first-step progress (×1000): with α/r   without scaling")
for rr in ranks:
    print(f"{rr:>2}   {1e3 * progress['with α/r', rr]:>32.3g}   "
          f"{1e3 * progress['without', rr]:>15.3g}")
ratio_1, ratio_64 = (progress["without", 8] / progress["without", 1],
                     progress["without", 64] / progress["without", 8])
print(f"without scaling: {ratio_1:.1f} times smaller at r = 1 and {ratio_64:.1f} times larger "
      f"at r = 64 than at r = 8;  max/min over r: with α/r {spread('with α/r', progress):.1f}, "
      f"without {spread('without', progress):.0f}")
assert spread("with α/r", progress) < 2 and spread("without", progress) > 30
assert np.all(np.diff([progress["without", rr] for rr in ranks]) > 0)  # grows with every r
assert 4 < ratio_1 < 16 and 4 < ratio_64 < 16                          # roughly ×8, ×8

# %% [markdown]
# Every entry of the table is $s\cdot\text{lr}\cdot\sum|\nabla_W L\,A^\top|$ (checked above).
# Without the scaling the first step's progress grows roughly in proportion to $r$: the printed
# ratios between $r = 1$, $8$ and $64$ are of the order of the rank ratio, 8. With $\alpha/r$
# it stays within a factor of 2 (asserted) across the whole 64-fold range of ranks; what is
# left is the chance variation of a sum of only $\text{out}\cdot r$ terms. (At $r = 8 = \alpha$ the two coincide,
# as if $\alpha$ had been tuned there.) The training curves tell the same story:

# %%
panels = {label: {f"r = {rr}": adam_runs[label, rr][0] for rr in ranks}
          for label in ("with α/r", "without")}
fig = plots.loss_curves_figure(
    {"with α/r (α = 8)": panels["with α/r"], "without scaling (ΔW = B·A)": panels["without"]},
    suptitle="Adam, the same learning rate for every rank")
display(fig)

# %%
drop = {key: losses[0] - losses[5] for key, (losses, _) in adam_runs.items()}  # 5 steps
for over in (ranks, ranks[2:]):
    print(f"loss decrease in the first 5 steps, max/min over r = {over[0]}..{over[-1]}: "
          f"with α/r {spread('with α/r', drop, over):.1f}, "
          f"without {spread('without', drop, over):.1f}")
assert spread("with α/r", drop, ranks[2:]) < 1.3 and spread("without", drop, ranks[2:]) > 5
assert spread("without", drop) > 5 * spread("with α/r", drop)

# %% [markdown]
# With $\alpha/r$, the curves for $r = 4$ to $64$ lie on top of each other for the first five steps (asserted above). Later the larger ranks pull ahead — not because they can express more (the target
# has rank 8, which $r = 8$ already fits exactly) but because the optimisation is easier with
# more room to move. Without the scaling the curves fan out from the very first step: the
# learning rate you tuned at one rank becomes, in effect, a different learning rate at every
# other rank.
#
# Faster is not better here. The large-$r$ runs on the right are fast only because their steps
# are bigger than anything that was tuned — exactly as if the learning rate had been raised
# for them — and a bigger step is just as likely to overshoot on another problem. The point of
# $\alpha/r$ is that the step size you tuned stays the step size you get.
#
# The scaling does not make all ranks identical. Even with $\alpha/r$, $r = 1$ and $2$ are
# slower. Partly that is capacity — they cannot express a rank-8 change — and partly it is the
# direction of the step: $\alpha/r$ fixes the *downhill* part of the first step, but not how
# much of the step goes elsewhere. The step's size, $\lVert\Delta W_1\rVert_F =
# s\cdot\text{lr}\cdot\lVert\operatorname{sign}(\nabla_W L\,A^\top)\,A\rVert_F$, shrinks only
# roughly like $\alpha/\sqrt{r}$: the product adds up $r$ random-looking rank-1 pieces, whose
# sizes add like $\sqrt{r}$, not like $r$. So at small $r$ most of the step is not aligned with
# $-\nabla_W L$:

# %%
print(" r   ||ΔW_1||_F   cosine with -∇W L      (with α/r)")
first_norm, alignment = {}, {}
for rr in ranks:
    first_norm[rr] = np.linalg.norm(adam_runs["with α/r", rr][1])
    alignment[rr] = progress["with α/r", rr] / (first_norm[rr] * np.linalg.norm(W_grad))
    print(f"{rr:>2}   {first_norm[rr]:>10.3f}   {alignment[rr]:>17.2f}")
assert np.all(np.diff(list(first_norm.values())) < 0)         # the step shrinks with r ...
assert np.all(np.diff(list(alignment.values())) > 0)          # ... and points more downhill
assert 4 < first_norm[1] / first_norm[64] < 8                 # roughly like 1/sqrt(r)

# %% [markdown]
# A later notebook (03, coming) compares $\alpha/r$ with **rsLoRA** (rank-stabilised LoRA,
# Kalajdzievski 2023), which scales by $\alpha/\sqrt{r}$ instead and so treats large ranks
# differently.

# %% [markdown]
# ## Summary
#
# * **Shapes.** $\Delta W = \frac{\alpha}{r}BA$ with $B$ (out × r) and $A$ (r × in), so
#   $\operatorname{rank}\Delta W \le r$ and LoRA trains $r(\text{out} + \text{in})$ numbers per
#   adapted weight. For the LoRA paper's models that is 0.3M for RoBERTa-base and 4.7M for GPT-3
#   175B at $r = 1$ — computed from the architecture, not copied.
# * **Forward.** $h = W_0x + \frac{\alpha}{r}B(Ax)$; with a batch of rows,
#   `x @ W0.T + s * (x @ A.T) @ B.T`. $\Delta W$ is never formed during training.
# * **Gradients.** $\partial L/\partial B = s\,gu^\top$ and $\partial L/\partial A =
#   s\,B^\top g\,x^\top$ (batch: $s\,G^\top U$ and $s\,(GB)^\top X$, with a mean loss's
#   $1/(N\cdot\text{out})$ inside $G$), confirmed by finite differences. $W_0$ gets none.
# * **Start.** $B = 0$ with a random $A$ keeps the pretrained model exactly and still learns;
#   both zero is a saddle point that never moves; both random damages the pretrained model
#   before training starts.
# * **Training.** For one linear layer with whitened inputs, plain gradient descent recovers a
#   hidden rank-$r$ update; when the true update has a higher rank, it converges to the best
#   rank-$r$ approximation — the truncated SVD of notebook 01 — and to its input-weighted
#   version when the inputs are not whitened.
# * **Merging.** $W' = W_0 + \frac{\alpha}{r}BA$ gives identical outputs at exactly the cost of
#   the pretrained layer.
# * **Mistakes.** Training $W$ too is full fine-tuning in disguise; a correction on the outputs
#   cannot see what $W_0$ ignores; without $\alpha/r$, the progress of Adam's first step grows in proportion to $r$, so a learning rate tuned at one rank is wrong at every other.
#
# **Next:** a later notebook (03, coming) builds the same layer in PyTorch as `LoRALinear`,
# checks it against the NumPy version of this notebook, and lets autograd take over the
# gradients you derived here.
