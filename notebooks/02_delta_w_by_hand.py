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
# §7.3 looks at what the division by $r$ does.
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
# 3. derive the gradients of the loss with respect to $A$, $B$ and the input $x$ by hand, and
#    confirm them with finite differences;
# 4. explain, with experiments, why LoRA starts from $B = 0$ and a random $A$;
# 5. train $A$ and $B$ with plain gradient descent, and compare the result with the best
#    rank-$r$ approximation from notebook 01;
# 6. merge the adapter into $W_0$, so that inference costs nothing extra, and say how exact
#    unmerging is;
# 7. spot three mistakes that recur in popular write-ups, and show why each one fails.
#
# ## How long, and what to skip
#
# About **2 to 2½ hours** for the main path, exercises 1–3 included, if you run every cell and
# read what it prints; allow about 45 minutes more for the two sections marked **⭐ optional**
# (§4.1, how large the learning rate may be, and §7.3 with exercise 4, what the factor
# $\alpha/r$ does). They go deeper than the rest, and nothing else in this notebook depends on
# them: skip them on a first reading.
#
# ## Exercises
#
# Four exercises sit right after the ideas they practise, each marked ✏️. They ask you to
# think first — derive, predict, choose — and only then check:
#
# 1. derive the gradient with respect to the layer's *input* $x$ (§3.1);
# 2. predict what happens at each of three starting points, before running them (§4);
# 3. predict how large the float32 merge-and-unmerge error is (§6);
# 4. ⭐ choose which scaling keeps which property of the first training step steady (§7.3).
#
# The cell after each exercise (or, for a prediction, after the experiment) checks your answer
# and, if something is off, gives a hint that names the likely mistake. Until you have written
# your answer, the check says "not yet" — that is expected. Worked solutions are in
# `solutions/02_delta_w_by_hand_solutions.ipynb`.
#
# Run the cells from top to bottom. Only NumPy is used here; PyTorch arrives in notebook
# 03 (`03_lora_layer.ipynb`).

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
# * $r$, the **rank**, is small next to the layer's size — the configurations from the LoRA
#   paper counted in §1.1 use $r$ = 1 to 8. It is the width of a bottleneck that the update has
#   to squeeze through.
# * $\alpha$ (alpha) is a constant chosen once and never trained; §7.3 looks at the factor
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
# The LoRA paper adapts matrices of the attention block: the **query**, **key**, **value**
# and **output** projections $W_q, W_k, W_v, W_o$. In the models it studies they are square,
# $d_\text{model}\times d_\text{model}$, so adapting $n$ of them in every layer at rank $r$ trains
#
# $$\#\text{trainable} = \text{layers}\times n\times r\,(d_\text{model}+d_\text{model}).$$
#
# A count alone does not pin down a configuration: $r = 8$ on $W_q$ and $W_v$ trains exactly as
# many numbers as $r = 4$ on all four. So each count below names its configuration and where
# the paper gives it: Table 9 (Appendix D.1) for RoBERTa; Table 15 (Appendix F.2) for GPT-3,
# whose Table 4 reports two budgets, 4.7M and 37.7M, each reached by two configurations.

# %%
def lora_params_for_model(n_layers: int, d_model: int, r: int, n_adapted: int = 2) -> int:
    """Trainable LoRA numbers when n_adapted square (d_model, d_model) weights per layer
    get a rank-r adapter each.

    Why: a model's adapter size follows from four integers -- no need to trust a table.
    """
    return n_layers * n_adapted * storage_cost(d_model, d_model, r)


# name: (layers, d_model, rank, adapted matrices per layer, reported (millions), source)
paper = {
    "RoBERTa-base, r = 8 on Wq, Wv": (12, 768, 8, 2, 0.3, "Tables 2, 9"),
    "RoBERTa-large, r = 8 on Wq, Wv": (24, 1024, 8, 2, 0.8, "Tables 2, 9"),
    "GPT-3, r = 1 on Wq, Wv": (96, 12288, 1, 2, 4.7, "Tables 4, 15"),
    "GPT-3, r = 2 on Wv": (96, 12288, 2, 1, 4.7, "Tables 4, 15"),
    "GPT-3, r = 8 on Wq, Wv": (96, 12288, 8, 2, 37.7, "Tables 4, 15"),
    "GPT-3, r = 4 on Wq, Wk, Wv, Wo": (96, 12288, 4, 4, 37.7, "Tables 4, 15"),
}

# %%
for name, (n_layers, d_model, r_paper, n_adapted, reported, source) in paper.items():
    count = lora_params_for_model(n_layers, d_model, r_paper, n_adapted)
    print(f"{name:<31} {n_layers:>2} × {n_adapted} × {r_paper} × {2 * d_model:>5} "
          f"= {count:>10,} ≈ {count / 1e6:>4.1f}M   (paper: {reported:>4}M, {source})")
    assert round(count / 1e6, 1) == reported
assert {config[2] for config in paper.values()} == {1, 2, 4, 8}     # the ranks of §1's claim
assert lora_params_for_model(12, 768, 8) == 12 * 2 * 8 * (768 + 768) == 294_912
r2_on_four = lora_params_for_model(96, 12288, 2, n_adapted=4)
print(f"GPT-3, r = 2 on Wq, Wk, Wv, Wo: {r2_on_four:,} ≈ {r2_on_four / 1e6:.1f}M")
assert round(r2_on_four / 1e6, 1) == 18.9


# %% [markdown]
# The last line settles a slip in the paper: Appendix D.4 lists $r_q = r_k = r_v = r_o = 2$
# as a 37.7M configuration, but that trains 18.9M numbers; Table 15 has it right, with $r = 4$
# on all four matrices for 37.7M (and $r = 2$ at 18.8M — the paper rounds 18.87M down there).
#
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
pairs = [("RoBERTa-base", "RoBERTa-base, r = 8 on Wq, Wv"),
         ("GPT-3 175B", "GPT-3, r = 1 on Wq, Wv"), ("GPT-3 175B", "GPT-3, r = 8 on Wq, Wv")]
for model, config in pairs:
    n_layers, d_model, r_paper, n_adapted, _, _ = paper[config]
    share = (lora_params_for_model(n_layers, d_model, r_paper, n_adapted)
             / full_models[model][0])
    print(f"{config:<30} trains {share:.4%} of the model (1 number in {1 / share:>6,.0f})")
    assert share < 2.5e-3 and (model == "RoBERTa-base" or share < 2.2e-4)


# %% [markdown]
# The adapters are tiny next to the models: under a quarter of a percent for RoBERTa-base, and
# for GPT-3 about 0.003 % at $r = 1$ and 0.02 % at $r = 8$ (one number in 37,000 and in 4,600).
# Whether such a small update is *enough* is an empirical question; notebooks 04 and 05
# look at it. Here we learn how it works.
#
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
# multiply-adds per input instead of the $\text{out}\cdot\text{in}$ of multiplying by a full
# $\Delta W$. For the toy layer below that is 32 against 60; for real layer sizes it is far fewer
# (the table of §1: under 2.1 % at $r = 8$). So during training LoRA never forms $\Delta W$ at
# all.
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
assert r * d_in + d_out * r == 32 < d_out * d_in == 60      # multiply-adds: B (A x) vs ΔW x
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
# Look at which factors appear in each of the two gradients: §4 puts that to use. And notice
# that neither contains $W_0$: because $W_0$ is frozen, LoRA never computes the **weight
# gradient** $\partial L/\partial W_0 = g\,x^\top$ — a full out × in matrix per layer — nor
# keeps optimiser state for it. (What the backward pass does with $W_0$ otherwise is the
# question of exercise 1.)
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
def batch_loss(A_: np.ndarray, B_: np.ndarray, X_: np.ndarray = X) -> float:
    """Mean squared error of the batch X_ (N, in) for factors A_ (r, in), B_ (out, r).

    Why: the scalar whose finite differences check lora_backward.
    """
    return mse_loss(lora_forward(X_, W0, A_, B_, alpha), Y_batch)[0]


np.testing.assert_allclose(grads.A, numerical_gradient(lambda A_: batch_loss(A_, B), A),
                           atol=1e-7)
np.testing.assert_allclose(grads.B, numerical_gradient(lambda B_: batch_loss(A, B_), B),
                           atol=1e-7)
print("per-example sums, lora_backward and finite differences all agree")


# %% [markdown]
# ### 3.1 The gradient that flows on: ∂L/∂x
#
# A LoRA layer is rarely the first layer of a network. To train adapters in *earlier* layers
# too, backpropagation must pass the gradient on to this layer's input: $\partial L/\partial x$,
# which becomes the upstream gradient $g$ of the layer before. It needs no new idea, just the
# chain rule once more.
#
# ### ✏️ Exercise 1 — derive ∂L/∂x
#
# Follow $x$ to $h$ in $h = W_0x + s\,B(Ax)$: along which paths does it get there? Derive
# $\partial L/\partial x$ for one input on paper (in terms of $g$, $W_0$, $A$, $B$ and $s$), then
# write it for a batch of rows: `my_grad_x(x, W0, A, B, alpha, grad_h)` returns an array of the
# shape of `x`, (N, in), where `grad_h` is $G$ (N, out). Write the shape under each factor.

# %% tags=["exercise"]
def my_grad_x(x: np.ndarray, W0: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float,
              grad_h: np.ndarray) -> np.ndarray:
    """dL/dx (N, in) for a batch of rows x (N, in), given grad_h = dL/dh (N, out)."""
    # ✏️ your code here: one term per path from x to h; write the shape under each factor
    raise NotImplementedError("exercise: write my_grad_x")


# %%
_ = checks.check_grad_x(my_grad_x)

# %% [markdown]
# `lora_backward` returns this gradient as `grads.x`. Finite differences of the batch loss
# with respect to the inputs confirm it:

# %%
np.testing.assert_allclose(grads.x, G @ W0 + s * (G @ B) @ A)
np.testing.assert_allclose(grads.x, numerical_gradient(lambda X_: batch_loss(A, B, X_), X),
                           atol=1e-7)
share_w0 = np.linalg.norm(G @ W0) / np.linalg.norm(grads.x)      # a ratio of norms
at_start = lora_backward(X, W0, A, np.zeros_like(B), alpha, G).x      # B = 0: LoRA's start
np.testing.assert_array_equal(at_start, G @ W0)
print(f"here (B random) ||G @ W0|| = {share_w0:.2f} × ||dL/dx||; "
      f"at LoRA's start (B = 0) dL/dx = G @ W0 exactly")
assert share_w0 > 0.05

# %% [markdown]
# The term $G\,W_0$ — in column form $W_0^\top g$ — is a product with the frozen weight, and at
# LoRA's start it is the *only* term. So
# "$W_0$ needs no gradient" is true only of its *weight* gradient: on its way to earlier layers
# the backward pass still multiplies by $W_0^\top$, exactly as in full fine-tuning. What LoRA
# saves is the out × in weight gradient $\partial L/\partial W_0$ and the optimiser state that
# would go with it (§7.1 counts what that is worth).


# %% [markdown]
# ## 4 · Where to start: B = 0 and A random
#
# At step 0 the adapted model should *be* the pretrained model — everything pretraining
# learned is what we build on. That needs $BA = 0$, and the simplest way to get it is to start
# one factor at zero. Which one? The gradients of §3 decide it — exercise 2 below asks you to
# work out how.
#
# For linear layers, LoRA starts from **B = 0 and a random A**: the paper draws $A$ from a
# Gaussian, while PEFT, loralib and this course's `init_lora` use PyTorch's default
# (Kaiming-uniform) initialisation. (For *embedding* layers, PEFT and loralib do the reverse:
# $A = 0$ and a normal $B$ — one factor is zero either way.) Let's test this start, and the two
# tempting alternatives, on a small task.
#
# ### The task used from here on
#
# A "pretrained" layer $W_0$ (12 × 16; in code `W_pre`, so that §1–3's toy layer keeps its
# names) meets a new task whose ideal weight is $W_0 + \Delta W_\text{true}$, where
# $\Delta W_\text{true}$ has rank 4 — precisely the situation LoRA bets on. We do not get to see
# $\Delta W_\text{true}$, only $N = 256$ input/output pairs. The inputs are **whitened**:
# $X^\top X / N = I$ (uncentred: we do not subtract the mean), meaning every input direction is
# equally represented and any two input directions are orthogonal across the data set. §5 shows
# why that matters and what changes without it.
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


# %% [markdown]
# Whitening turns the loss into a distance between matrices. If the layer uses $W_0 + D$ where
# the task needs $W_0 + \Delta W_\text{true}$, the mean squared error is
#
# $$\frac{1}{N\cdot\text{out}}\big\|X(D - \Delta W_\text{true})^\top\big\|_F^2
# = \frac{1}{N\cdot\text{out}}\operatorname{tr}\!\big(E\,X^\top X\,E^\top\big)
# = \frac{1}{\text{out}}\big\|D - \Delta W_\text{true}\big\|_F^2,
# \qquad E = D - \Delta W_\text{true},$$
#
# because $X^\top X = NI$. §4.1 and §5.2 build on this; here it is on a random matrix:

# %%
D_any = np.random.default_rng(4).normal(size=(n_out, n_in))
loss_any = mse_loss(X_task @ (W_pre + D_any).T, X_task @ W_pre.T)[0]
np.testing.assert_allclose(loss_any, np.linalg.norm(D_any) ** 2 / n_out)


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
# Three ways to start, named as in the code:
#
# * `"lora"` — LoRA's start: $B = 0$ and a random $A$;
# * `"zeros"` — both factors zero;
# * `"random"` — both factors random: the same $A$, and for $B$ the uniform values an ordinary
#   linear layer with $r$ inputs would get by default.
#
# ### ✏️ Exercise 2 — predict, then run
#
# Before running anything, predict from the gradient formulas of §3. For each statement, write
# the set of starts for which it holds (`set()` for none): at step 0, which starts give $A$ a
# non-zero gradient? Which give $B$ one? At which do the outputs already differ from the
# pretrained layer's? And which start never learns at all, however long it trains?

# %% tags=["exercise"]
# ✏️ For each statement, the set of starts for which it holds, from "lora" (B = 0, A random),
# "zeros" (both zero) and "random" (both random); write set() for none of them.
A_gets_gradient = ...  # ✏️ your answer
B_gets_gradient = ...  # ✏️ your answer
outputs_change_at_step_0 = ...  # ✏️ your answer
never_learns = ...  # ✏️ your answer

# %% [markdown]
# Now the experiment. First, step 0 only: the outputs and both gradients at each start.

# %%
r_task, alpha_task, lr = 4, 8.0, 1.5
A_rand, B_zero = init_lora(n_in, n_out, r_task, seed=1)        # LoRA's start
B_rand = np.random.default_rng(2).uniform(-1, 1, size=(n_out, r_task)) / np.sqrt(r_task)
starts = {"lora": (A_rand, B_zero), "zeros": (np.zeros_like(A_rand), np.zeros_like(B_zero)),
          "random": (A_rand, B_rand)}
labels = {"lora": "B = 0, A random (LoRA)", "zeros": "both zero", "random": "both random"}

step0 = {}
for name, (A0, B0) in starts.items():
    H0 = lora_forward(X_task, W_pre, A0, B0, alpha_task)
    loss0, G0 = mse_loss(H0, Y_task)
    g0 = lora_backward(X_task, W_pre, A0, B0, alpha_task, G0)
    step0[name] = (np.abs(H0 - H_pre).max(), np.abs(g0.A).max(), np.abs(g0.B).max(), loss0)
    print(f"{labels[name]:<23} step 0: max|h - h_pretrained| = {step0[name][0]:<5.3g} "
          f"max|grad A| = {step0[name][1]:<5.3g}  max|grad B| = {step0[name][2]:.3g}")

# %%
ours, zeros, rand = (step0[name] for name in starts)
assert ours[0] == 0.0 and ours[1] == 0.0 and ours[2] > 0        # exact start; only B moves
assert zeros[0] == 0.0 and zeros[1] == 0.0 and zeros[2] == 0.0  # no gradient at all
assert rand[0] > 2 and rand[1] > 0 and 2.5 < rand[3] / loss_pre < 3.5  # model disturbed
print(f"step-0 loss: pretrained {loss_pre:.3f}, LoRA start {ours[3]:.3f}, "
      f"both zero {zeros[3]:.3f}, both random {rand[3]:.3f}")

# %% [markdown]
# Then train from each start for 150 steps:

# %%
runs = {name: train_by_hand(A0, B0, X_task, Y_task, W_pre, alpha_task, lr, steps=150)
        for name, (A0, B0) in starts.items()}
curves = {labels[name]: run[2] for name, run in runs.items()}
fig = plots.loss_curves_figure({"training from three starting points": curves})
display(fig)

# %%
A_end, B_end, losses = runs["zeros"]
assert len(set(losses)) == 1 and not A_end.any() and not B_end.any()  # flat loss, never moved
assert runs["lora"][2][-1] < 1e-8 * loss_pre                          # learns the task
assert runs["random"][2][0] > 2 * loss_pre > 1e3 * runs["random"][2][-1]  # worse, then learns
for name, (_, _, c) in runs.items():
    print(f"{labels[name]:<23} loss at step 0: {c[0]:.4f}   after 150 steps: "
          f"{'below 1e-8' if c[-1] < 1e-8 else f'{c[-1]:.4f}'}")

# %% [markdown]
# Your predictions against what the experiment measured:

# %%
observed = {"A_gets_gradient": {n for n in starts if step0[n][1] > 0},
            "B_gets_gradient": {n for n in starts if step0[n][2] > 0},
            "outputs_change_at_step_0": {n for n in starts if step0[n][0] > 0},
            "never_learns": {n for n in starts if runs[n][2][-1] == runs[n][2][0]}}
_ = checks.check_init_predictions(A_gets_gradient, B_gets_gradient, outputs_change_at_step_0,
                                  never_learns, observed=observed)

# %% [markdown]
# What the experiment shows, read off the gradients of §3:
#
# * $\partial L/\partial B = s\,G^\top X A^\top$ contains $A$: it is zero wherever $A = 0$;
# * $\partial L/\partial A = s\,(GB)^\top X$ contains $B$: it is zero wherever $B = 0$.
#
# So:
#
# * **B = 0, A random** keeps the pretrained outputs *exactly* at step 0 (not approximately:
#   $BA$ is exactly zero), and learns the task. At step 0 only $B$ has a gradient; $A$ starts
#   moving one step later, once $B \neq 0$.
# * **Both zero** never learns. Both gradients are exactly zero, so gradient descent has
#   nowhere to go: the loss stays flat forever. The point $A = B = 0$ is not a minimum — it is a
#   *saddle point*, and its gradient vanishes by structure, not by accident: each factor's
#   gradient contains the other factor, and both are zero.
# * **Both random** learns too, in this forgiving toy problem (a single linear layer with a
#   perfectly learnable target). But it starts from a different model
#   than the pretrained one: at step 0 its outputs are off by as much as 3, and its loss is about
#   three times that of the untouched layer. In a deep network this random change would pass
#   through every later layer, so fine-tuning would start from a damaged model, and whatever the
#   adapter does not learn to undo would stay damaged. The point of LoRA's start is not speed:
#   it is that step 0 *is* the pretrained model.

# %% [markdown]
# ### 4.1 ⭐ Optional: how large may the learning rate be?
#
# We trained with `lr = 1.5`, large by deep-learning standards. How far could we go? For
# plain gradient descent on a **quadratic** loss the answer is classical: writing $\lambda_\max$
# for the largest eigenvalue of its Hessian (the matrix of second derivatives, the
# *curvature*), each step of size $\text{lr}$ multiplies the distance to the minimum along that
# eigenvector by $1 - \text{lr}\cdot\lambda_\max$. That factor stays inside $(-1, 1)$ only while
# $\text{lr} < 2/\lambda_\max$; beyond, every step overshoots further than the last.
#
# Our loss is not quadratic in $(A, B)$ — it contains the product $BA$ — but near a minimum it
# is close to one, with the Hessian at that minimum. So gradient descent can *settle* at a
# minimum only if $\text{lr} < 2/\lambda_\max$ there. Let's compute that Hessian over all
# $4\cdot16 + 12\cdot4 = 112$ parameters at the minimum that the 150 steps from LoRA's start
# reached above, one column at a time, by finite differences of the package's gradient:

# %%
def lora_hessian(A: np.ndarray, B: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Hessian (p, p), p = A.size + B.size, of the §4 task's loss over (A, B) flattened.

    Column j is the central difference of lora_backward's gradient along parameter j.
    Why: its largest eigenvalue bounds the learning rate near a minimum.
    """
    def gradient(theta: np.ndarray) -> np.ndarray:
        A_, B_ = theta[:A.size].reshape(A.shape), theta[A.size:].reshape(B.shape)
        G_ = mse_loss(lora_forward(X_task, W_pre, A_, B_, alpha_task), Y_task)[1]
        grads_ = lora_backward(X_task, W_pre, A_, B_, alpha_task, G_)
        return np.concatenate([grads_.A.ravel(), grads_.B.ravel()])

    theta, steps = np.concatenate([A.ravel(), B.ravel()]), eps * np.eye(A.size + B.size)
    H = np.column_stack([(gradient(theta + e) - gradient(theta - e)) / (2 * eps) for e in steps])
    return (H + H.T) / 2


# %%
def sharpness(A: np.ndarray, B: np.ndarray) -> float:
    """Largest Hessian eigenvalue of the §4 task's loss at (A, B). Why: 2 / it is the lr limit."""
    return float(np.linalg.eigvalsh(lora_hessian(A, B))[-1])


A_lora, B_lora = runs["lora"][:2]
lam = sharpness(A_lora, B_lora)
print(f"largest Hessian eigenvalue at the minimum reached: {lam:.3f}   2 / it = {2 / lam:.2f}")
assert 0.74 < lam < 0.76 and 2.6 < 2 / lam < 2.7

# %% [markdown]
# It is tempting to look at the start instead. With $A$ held fixed the loss is exactly
# quadratic in $B$: by the identity of §4 it is $\frac{1}{\text{out}}\lVert sBA -
# \Delta W_\text{true}\rVert_F^2$, whose largest curvature along $B$ is
# $c = \frac{2}{\text{out}}\,s^2\,\lambda_\max(AA^\top)$. At LoRA's start $2/c$ is almost 5.
# But that is the curvature along $B$ alone. The full Hessian at the start also couples $A$ and
# $B$ ($A$'s own block is zero there, because $B = 0$), and its largest eigenvalue is larger:
#
# $$\frac{2}{\lambda_\max(\text{full Hessian at the start})} \approx 3.37,$$
#
# lower than 4.9 but still above the 2.66 of the minimum. Which limit is right?

# %%
s_task = alpha_task / r_task
c_start = 2 / n_out * s_task**2 * np.linalg.eigvalsh(A_rand @ A_rand.T).max()
H_start, n_a = lora_hessian(A_rand, B_zero), A_rand.size           # the full Hessian, start
np.testing.assert_allclose(np.linalg.eigvalsh(H_start[n_a:, n_a:])[-1], c_start, rtol=1e-6)
assert not H_start[:n_a, :n_a].any()                               # A's block: zero (B = 0)
lam_start = np.linalg.eigvalsh(H_start)[-1]
print(f"at the start: along B alone 2 / c = {2 / c_start:.2f}; full Hessian: largest "
      f"eigenvalue {lam_start:.3f}, 2 / it = {2 / lam_start:.2f}")
assert 4.8 < 2 / c_start < 5 and 3.3 < 2 / lam_start < 3.4 and 2 / lam < 2 / lam_start

# %% [markdown]
# Let's try learning rates on both sides of all three limits, from LoRA's start each time:

# %%
sweep = {}                                 # lr -> losses, or the step at which it overflowed
for lr_try in (2.5, 2.8, 3.0, 3.5, 4.0):
    try:
        sweep[lr_try] = train_lora(X_task, Y_task, W_pre, r=r_task, alpha=alpha_task,
                                   lr=lr_try, steps=300, init=(A_rand, B_zero)).losses
        last = sweep[lr_try][-50:]
        verdict = ("converged: loss below 1e-12" if last[-1] < 1e-12 else
                   "stalled: loss above 1e-5 in all of the last 50 steps" if min(last) > 1e-5
                   else "neither")
    except FloatingPointError as err:
        sweep[lr_try] = int(str(err).split("step ")[1].split(":")[0])
        verdict = "diverged: the numbers overflowed"
    print(f"lr = {lr_try}: {verdict}")

# %%
assert 20 < sweep[4.0] < 40                                    # lr = 4 overflows
assert min(sweep[3.0][-50:]) > 1e-5 and min(sweep[3.5][-50:]) > 1e-5   # stall, below 3.37
assert sweep[2.5][-1] < 1e-20                                  # below 2 / lam: converges
assert sweep[2.8][-1] < 1e-12                                  # above 2 / lam, yet converges?
fit_28 = train_lora(X_task, Y_task, W_pre, r=r_task, alpha=alpha_task, lr=2.8, steps=300,
                    init=(A_rand, B_zero))
lam_28 = sharpness(fit_28.A, fit_28.B)
print(f"lr = 2.8 settled at a minimum whose largest eigenvalue is {lam_28:.2f} "
      f"(below 2 / lr = {2 / 2.8:.2f})")
assert lam_28 < 2 / 2.8 < lam

# %% [markdown]
# So, here, the limit comes from the curvature **at the minimum**, not at the start:
# `lr = 3.0`, below even the full Hessian's limit at the start (3.37), already fails to converge
# (it stalls, asserted), and `lr = 4` overflows within 40 steps; `lr = 2.5`, just below
# $2/\lambda_\max = 2.66$, converges.
#
# `lr = 2.8` converges too, although it is above 2.66 — to a *different* minimum, flatter than
# $2/2.8$. The minima are not one point but a whole family: every $(MA,\; BM^{-1})$ with an
# invertible $r\times r$ matrix $M$ gives the same $BA$ (§5.1 comes back to this), and the
# family's members differ in sharpness. Gradient descent with a large step cannot settle at the
# sharp ones and moves on until it finds one flat enough.
#
# How flat is the flattest? With whitened inputs the loss is exactly $\frac{1}{\text{out}}\lVert
# sBA - \Delta W_\text{true}\rVert_F^2$ (§5.2). Nudging the factors along
# $(B^\top u_1v_1^\top,\; u_1v_1^\top A^\top)$, where $u_1, v_1$ are the top singular vectors
# of $\Delta W_\text{true}$ and $\sigma_1$ its top singular value, gives a curvature of at least
# $\frac{4}{\text{out}}\,s\,\sigma_1$ at *every* minimum (a two-line bound:
# $\sigma_1 = s\,(B^\top u_1)^\top(Av_1)$ and $a^2 + b^2 \ge 2ab$). **Balanced** factors — $A$
# and $B$ with the same singular values $\sqrt{\sigma_i/s}$, built from the SVD
# $\Delta W_\text{true} = U\Sigma V^\top$ as $A = \sqrt{\Sigma/s}\,V^\top$ and
# $B = U\sqrt{\Sigma/s}$ — reach that bound:

# %%
U_t, S_t, Vt_t = np.linalg.svd(delta_true, full_matrices=False)
A_bal = np.sqrt(S_t[:r_task, None] / s_task) * Vt_t[:r_task]      # A = sqrt(Σ/s) V^T
B_bal = U_t[:, :r_task] * np.sqrt(S_t[:r_task] / s_task)         # B = U sqrt(Σ/s)
np.testing.assert_allclose(delta_weight(A_bal, B_bal, alpha_task), delta_true, atol=1e-12)
flattest = 4 / n_out * s_task * S_t[0]
lam_bal = sharpness(A_bal, B_bal)
print(f"balanced minimum: largest eigenvalue {lam_bal:.3f} = 4 s σ1 / out = {flattest:.3f}; "
      f"2 / it = {2 / lam_bal:.2f}")
np.testing.assert_allclose(lam_bal, flattest, rtol=1e-5)
np.testing.assert_allclose(2 / flattest, 3.0)                      # σ1 = 1, s = 2, out = 12
np.testing.assert_allclose(s_task * (B_lora.T @ U_t[:, 0]) @ (A_lora @ Vt_t[0]), S_t[0])
M_family = [np.random.default_rng(k).normal(size=(r_task, r_task)) for k in range(5)]
family = [sharpness(M @ A_bal, B_bal @ np.linalg.inv(M)) for M in M_family]  # same BA
assert min([lam, lam_28, *family]) >= flattest * (1 - 1e-6)   # none flatter than the bound
print(f"five other members of the family: largest eigenvalues from {min(family):.2f} "
      f"to {max(family):.0f}")

# %% [markdown]
# From $\text{lr} = 2/0.667 = 3$ on, no minimum is flat enough to settle at, which is why 3.0
# and 3.5 stall and 4 diverges. What this experiment shows, for this one-layer problem and plain
# full-batch gradient descent: the learning-rate limit is set by the curvature at the minima,
# $2/\lambda_\max$; between $2/\lambda_\max$ of the minimum that `lr = 1.5` found (2.66) and
# $2/\lambda_\max$ of the flattest minimum (3.00), gradient descent may still converge —
# elsewhere. Adam and mini-batches change the details. Here, the curvature along $B$ at the start
# would have predicted a limit of 4.9, and even the full Hessian there predicts 3.37 instead of
# 2.66.

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
# With whitened inputs ($X^\top X = N I$) the training loss is a distance between matrices, as
# shown (and checked) in §4:
#
# $$L(\Delta W) = \frac{1}{\text{out}}\big\|\Delta W - \Delta W_\text{true}\big\|_F^2 .$$
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
# observation, not a theorem we rely on.

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
# So, for the setting of this section — **one linear layer, noise-free targets that a linear map
# produces, full-batch gradient descent from LoRA's start, run to convergence** — the
# experiments show: *with whitened inputs*, LoRA trained on the squared error reached the best
# rank-$r$ approximation of the true update, the truncated SVD of notebook 01. With other inputs
# it reached the best rank-$r$ update *as measured by the inputs it sees*, which weights input
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
# tasks. In floating point the round trip is exact only up to rounding. In NumPy's default
# float64 the rounding is tiny:

# %%
W_back = W_merged - delta_weight(A_fit, B_fit, alpha_task)
np.testing.assert_allclose(W_back, W_pre, atol=1e-12)
print(f"float64: largest |W_back - W0| is below 1e-12: {np.abs(W_back - W_pre).max() < 1e-12}")

# %% [markdown]
# Models are usually trained and stored in float32 or lower precision, though, and there a
# merged weight keeps fewer digits.
#
# ### ✏️ Exercise 3 — predict the float32 unmerge error
#
# Suppose $W_0$ and $\Delta W$ are float32 arrays, and we merge, $W' = W_0 + \Delta W$, and
# unmerge, $W_\text{back} = W' - \Delta W$, in float32. How large will the largest entry of
# $|W_\text{back} - W_0|$ be? Predict it to within a factor of 10, as a number or an expression
# (`np.finfo(np.float32).eps` is the gap between 1 and the next float32 number), before running
# the cell after it.

# %% tags=["exercise"]
# ✏️ Your prediction: the largest |W_back - W0| after merging and unmerging in float32
predicted_error = ...  # ✏️ your answer

# %%
W0_32, delta_32 = W_pre.astype(np.float32), (W_merged - W_pre).astype(np.float32)
W_back_32 = (W0_32 + delta_32) - delta_32                # merge, then unmerge, in float32
measured_error = float(np.abs(W_back_32 - W0_32).max())
eps32 = float(np.finfo(np.float32).eps)
bound = eps32 / 2 * (np.abs(W0_32 + delta_32) + np.abs(W0_32)).max()  # two roundings
print(f"float32: largest |W_back - W0| = {measured_error / eps32:.1f} eps "
      f"(eps = {eps32:.2e}); not exact in {np.mean(W_back_32 != W0_32):.0%} of the entries")
assert 0 < measured_error <= bound <= eps32 * max(np.abs(W0_32 + delta_32).max(),
                                                  np.abs(W0_32).max())
_ = checks.check_unmerge_error(predicted_error, measured_error)

# %% [markdown]
# Each of the two roundings moves an entry by at most half the gap between neighbouring
# float32 numbers, which is about $\varepsilon$ times the entry's size — hence an error of the
# order of $\varepsilon\max(|W'|, |W_0|)$ (asserted above against the bound
# $\tfrac{\varepsilon}{2}\max(|W'| + |W_0|)$, which is at most that). It is small, but it is
# not zero: after an unmerge, a float32 model is not bit-for-bit the model you started from. That
# is one more reason to keep the original $W_0$ rather than recover it by subtraction
# (notebook 03, §6, returns to this in PyTorch).
#
# ## 7 · Three mistakes from popular write-ups
#
# Some blog posts and tutorials describe LoRA in ways that quietly break it. Each of the
# following mistakes sounds harmless; each one breaks LoRA in a way a small experiment can show.
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
# number; with the gradient itself, that is 12 bytes per trainable number in 32-bit floats.
# The table counts **only those 12 bytes** — not the weights, which sit in memory either way,
# nor the activations that backpropagation stores:

# %%
n_layers, d_model, r_gpt, n_adapted, _, _ = paper["GPT-3, r = 1 on Wq, Wv"]
lora_only = lora_params_for_model(n_layers, d_model, r_gpt, n_adapted)
everything = full_models["GPT-3 175B"][0] + lora_only       # every weight trainable again
for name, count in {"LoRA (W frozen)": lora_only, "LoRA + training W": everything}.items():
    print(f"{name:<18} trainable {count:>15,}   gradient + Adam state only: "
          f"{12 * count / 1e9:>9,.2f} GB")
assert everything / lora_only > 30_000

# %% [markdown]
# The paper reports the full picture for GPT-3 175B in its Section 4.2: training takes 1.2 TB
# of GPU memory with full fine-tuning and 350 GB with LoRA — a 71 % cut, 3.4 times less, which
# the abstract rounds to reducing "the GPU memory requirement by 3 times"; and with $r = 4$ on
# $W_q$ and $W_v$ a checkpoint shrinks from 350 GB to 35 MB, about 10,000 times. Which of these
# numbers follow from the architecture? Count 16-bit floats, 2 bytes per number, as the paper's
# Section 7.1 does for its 18M-parameter LoRA budget — the same configuration, "r = 4 if we adapt
# two types [of attention weights], for all 96 layers", stated as "18M (roughly 35MB if stored
# in FP16)":

# %%
weights_gb = 2 * full_models["GPT-3 175B"][0] / 1e9            # all weights, fp16
adapter_mb = 2 * lora_params_for_model(96, 12288, 4) / 1e6       # r = 4 on Wq, Wv, fp16
print(f"GPT-3 weights in fp16:      {weights_gb:6.0f} GB   (paper: 350 GB)")
print(f"adapter, r = 4 on Wq, Wv:   {adapter_mb:6.1f} MB = {adapter_mb * 1e6 / 2**20:.1f} MiB "
      f"(paper: 35 MB); {weights_gb * 1e3 / adapter_mb:,.0f} times smaller")
print(f"full fine-tuning vs LoRA:   1.2 TB / 350 GB = {1200 / 350:.1f}, a {1 - 350 / 1200:.0%} "
      f"cut  (1.2 TB is {1.2e12 / 175e9:.1f} bytes per parameter)")
assert round(weights_gb, -1) == 350 and 0 < 350 - weights_gb < 1 and 35 < adapter_mb < 40
assert 18e6 < lora_params_for_model(96, 12288, 4) < 19e6            # §7.1's "18M" budget
assert 9_000 < weights_gb * 1e3 / adapter_mb < 10_000 and 3.4 < 1200 / 350 < 3.5
assert 0.70 < 1 - 350 / 1200 < 0.72

# %% [markdown]
# So the 350 GB of LoRA training is about the size of the frozen fp16 weights alone (349 GB):
# that leaves under 1 GB for everything else — the activations and the adapter's own gradients
# and Adam state — so the paper's figure must leave those out or round them away. The 35 MB
# checkpoint is the $r = 4$ adapter in fp16 (37.7 MB, or 36 MiB — §7.1's "roughly 35MB"; in
# float32 it would be twice that). The 1.2 TB of full fine-tuning cannot be rebuilt from the
# architecture alone: the paper does not say in which precision it keeps gradients and Adam's
# state. What LoRA drops are exactly those: the weight gradients and the optimiser state of the
# frozen weights — the paper attributes the memory saving to not storing optimiser states for
# the frozen parameters, and reports a 25 % training speed-up from not computing most weight
# gradients. What it does not drop: the weights, the activations, and the backward pass through
# every $W_0$ (§3.1).

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
# ### 7.2 Mistake: computing the correction from the model's output instead of the layer's input
#
# LoRA's branch *is* added to a layer's output: $h = W_0x + s\,BAx$. What matters is where the
# branch starts. In LoRA it starts from the layer's **input** $x$ and passes through a
# (low-rank) weight, $BA$. A recurring picture instead computes the low-rank correction from
# an **output** — the model's logits, or in general what a layer has already computed,
# $h_0 = W_0x$ — and adds it there: $h_0 + BAh_0$, or just a learned constant. Whatever the
# details, a correction computed from
# $h_0$ only sees what the layer already computed. It can add a constant, or it can remix the
# entries of $h_0$; it cannot react to anything in $x$ that $W_0$ throws away.
#
# This bites only when $W_0$ has a null space — a classifier head or a down-projection with
# out < in, or a (near-)singular $W_0$. For a square invertible $W_0$ nothing is thrown away:
# the remix $h_0 + Mh_0$ with $M = \Delta W\,W_0^{-1}$ (of the same rank as $\Delta W$) is exactly
# $(W_0 + \Delta W)x$, so it can express every $\Delta W$; the differences are then
# conditioning and optimisation, not reach. (Notebook 04 meets the head case in a real model:
# there the logits correction amounts to a restricted new head.) The example below is a head.
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
# crisp; for a random direction $v$ (one draw below) it is less extreme. Part of $v$ then lies in
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
# And the square case of the caveat above: with a 16 × 16 invertible $W_0$ the best remix
# recovers the same kind of rank-1 change completely, through an $M$ of rank 1.

# %%
rng_sq = np.random.default_rng(7)
W_square = rng_sq.normal(size=(n_in, n_in)) / np.sqrt(n_in)        # invertible (almost surely)
u_sq = rng_sq.normal(size=n_in)
delta_sq = np.outer(u_sq / np.linalg.norm(u_sq), v_random / np.linalg.norm(v_random))  # rank 1
untouched_sq, _, remix_sq = output_side_losses(X_head, W_square, delta_sq)
M_square = delta_sq @ np.linalg.inv(W_square)                      # ΔW W0^-1
np.testing.assert_allclose(X_head @ W_square.T @ (np.eye(n_in) + M_square).T,
                           X_head @ (W_square + delta_sq).T, atol=1e-12)
assert matrix_rank(M_square) == 1 and remix_sq < 1e-20 * untouched_sq
print(f"square W0: the best remix of h0 leaves less than 1e-20 of the untouched loss: "
      f"{remix_sq < 1e-20 * untouched_sq};  rank of M = {matrix_rank(M_square)}")

# %% [markdown]
# ### 7.3 ⭐ Optional: Mistake — leaving out α/r, and what the factor is for
#
# Some implementations compute $W_0x + BAx$ and drop the factor $\alpha/r$ ("it's just a
# constant"). At one fixed $r$ that is true in a precise sense: a constant factor $c$ in front
# of $BA$ can be traded for other hyperparameters. With plain gradient descent it is equivalent
# to multiplying the learning rate by $c$ *and* $A$'s initialisation by $\sqrt{c}$. With Adam,
# which rescales every gradient entry anyway, and because $B$ starts at zero, it is equivalent
# to multiplying **$B$'s learning rate alone** by $c$ — or, splitting $c$ evenly between the two
# factors, both learning rates and $A$'s initialisation by $\sqrt{c}$. (All three are checked at
# the end of this section.) The last form matches a remark in the LoRA paper's Section 4.1: with
# Adam, tuning $\alpha$ is roughly the same as tuning the learning rate, provided the
# initialisation is scaled appropriately.
#
# So the factor earns its keep when **$r$ changes** — and the rank is one of the first things
# everyone tunes. The paper divides by $r$ to reduce the need to retune hyperparameters when $r$ is
# varied. Leaving the factor out is the choice $c = 1$ at every rank; $\alpha/r$, and **rsLoRA**'s
# $\alpha/\sqrt{r}$ (rank-stabilised LoRA, Kalajdzievski 2023, arXiv:2312.03732; in PEFT,
# `use_rslora=True`), are two ways of letting $c$ depend on $r$. With $\alpha$ and the learning rate
# held fixed, each keeps a *different* property of training the same across ranks, and which one
# also depends on the optimiser. Here we work it out for the first training step, where everything
# can be computed exactly.
#
# **Adam** (LoRA's usual optimiser, §7.1). In its first step Adam moves every entry by exactly
# the learning rate (up to its tiny $\varepsilon$), against the sign of that entry's gradient.
# At the LoRA start ($B_0 = 0$), $A$ has no gradient and stays put (a zero gradient gives a
# zero Adam step), and $\partial L/\partial B = s\,\nabla_W L\,A^\top$ with $\nabla_W L = G^\top
# X$, the gradient with respect to the whole weight. So, entry by entry,
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
# a sum of $\text{out}\cdot r$ terms of similar size. The step's **size** is
# $\lVert\Delta W_1\rVert_F = s\cdot\text{lr}\cdot
# \lVert\operatorname{sign}(\nabla_W L\,A^\top)\,A\rVert_F$: the product adds up $r$ rank-1
# pieces, one per row of $A$, with random-looking signs.
#
# **Plain gradient descent** moves $B$ by the learning rate *times its gradient*, which itself
# carries $s$: $B_1 = -\text{lr}\cdot s\,\nabla_W L\,A^\top$, so $\Delta W_1 = -\text{lr}\cdot
# s^2\,\nabla_W L\,A^\top A$ and its progress is $\text{lr}\cdot s^2\,\lVert\nabla_W L\,
# A^\top\rVert_F^2$, a sum of $\text{out}\cdot r$ squares.
#
# ### ✏️ Exercise 4 — which scaling keeps what steady?
#
# First work out from these formulas how each of the three quantities grows with $r$ at a fixed
# $s$. Two facts help: a sum of $n$ terms of similar size and the same sign grows like $n$; a sum
# of $n$ terms of similar size with random-looking signs grows only like $\sqrt{n}$. Then
# predict, before running the experiment: which of `"alpha/r"`, `"alpha/sqrt(r)"` and `"none"`
# keeps each quantity roughly the same for every $r$ — Adam's first-step progress, Adam's
# first-step size, and plain gradient descent's first-step progress?

# %% tags=["exercise"]
# ✏️ For each, "alpha/r", "alpha/sqrt(r)" or "none": which scaling keeps it steadiest as r grows?
adam_progress = ...  # ✏️ your answer
adam_step_size = ...  # ✏️ your answer
gd_progress = ...  # ✏️ your answer


# %% [markdown]
# Let's measure it on a wider layer (32 × 64), so that ranks up to 64 fit, with a target update
# of rank 8: real Adam runs for each rank and each scaling, and one real gradient-descent step.

# %%
def adam_update(p: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, t: int,
                lr: float, b1: float = 0.9, b2: float = 0.999,
                eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam step for a parameter p of any shape; m, v are its running averages.

    Returns the new (p, m, v). Why: Adam moves each entry by about lr, whatever the
    gradient's size -- which is what makes its first step easy to predict.
    """
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), m, v


# %%
def adam_lora(X: np.ndarray, Y: np.ndarray, W0: np.ndarray, r: int, scale: float, lr: float,
              steps: int, seed: int = 1) -> tuple[list, np.ndarray]:
    """Adam on A (r, in), B (out, r) with ΔW = scale * B @ A, from LoRA's start; returns
    the loss before each step and ΔW after the first. Why: §7.3's experiment, for any
    scaling of BA."""
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

alpha_w, lr_w, lr_gd, ranks = 8.0, 0.005, 0.5, (1, 2, 4, 8, 16, 32, 64)
scalings = {"alpha/r": lambda rr: alpha_w / rr, "alpha/sqrt(r)": lambda rr: alpha_w / rr**0.5,
            "none": lambda rr: 1.0}
adam_runs = {(label, rr): adam_lora(X_wide, Y_wide, W_wide, rr, scale(rr), lr=lr_w, steps=40)
             for rr in ranks for label, scale in scalings.items()}


# %%
def gd_first_step(rr: int, scale: float) -> np.ndarray:
    """ΔW after one plain gradient-descent step (lr_gd) from LoRA's start, rank rr.

    Why: the gradient-descent counterpart of Adam's first step.
    """
    A0, B0 = init_lora(64, 32, rr, seed=1)
    G_w = mse_loss(lora_forward(X_wide, W_wide, A0, B0, scale * rr), Y_wide)[1]
    B1 = B0 - lr_gd * lora_backward(X_wide, W_wide, A0, B0, scale * rr, G_w).B
    return scale * B1 @ A0


# %%
first = {"adam": {key: run[1] for key, run in adam_runs.items()},
         "gd": {(label, rr): gd_first_step(rr, scale(rr))
                for rr in ranks for label, scale in scalings.items()}}
progress = {opt: {key: -np.sum(W_grad * dW) for key, dW in steps.items()}
            for opt, steps in first.items()}
size = {key: np.linalg.norm(dW) for key, dW in first["adam"].items()}
for label, rr in first["adam"]:                               # the formulas above, checked
    A_start, s_w = init_lora(64, 32, rr, seed=1)[0], scalings[label](rr)
    M_start = W_grad @ A_start.T
    np.testing.assert_allclose(progress["adam"][label, rr],
                               s_w * lr_w * np.abs(M_start).sum(), rtol=1e-4)
    np.testing.assert_allclose(size[label, rr],
                               s_w * lr_w * np.linalg.norm(np.sign(M_start) @ A_start), rtol=1e-3)
    np.testing.assert_allclose(progress["gd"][label, rr],
                               lr_gd * s_w**2 * np.linalg.norm(M_start) ** 2, rtol=1e-10)


# %%
def spread(values: dict, label: str, over: tuple = ranks) -> float:
    """max / min of values[label, r] over the ranks r in `over`.

    Why: one number for "how much does this depend on r?".
    """
    picked = [values[label, rr] for rr in over]
    return max(picked) / min(picked)


# %%
rows = {rr: [1e3 * progress["adam"][k, rr] for k in scalings] + [size[k, rr] for k in scalings]
        + [1e3 * progress["gd"][k, rr] for k in scalings] for rr in ranks}
rows["max/min"] = [spread(v, k) for v in (progress["adam"], size, progress["gd"])
                   for k in scalings]
groups = ("Adam: progress ×1000", "Adam: ||ΔW_1||_F", "grad. descent: progr. ×1000")
print(f"{'':>7} │ " + " │ ".join(f"{g:<23}" for g in groups))
print(f"{'r':>7} │ " + " │ ".join(" ".join(f"{h:>7}" for h in ("α/r", "α/√r", "none"))
                                   for _ in groups))
for rr, row in rows.items():
    print(f"{rr!s:>7} │ " + " │ ".join(" ".join(f"{v:>7.3g}" for v in row[i:i + 3])
                                       for i in (0, 3, 6)))

# %%
assert spread(progress["adam"], "alpha/r") < 2 < 5 < spread(progress["adam"], "alpha/sqrt(r)") < 16
assert 50 < spread(progress["adam"], "none") < 130                  # roughly like r: 64-fold
assert spread(size, "alpha/sqrt(r)") < 1.5 < 4 < min(spread(size, "alpha/r"), spread(size, "none"))
assert np.all(np.diff([size["alpha/r", rr] for rr in ranks]) < 0)  # α/r: the step shrinks ...
assert 4 < size["alpha/r", 1] / size["alpha/r", 64] < 8            # ... roughly like 1/sqrt(r)
assert spread(progress["gd"], "alpha/sqrt(r)", ranks[2:]) < 1.5
assert spread(progress["gd"], "alpha/sqrt(r)") < 3.5 < 20 < spread(progress["gd"], "alpha/r")
assert np.all(np.diff([progress["adam"]["none", rr] for rr in ranks]) > 0)  # grows with every r
observed = {name: min(scalings, key=lambda k, v=values: spread(v, k)) for name, values in
            (("adam_progress", progress["adam"]), ("adam_step_size", size),
             ("gd_progress", progress["gd"]))}
assert observed == {"adam_progress": "alpha/r", "adam_step_size": "alpha/sqrt(r)",
                    "gd_progress": "alpha/sqrt(r)"}

# %%
_ = checks.check_scaling_choices(adam_progress, adam_step_size, gd_progress, observed=observed)

# %% [markdown]
# The derivation: Adam's progress adds $\text{out}\cdot r$ positive terms, so it grows like
# $s\,r$, and $s = \alpha/r$ cancels that; its size adds $r$ rank-1 pieces with random-looking
# signs, so it grows like $s\sqrt{r}$, and $\alpha/\sqrt{r}$ cancels that; gradient descent's
# progress adds $\text{out}\cdot r$ squares and carries $s^2$, so it grows like $s^2 r$, and
# $\alpha/\sqrt{r}$ cancels that too.
#
# Every entry of the first table is the formula above (checked). Reading the table row by row:
#
# * **Adam, progress.** Without a factor it grows with every rank, roughly in proportion to
#   $r$ (max/min over the 64-fold range of ranks between 50 and 130, asserted). With $\alpha/r$
#   it stays within a factor of 2 (asserted); what is left is the chance variation of a sum of
#   only $\text{out}\cdot r$ terms. With $\alpha/\sqrt{r}$ it grows roughly like $\sqrt{r}$
#   (max/min between 5 and 16, asserted; $\sqrt{64} = 8$). (At $r = 8 = \alpha$ the columns
#   "α/r" and "none" coincide, as if $\alpha$ had been tuned there.)
# * **Adam, size.** With $\alpha/r$ the step *shrinks* with every rank, from 0.129 at $r = 1$
#   to 0.0205 at $r = 64$, roughly like $1/\sqrt{r}$ (asserted). With $\alpha/\sqrt{r}$ it stays
#   within a factor of 1.5 (asserted): rsLoRA's scaling keeps the size of the update steady.
# * **Plain gradient descent, progress.** Here $\alpha/\sqrt{r}$ is the steady one (within a
#   factor of 1.5 from $r = 4$ on, asserted; the smallest ranks vary more by chance), while with
#   $\alpha/r$ progress falls roughly like $1/r$ (32-fold, asserted above 20).
#
# So the common summary "α/r keeps the step size the same when r changes" is not what happens.
# With Adam, $\alpha/r$ keeps the first step's first-order *progress* steady across ranks while
# its size shrinks; $\alpha/\sqrt{r}$ keeps the *size* steady while the progress grows; and with
# plain gradient descent it is $\alpha/\sqrt{r}$ that keeps the progress steady. The training
# curves over 40 Adam steps:

# %%
titles = {"alpha/r": "with α/r (α = 8)", "alpha/sqrt(r)": "with α/√r (rsLoRA, α = 8)",
          "none": "without scaling (ΔW = B·A)"}
fig = plots.loss_curves_figure(
    {titles[k]: {f"r = {rr}": adam_runs[k, rr][0] for rr in ranks} for k in scalings},
    suptitle="Adam, the same learning rate for every rank")
display(fig)

# %%
drop = {key: losses[0] - losses[5] for key, (losses, _) in adam_runs.items()}  # 5 steps
for over in (ranks, ranks[2:]):
    print(f"loss decrease in the first 5 steps, max/min over r = {over[0]}..{over[-1]}: "
          + ", ".join(f"{titles[k].split(' (')[0]} {spread(drop, k, over):.1f}"
                      for k in scalings))
assert spread(drop, "alpha/r", ranks[2:]) < 1.3 < spread(drop, "alpha/sqrt(r)", ranks[2:])
assert spread(drop, "none", ranks[2:]) > 2 * spread(drop, "alpha/sqrt(r)", ranks[2:])
assert max(drop["alpha/r", 1], drop["alpha/r", 2]) < min(drop["alpha/r", rr] for rr in ranks[2:])
assert np.all(np.diff([size["none", rr] for rr in ranks]) > 0)    # no factor: the size grows too
assert adam_runs["alpha/r", 64][0][-1] < adam_runs["alpha/r", 8][0][-1] / 2   # after 40 steps

# %% [markdown]
# With $\alpha/r$, the curves for $r = 4$ to $64$ stay close together for the first five steps
# (their loss decreases differ by less than 30 %, asserted); later the larger ranks pull ahead
# ($r = 64$ ends below half the loss of $r = 8$, asserted), although $r = 8$ can already express
# the rank-8 target exactly. With $\alpha/\sqrt{r}$ the first step has about the same size at
# every rank but makes more progress at larger ranks; without a factor, both grow (see the
# table). So the curves fan out at once.
#
# Even with $\alpha/r$, $r = 1$ and $2$ are slower from the start (asserted). Two things add up.
# First, the direction of the first step: with few rank-1 pieces, most of $\Delta W_1$ is not
# aligned with $-\nabla_W L$. This alignment does not depend on the scaling (up to Adam's tiny
# $\varepsilon$):

# %%
alignment = {rr: progress["adam"]["alpha/r", rr] / (size["alpha/r", rr] * np.linalg.norm(W_grad))
             for rr in ranks}
for k in scalings:                          # the same for every scaling (up to Adam's eps)
    np.testing.assert_allclose([progress["adam"][k, rr] / (size[k, rr] * np.linalg.norm(W_grad))
                                for rr in ranks], list(alignment.values()), rtol=1e-3)
print("cosine between ΔW_1 and -∇W L:  "
      + "  ".join(f"r = {rr}: {c:.2f}" for rr, c in alignment.items()))
assert np.all(np.diff(list(alignment.values())) > 0)          # points more downhill with r

# %% [markdown]
# So at $r = 1$ the first step is about 6 times larger than at $r = 64$ for a first-order
# progress of the same order (cosine 0.07 instead of 0.60). That is not free: the loss is
# quadratic in $\Delta W$, so a step also costs $\lVert X\Delta W_1^\top\rVert_F^2/(N\cdot
# \text{out}) \approx \lVert\Delta W_1\rVert_F^2/\text{out}$, and the loss falls by progress
# minus cost, exactly. At $r = 1$ the cost eats a third of the progress; at $r = 64$ about 1 %:

# %%
cost = {rr: np.linalg.norm(X_wide @ first["adam"]["alpha/r", rr].T) ** 2 / (N * 32)
        for rr in ranks}                                        # the quadratic term of step 1
for rr in ranks:
    before, after = adam_runs["alpha/r", rr][0][:2]
    np.testing.assert_allclose(before - after, progress["adam"]["alpha/r", rr] - cost[rr],
                               rtol=1e-9)                       # decrease = progress - cost
    np.testing.assert_allclose(cost[rr], size["alpha/r", rr] ** 2 / 32, rtol=0.25)
print("first step with α/r, cost / progress:  "
      + "  ".join(f"r = {rr}: {cost[rr] / progress['adam']['alpha/r', rr]:.2f}" for rr in ranks))
assert 5 < size["alpha/r", 1] / size["alpha/r", 64] < 8 and 0.05 < alignment[1] < 0.1
assert 0.3 < cost[1] / progress["adam"]["alpha/r", 1] < 0.4
assert cost[64] < 0.01 * progress["adam"]["alpha/r", 64]

# %% [markdown]
# Second, chance. This draw of $A$ gives $r = 1$ and $2$ less first-order progress than the
# other ranks (the table's first column). Averaged over 200 draws of $A$, the progress is the
# same at every rank — as it must be: each row of $A$ is drawn the same way whatever $r$ is, and
# with $\alpha/r$ the progress is $\alpha\cdot\text{lr}$ times the *mean* over the rows of $A$
# of $\sum_i|(\nabla_W L\,a_k)_i|$. (In the long run $r = 1$ and $2$ cannot express a rank-8
# change anyway.)

# %%
mean_progress = {rr: np.mean([alpha_w / rr * lr_w * np.abs(W_grad @ init_lora(64, 32, rr, k)[0].T)
                              .sum() for k in range(200)]) for rr in ranks}   # formula above
print(f"Adam's first-step progress ×1000 with α/r, mean over 200 draws of A: between "
      f"{1e3 * min(mean_progress.values()):.2f} and {1e3 * max(mean_progress.values()):.2f}")
assert max(mean_progress.values()) / min(mean_progress.values()) < 1.02
assert all(progress["adam"]["alpha/r", rr] < 0.8 * mean_progress[rr] for rr in (1, 2))
assert all(progress["adam"]["alpha/r", rr] > 0.9 * mean_progress[rr] for rr in ranks[2:])

# %% [markdown]
# Finally, the trades claimed at the start of this section, on this task over 20 steps from the
# same start ($r = 4$, $c = 3.7$). Adam's $\varepsilon$ is set to a negligible $10^{-300}$ here,
# so that the equivalences are exact rather than approximate.

# %%
def scaled_run(c: float, lr_A: float, lr_B: float, A0: np.ndarray, adam: bool,
               steps: int = 20) -> np.ndarray:
    """ΔW = c·B@A after `steps` full-batch steps on §7.3's task from (A0, B = 0), with learning
    rates lr_A, lr_B; Adam (ε = 1e-300) or plain gradient descent. A0 (r, in); ΔW (32, 64).

    Why: to check which hyperparameters a constant factor c in front of B@A can be traded for.
    """
    r_c = A0.shape[0]
    A_c, B_c = A0, np.zeros((32, r_c))
    mA, vA, mB, vB = np.zeros_like(A_c), np.zeros_like(A_c), np.zeros_like(B_c), np.zeros_like(B_c)
    for t in range(1, steps + 1):
        G_c = mse_loss(lora_forward(X_wide, W_wide, A_c, B_c, c * r_c), Y_wide)[1]
        g_c = lora_backward(X_wide, W_wide, A_c, B_c, c * r_c, G_c)
        if adam:
            A_c, mA, vA = adam_update(A_c, g_c.A, mA, vA, t, lr_A, eps=1e-300)
            B_c, mB, vB = adam_update(B_c, g_c.B, mB, vB, t, lr_B, eps=1e-300)
        else:
            A_c, B_c = A_c - lr_A * g_c.A, B_c - lr_B * g_c.B
    return c * B_c @ A_c


# %%
c, A4 = 3.7, init_lora(64, 32, 4, seed=1)[0]
gd_c, adam_c, root = scaled_run(c, 0.3, 0.3, A4, False), scaled_run(c, lr_w, lr_w, A4, True), c**0.5
trades = {"GD: lr × c, A's start × √c": (gd_c, scaled_run(1, c * 0.3, c * 0.3, root * A4, False)),
          "Adam: B's lr × c": (adam_c, scaled_run(1, lr_w, c * lr_w, A4, True)),
          "Adam: both lr × √c, A's start × √c": (adam_c, scaled_run(1, root * lr_w, root * lr_w,
                                                                    root * A4, True)),
          "Adam: both lr × c (not a trade)": (adam_c, scaled_run(1, c * lr_w, c * lr_w, A4, True))}
gaps = {name: relative_error(other, ref) for name, (ref, other) in trades.items()}
for name, gap in gaps.items():
    print(f"{name:<36} relative difference in ΔW after 20 steps: "
          f"{'below 1e-12' if gap < 1e-12 else f'{gap:.2f}'}")
assert max(list(gaps.values())[:3]) < 1e-12 < 0.3 < gaps["Adam: both lr × c (not a trade)"]

# %% [markdown]
# **Which scaling is right, then?** This toy does not decide it, and does not try to. $\alpha/r$
# holds Adam's first-step progress steady across ranks, which fits the paper's stated aim of
# reducing retuning when $r$ varies. It does not make later training independent of $r$ (see the
# curves: $r = 64$ ends below half the loss of $r = 8$). rsLoRA (Kalajdzievski 2023) analyses
# training as $r$ grows large and argues that dividing by $r$ "results in slowed learning and
# stunted performance for LoRA with higher-rank adapters", while $\alpha/\sqrt{r}$ keeps learning
# stable across ranks; it reports that larger ranks then do help in its fine-tuning experiments. Our
# first-step numbers are consistent with both descriptions: with $\alpha/r$, Adam's step shrinks
# like $1/\sqrt{r}$ as the rank grows, and with plain gradient descent even its progress falls like
# $1/r$. Notebook 03 (§8) continues this comparison in PyTorch over longer runs. Either way,
# **leaving the factor out** makes the first step's progress grow in proportion to $r$ under Adam: a
# learning rate tuned at one rank becomes, in effect, a different learning rate at every other (by
# the trade checked above, a factor $c$ acts as $B$'s learning rate × $c$).

# %% [markdown]
# ## Summary
#
# * **Shapes.** $\Delta W = \frac{\alpha}{r}BA$ with $B$ (out × r) and $A$ (r × in), so
#   $\operatorname{rank}\Delta W \le r$ and LoRA trains $r(\text{out} + \text{in})$ numbers per
#   adapted weight. For the LoRA paper's models that is 0.3M for RoBERTa-base ($r = 8$ on $W_q$
#   and $W_v$) and 4.7M for GPT-3 175B ($r = 1$ on $W_q$ and $W_v$, or $r = 2$ on $W_v$) —
#   computed from the architecture, not copied.
# * **Forward.** $h = W_0x + \frac{\alpha}{r}B(Ax)$; with a batch of rows,
#   `x @ W0.T + s * (x @ A.T) @ B.T`. $\Delta W$ is never formed during training.
# * **Gradients.** $\partial L/\partial B = s\,gu^\top$ and $\partial L/\partial A =
#   s\,B^\top g\,x^\top$ (batch: $s\,G^\top U$ and $s\,(GB)^\top X$, with a mean loss's
#   $1/(N\cdot\text{out})$ inside $G$), confirmed by finite differences. $W_0$ gets no weight
#   gradient, but the gradient passed on to the input, $W_0^\top g + s\,A^\top B^\top g$, still
#   goes through it.
# * **Start.** $B = 0$ with a random $A$ keeps the pretrained model exactly and still learns;
#   both zero is a saddle point that never moves; both random changes the pretrained model
#   before training starts.
# * **Training.** For one linear layer with whitened inputs, plain gradient descent from LoRA's
#   start recovered a hidden rank-$r$ update; when the true update had a higher rank, it reached
#   the best rank-$r$ approximation — the truncated SVD of notebook 01 — and its input-weighted
#   version when the inputs were not whitened. ⭐ In this one-layer toy, the learning-rate limit
#   was set by the curvature at the minima ($2/\lambda_\max \approx 2.66$), not by the curvature
#   at the start (along $B$ alone: 4.9; full Hessian: 3.4).
# * **Merging.** $W' = W_0 + \frac{\alpha}{r}BA$ gives the same outputs at exactly the cost of
#   the pretrained layer; unmerging gives $W_0$ back up to rounding — of the order of
#   float32's $\varepsilon$ times the entries' size in float32.
# * **Mistakes.** Training $W$ too is full fine-tuning in disguise (LoRA's memory saving is the
#   weight gradients and optimiser state of the frozen weights); a correction computed from the
#   model's output rather than from the layer's input cannot see what $W_0$ ignores — which
#   matters when $W_0$ has a null space, as a head or a down-projection does (for a square
#   invertible $W_0$ a remix of its output can express any $\Delta W$); without a
#   factor, the progress of Adam's first step grows in proportion to $r$. ⭐ With Adam,
#   $\alpha/r$ keeps that progress steady across ranks and rsLoRA's $\alpha/\sqrt{r}$ keeps the
#   step's size steady; with plain gradient descent, $\alpha/\sqrt{r}$ keeps the progress steady.
#
# **Next:** notebook 03 (`03_lora_layer.ipynb`) builds the same layer in PyTorch as `LoRALinear`,
# checks it against the NumPy version of this notebook, and lets autograd take over the
# gradients you derived here.
