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
# # 05 · What LoRA learns: a look inside the update ΔW
#
# Notebook 04 adapted a small network, pretrained on upright handwritten digits, to digits
# scanned sideways, and LoRA of rank 8 came within a few points of full fine-tuning. It also
# showed that the *exact* fix of the first layer has rank 48. So why is a low-rank update
# good enough? The LoRA paper asks the same question in its §7, "Understanding the low-rank
# updates" (Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022,
# arXiv:2106.09685), and answers it by looking inside the updates GPT-3 175B learned. This
# notebook repeats its three measurements on notebook 04's digits model:
#
# | question | the paper | here |
# |---|---|---|
# | "What does ΔW look like?" How many directions does an update really use? | §7.2, Table 6 | §2 |
# | "Which rank is enough?" | §7.2, Table 6 | §2.3 |
# | Do adapters of different ranks, or different seeds, learn the same directions? | §7.2, Figures 3 and 4 | §3 |
# | How does ΔW relate to the pretrained W? | §7.3, Table 7 | §4 |
#
# §5 then says plainly which of the paper's findings the toy reproduces and which it does not.
#
# ## Learning objectives
#
# By the end of this notebook you will be able to
#
# 1. measure the "intrinsic rank" of an update: its singular values, how many directions hold
#    50, 90 and 99 % of its energy, its stable rank, and the accuracy left when it is cut
#    down to rank k;
# 2. say which singular vectors the paper's subspace similarity φ compares, compute φ for
#    every pair (i, j), and derive its value for random subspaces, max(i, j)/d;
# 3. read a similarity heat map against that random baseline, and explain why a number like
#    0.25 can be a strong signal or pure chance;
# 4. project W onto the directions of ΔW as the paper's Table 7 does, and compute the
#    amplification factor ‖ΔW‖_F / ‖UᵀWVᵀ‖_F, together with its random baseline;
# 5. say what a toy experiment does and does not show about a 175-billion-parameter model.
#
# ## Exercises
#
# Four exercises sit right after the ideas they practise, each marked ✏️:
#
# 1. read the rank that keeps 90 % of the update's energy off its spectrum (§2.1);
# 2. work out φ for identical, orthogonal and nested subspaces (§3.1);
# 3. predict the random baseline before measuring it (§3.2);
# 4. predict whether the amplification factor goes up or down from r = 8 to r = 64, and how
#    the random column grows (§4.1).
#
# Replace each `...` with your answer and run the cell; the check after it says whether it
# is right and, if not, gives a hint that names the likely mistake ("not yet" until you have
# answered). Worked solutions are in `solutions/05_what_lora_learns_solutions.ipynb`.
#
# Run the cells from top to bottom; the whole notebook takes about ten seconds.

# %%
# %matplotlib inline
import numpy as np
import torch
from IPython.display import display

from lora_lab import checks, energy_curve, lora_layers, low_rank_approx, plots, singular_values
from lora_lab.data import load_digits_mlp
from lora_lab.lowrank import subspace_similarity
from lora_lab.train import accuracy

# %%
# notebook 04's shifted-digits task
from lora_lab.digits_task import (
    DTYPE,
    best_lr,
    build_variant,
    load_lr_sweep,
    make_task,
    run_variant,
)

# %%
# the measurements of the LoRA paper's §7
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

# %%
torch.set_num_threads(1)        # one thread: the same float results on every run
_ = torch.manual_seed(0)

# %% [markdown]
# ## 1 · Notebook 04's model, task and runs
#
# The pretrained model is notebook 04's MLP 64 → 256 → 256 → 10 with Linear layers `"0"`
# (256 × 64), `"2"` (256 × 256) and `"4"` (the head, 10 × 256). The task: 300 labelled
# sideways digits to adapt with, 497 to test on. Everything computes in float64, as in 04, so
# every run ends with the same predictions on every machine.
#
# We train four models, each with the learning rate that notebook 04's sweep chose on
# validation data: **full fine-tuning**, **LoRA r = 8** and **LoRA r = 64** twice (two
# seeds), LoRA on all three layers with α = 16 as in 04. The sweep did not try r = 64; it
# gets r = 8's learning rate, which is also what the sweep's rule picks for r = 64 among
# 0.01, 0.02 and 0.05 on the same validation data (the best worst seed of five;
# `tests/test_update_analysis.py` checks it).
#
# Each LoRA run gets **its own seed**. The seed draws the random starting factor $A$, and two
# runs with the same seed would start from related $A$s: in layer `"0"`, the first 8 rows of
# $A$ at r = 64 would be exactly $A$ at r = 8 (checked below). Any similarity we then found
# between them could be inherited from the start rather than learned.

# %%
task = make_task("rotate")
sweep = load_lr_sweep()
lr_full, lr_lora = (best_lr(sweep, "rotate", name) for name in ("full fine-tuning", "LoRA r=8"))
full = run_variant(task, "full", lr=lr_full, seed=0)
lora = {(r, seed): run_variant(task, "lora", r=r, lr=lr_lora, seed=seed)
        for r, seed in [(8, 0), (64, 1), (64, 2)]}
n_test = len(task.test_labels)
print(f"full fine-tuning (lr {lr_full:g}, seed 0): {full.correct} of {n_test} test digits")
for (r, seed), run in lora.items():
    print(f"LoRA r = {r:2} (lr {lr_lora:g}, seed {seed}): {run.correct} of {n_test}")
assert min(run.correct for run in [full, *lora.values()]) >= 0.9 * n_test
assert full.correct - lora[8, 0].correct < 0.06 * n_test      # "within a few points", as in 04

# %%
# the trap: the same seed at r = 8 and r = 64 starts layer "0" from the same 8 rows of A
same_seed = [dict(lora_layers(build_variant("lora", r=r, seed=0)))["0"].lora_A for r in (8, 64)]
assert torch.equal(same_seed[1][:8], same_seed[0])

# %% [markdown]
# From the trained models we take NumPy copies of what §7 looks at: the pretrained weights
# $W$, the full fine-tuning update $\Delta W = W_{\text{tuned}} - W$ of each layer, and of each
# LoRA layer its factor $A$ (r, in) and its update $\Delta W = \frac{\alpha}{r} B A$
# (`delta_weight()`, notebook 03).

# %%
LAYERS = ("0", "2", "4")
pretrained = load_digits_mlp().to(DTYPE)
W = {name: pretrained.get_submodule(name).weight.detach().numpy() for name in LAYERS}
delta_full = {name: full.model.get_submodule(name).weight.detach().numpy() - W[name]
           for name in LAYERS}
A_lora = {key: {name: layer.lora_A.detach().numpy() for name, layer in lora_layers(run.model)}
          for key, run in lora.items()}
delta_lora = {key: {name: layer.delta_weight().detach().numpy()
                 for name, layer in lora_layers(run.model)} for key, run in lora.items()}
print({name: delta_full[name].shape for name in LAYERS})

# %% [markdown]
# ## 2 · "What does ΔW look like?" The spectrum of the full update
#
# Full fine-tuning may change every entry of every weight: nothing forces its update to be
# low-rank. If LoRA's bet is right, the update it finds should still be *nearly* low-rank:
# a few singular values large, the rest small. Notebook 01's tools measure it: the singular
# values $\sigma_1 \ge \sigma_2 \ge \dots$, and the **energy** the top $k$ hold,
# $E(k) = (\sigma_1^2 + \dots + \sigma_k^2)/\|\Delta W\|_F^2$, which by Eckart–Young is what
# the best rank-$k$ approximation keeps.
#
# ### 2.1 The hidden layer's update
#
# Layer `"2"` (256 × 256) is the one most like the square attention weights the paper
# studies. Its update's largest singular values, and the sum of all 256 squares:

# %%
s = singular_values(delta_full["2"])
print("the 24 largest singular values of ΔW (layer 2):")
print(np.array2string(s[:24], precision=2, separator=", "))
print(f"||ΔW||_F² = sum of all {s.size} squares = {np.sum(s**2):.1f}")

# %% [markdown]
# ### ✏️ Exercise 1 — how many directions hold 90 % of the update?
#
# From the printed spectrum (or from the array `s` itself): what is the smallest $k$ whose
# top-$k$ singular values hold at least 90 % of $\|\Delta W\|_F^2$? Work it out before
# reading on; the table below will show it.

# %% tags=["exercise"]
# ✏️ a whole number k
k90 = ...  # ✏️ your answer

# %%
_ = checks.check_update_k90(k90, s, printed=24)

# %% [markdown]
# ### 2.2 Every layer, against two references
#
# How low is low? Two references of the same shape: the pretrained weight $W$ itself, and a
# random Gaussian matrix (whose energy spreads over all its directions). Besides $k$ for
# 50/90/99 %, one more summary: the **stable rank** $\|M\|_F^2/\|M\|_2^2 =
# \sum_i \sigma_i^2/\sigma_1^2$, between 1 (one direction holds everything) and the rank (all
# singular values equal). Unlike the rank, it does not jump when tiny singular values
# appear, which makes it a robust "number of directions that matter".

# %%
FRACTIONS = (0.5, 0.9, 0.99)
rng = np.random.default_rng(0)
print(f"{'layer':6}{'shape':>11}{'|ΔW|/|W|':>10}   k for 50/90/99 %   stable rank: "
      f"{'ΔW':>5}{'W':>6}{'random':>8}")
for name in LAYERS:
    sv = singular_values(delta_full[name])
    ks = [energy_rank(sv, q) for q in FRACTIONS]
    ratio = np.linalg.norm(delta_full[name]) / np.linalg.norm(W[name])
    random_sr = stable_rank(rng.normal(size=W[name].shape))
    print(f"{name:6}{W[name].shape!s:>11}{ratio:>10.2f}   {ks[0]:>5} {ks[1]:>4} {ks[2]:>4}"
          f"{'':>20}{stable_rank(delta_full[name]):>5.1f}{stable_rank(W[name]):>6.1f}"
          f"{random_sr:>8.0f}")

# %% [markdown]
# Every printed $k$ must hold on another computer, so we check that none sits on a knife's
# edge: the energy curve crosses each threshold by a clear margin.

# %%
for name in LAYERS:
    curve = energy_curve(singular_values(delta_full[name]))
    for q in FRACTIONS:
        k = energy_rank(singular_values(delta_full[name]), q)
        assert curve[k - 1] - q > 1e-6 and (k == 1 or q - curve[k - 2] > 1e-6)
ks_2 = [energy_rank(s, q) for q in FRACTIONS]
assert ks_2[0] <= 5 and ks_2[1] <= 24 and stable_rank(delta_full["2"]) < 4
assert all(stable_rank(delta_full[name]) < stable_rank(W[name]) / 2 for name in ("0", "2"))
assert np.linalg.norm(delta_full["2"]) > np.linalg.norm(W["2"])

# %% [markdown]
# The hidden layer's update: half its energy lies in 4 directions and 90 % in under 20, out
# of 256; its stable rank is below 4, less than half that of the pretrained $W$, and far
# below a random matrix's. The first layer tells the same story; the head
# (10 × 256) has only 10 directions to begin with, so it says little. The figure compares
# the three spectra of layer `"2"`, each divided by its largest value, and their energy
# curves, with a dot where each reaches 90 %:

# %%
spectra = {"ΔW (full fine-tuning)": s, "W (pretrained)": singular_values(W["2"]),
           "random Gaussian": singular_values(rng.normal(size=W["2"].shape))}
display(plots.update_spectrum_figure(spectra))

# %% [markdown]
# So this is what ΔW looks like here: **not low-rank, but nearly** — a steep head of a few
# large singular values, then a long tail that holds the last 10 % of the energy. Notice
# the size too: the update of layer `"2"` is *larger* than the weight it changes
# ($\|\Delta W\|_F/\|W\|_F \approx 1.1$). Sideways digits are a drastic shift for a model
# trained on upright ones, not a nudge.
#
# ### 2.3 "Which rank is enough?" The full update, cut down to rank k
#
# Energy is a statement about matrices; accuracy is what a task cares about. So we cut each
# layer's update down to its best rank-$k$ approximation (notebook 01's `low_rank_approx`),
# keep the fine-tuned biases, and test. The head has rank at most 10, so there $k$ stops at
# 10.

# %%
def truncated(k: int) -> torch.nn.Module:
    """The fully fine-tuned model with every weight update cut down to rank k."""
    model = load_digits_mlp().to(DTYPE)
    model.load_state_dict(full.model.state_dict())             # biases stay fine-tuned
    with torch.no_grad():
        for name in LAYERS:
            k_layer = min(k, *delta_full[name].shape)
            best = low_rank_approx(delta_full[name], k_layer)      # Eckart–Young, notebook 01
            model.get_submodule(name).weight.copy_(torch.from_numpy(W[name] + best))
    return model


# %%
RANKS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
frozen = run_variant(task, "frozen")                       # no update at all
correct = {k: round(accuracy(truncated(k), task.test_images, task.test_labels) * n_test)
           for k in RANKS}
print("rank k:  " + " ".join(f"{k:>4}" for k in RANKS))
print("correct: " + " ".join(f"{correct[k]:>4}" for k in RANKS) + f"   (full update: "
      f"{full.correct}, frozen: {frozen.correct} of {n_test})")
assert correct[1] < 0.25 * n_test and correct[8] < full.correct - 10
assert lora[8, 0].correct > correct[8]          # LoRA trained at rank 8 vs the cut-down update
assert all(correct[k] >= full.correct - 8 for k in RANKS if k >= 16)

# %%
display(plots.truncated_update_figure(
    RANKS, [correct[k] / n_test for k in RANKS],
    references={"full update (untruncated)": full.accuracy,
                "frozen (no update)": frozen.accuracy}))

# %% [markdown]
# One direction per layer recovers under a quarter of the digits, and rank 8 still loses more
# than 10 of them; from rank 16 on, the cut-down update is within 8 digits (1.6 %) of the
# whole one. Accuracy comes back at about the rank that holds 90 % of the energy: the long
# tail of small singular values is not needed *for this test set*. That is the measured
# answer to "which rank is enough?" for the full update of this model and shift. A LoRA
# trained at rank 8 from the start does better than the full update cut to rank 8 (here
# and on each of eight seeds we tried): it optimises within its rank instead of being cut
# down afterwards. A different shift may need more: notebook 04's exact fix of layer `"0"`
# had rank 48, and an update is only as low-rank as its task allows.

# %% [markdown]
# ## 3 · Do different adapters learn the same directions? (§7.2)
#
# ### 3.1 Which singular vectors φ compares
#
# The paper compares the learned factors $A$ of two adapters. $A$ has shape (r, d): it reads
# the layer's d = 256 inputs and returns r numbers, so the directions it cares about live in
# the **input space** $\mathbb{R}^d$, spanned by its rows. Its SVD $A = U\Sigma V^\top$ gives
# those directions as the **right singular vectors**, the columns of $V$ (d × r), in order
# of importance. §7.2 takes exactly these ("the right-singular unitary matrices $U_{A_{r=8}}$
# and $U_{A_{r=64}}$"; the paper calls them $U_A$). Figure 3's caption ("column vectors")
# and Appendix G ("left singular matrices") describe the same vectors for matrices written
# with d rows, i.e. $A^\top$. It cannot be the left singular vectors of $A$: for r = 8 and
# r = 64 they live in $\mathbb{R}^8$ and $\mathbb{R}^{64}$ and could not be compared.
#
# With $V_1^i$ the top $i$ right singular vectors of $A_1$ and $V_2^j$ the top $j$ of $A_2$,
# equation (4) of the paper is
# $$\varphi(A_1, A_2, i, j) = \frac{\|{V_1^i}^\top V_2^j\|_F^2}{\min(i, j)} \in [0, 1].$$
# The numerator adds the squared cosines between every pair of directions; for orthonormal
# bases it is the squared length of the projection of one subspace onto the other. By hand
# for one (i, j), then with `lora_lab`: `subspace_similarity` takes column spaces (hence
# the transposes), `similarity_grid` returns every (i, j) at once.

# %%
A8, A64 = A_lora[(8, 0)]["2"], A_lora[(64, 1)]["2"]          # (8, 256) and (64, 256)
V8 = np.linalg.svd(A8, full_matrices=False)[2].T             # (256, 8): right singular vectors
V64 = np.linalg.svd(A64, full_matrices=False)[2].T           # (256, 64), largest first
i, j = 2, 5
phi = np.linalg.norm(V8[:, :i].T @ V64[:, :j]) ** 2 / min(i, j)
grid_8_64 = similarity_grid(A8, A64)                         # (8, 64): every (i, j)
print(f"phi(A_8, A_64, {i}, {j}) by hand = {phi:.3f}; grid shape {grid_8_64.shape}")
assert np.isclose(phi, subspace_similarity(A8.T, A64.T, i, j))
assert np.isclose(phi, grid_8_64[i - 1, j - 1])

# %% [markdown]
# ### ✏️ Exercise 2 — φ by hand
#
# In $\mathbb{R}^6$ with coordinate axes $e_1, \dots, e_6$, what is φ for
#
# * `phi_same`: span($e_1, e_2, e_3$) with itself (i = j = 3);
# * `phi_orthogonal`: span($e_1, e_2, e_3$) with span($e_4, e_5, e_6$) (i = j = 3);
# * `phi_nested`: span($e_1, e_2$) (i = 2) with span($e_1, \dots, e_5$) (j = 5)?
#
# Work them out from the formula on paper (the bases are columns of the identity matrix).

# %% tags=["exercise"]
# ✏️ three numbers
phi_same = ...  # ✏️ your answer
phi_orthogonal = ...  # ✏️ your answer
phi_nested = ...  # ✏️ your answer

# %%
_ = checks.check_phi_by_hand(phi_same, phi_orthogonal, phi_nested)

# %% [markdown]
# ### 3.2 What chance gives: the random baseline
#
# Is φ = 0.3 a lot? That depends on i, j and d, and only a baseline tells. Take a uniformly
# random i-dimensional subspace of $\mathbb{R}^d$ and a j-dimensional one.
#
# ### ✏️ Exercise 3 — predict the baseline
#
# For i = 8 and j = 64 in d = 256 (the corner of the paper's Figure 3 layout, at our d):
# what is φ on average? Hint: start from one random unit vector — what share of its squared
# length lies, on average, in a fixed subspace of dimension 64?

# %% tags=["exercise"]
# ✏️ a number (an expression like 3 / 7 is fine)
chance_8_64 = ...  # ✏️ your answer

# %%
_ = checks.check_random_baseline(chance_8_64, i=8, j=64, d=256)

# %% [markdown]
# **The derivation.** Let $P$ project onto a uniformly random i-dimensional subspace. By
# symmetry, $\mathbb{E}[P]$ commutes with every rotation, so it is a multiple of the
# identity; its trace is i, so $\mathbb{E}[P] = \frac{i}{d}I$. For any fixed j-dimensional
# subspace with orthonormal basis $V_j$, $\|V_i^\top V_j\|_F^2 = \operatorname{tr}(V_j^\top P
# V_j)$, whose mean is $\frac{i}{d}\,j$. Dividing by min(i, j):
# $$\mathbb{E}[\varphi] = \frac{ij}{d\,\min(i, j)} = \frac{\max(i, j)}{d}.$$
# Only one of the two subspaces needs to be random. In the paper's layout (i ≤ 8 ≤ j) it is
# $j/d$. A Monte Carlo check: 200 pairs of random Gaussian factors (8 × 256 and 64 × 256;
# the top singular vectors of a Gaussian matrix span a uniformly random subspace), their
# mean grid against `random_similarity_grid`:

# %%
d = A8.shape[1]
mc = np.random.default_rng(1)
mean_grid = np.mean([similarity_grid(mc.normal(size=(8, d)), mc.normal(size=(64, d)))
                     for _ in range(200)], axis=0)
chance_grid = random_similarity_grid(8, 64, d)
for i, j in [(1, 1), (8, 8), (1, 64), (8, 64)]:
    print(f"i = {i}, j = {j:2}: Monte Carlo {mean_grid[i - 1, j - 1]:.3f}, "
          f"max(i, j)/d = {random_similarity(i, j, d):.3f}")
assert np.abs(mean_grid - chance_grid).max() < 0.01

# %% [markdown]
# ### 3.3 The heat maps: rank 8 against rank 64, and seed against seed
#
# Now the paper's Figures 3 and 4 for layer `"2"`: φ between $A_{r=8}$ and $A_{r=64}$ for
# every (i, j); between the two seeds at r = 64; and, as the paper does, between two random
# Gaussian factors of the same shapes. Top row: φ, with the random baseline as dashed lines.
# Bottom row: φ divided by that baseline — white is chance, red is more overlap than chance.

# %%
A64b = A_lora[(64, 2)]["2"]
grids = {"A (r = 8, seed 0) vs A (r = 64, seed 1)": grid_8_64,
         "A (r = 64, seed 1) vs A (r = 64, seed 2)": similarity_grid(A64, A64b),
         "two random Gaussian 64 × 256": similarity_grid(rng.normal(size=(64, d)),
                                                         rng.normal(size=(64, d)))}
display(plots.subspace_similarity_figure(grids, d))

# %% [markdown]
# The numbers behind the figure, each beside its chance level, and the same pairs before
# training (the starting $A$s, from the same seeds):

# %%
seeds_grid = grids["A (r = 64, seed 1) vs A (r = 64, seed 2)"]
start = {key: dict(lora_layers(build_variant("lora", r=key[0], seed=key[1])))["2"]
         .lora_A.detach().numpy() for key in lora}
start_8_64, start_seeds = (similarity_grid(start[a], start[b])
                           for a, b in [((8, 0), (64, 1)), ((64, 1), (64, 2))])
for label, g, g0 in [("r = 8 vs r = 64", grid_8_64, start_8_64),
                     ("seed 1 vs seed 2, r = 64", seeds_grid, start_seeds)]:
    for i, j in [(1, 1), (8, 8), (8, 64)] + ([(64, 64)] if g.shape[0] == 64 else []):
        print(f"{label:25} phi({i}, {j:2}) = {g[i - 1, j - 1]:.2f}   chance "
              f"{random_similarity(i, j, d):.3f}   before training {g0[i - 1, j - 1]:.2f}")

# %%
assert grid_8_64[0, 0] > 0.3 and seeds_grid[0, 0] > 0.3                 # > 75 x chance (1/256)
assert 4 * 8 / d < grid_8_64[7, 7] < grid_8_64[0, 0]                     # above chance, less
assert seeds_grid[63, 63] < 1.3 * random_similarity(64, 64, d)           # near chance
assert max(start_8_64[0, 0], start_seeds[0, 0]) < 10 / d                 # learned, not inherited

# %% [markdown]
# What the heat maps show, for this layer and these runs (the asserts hold for every pair of
# eight seeds we tried, not only these: φ(1, 1) was 0.32 to 0.64 between rank 8 and rank 64,
# 0.44 to 0.74 between two rank-64 seeds):
#
# * **The top direction is shared.** φ(1, 1) is far above its chance level of 1/256 — between
#   the rank-8 and the rank-64 adapter, and between two rank-64 adapters that started from
#   unrelated random $A$s (before training, φ(1, 1) sat at chance). Trained separately, they
#   found the same most important input direction: the paper's observation for Figure 3
#   (φ > 0.5 for the top direction of $\Delta W_q$ and $\Delta W_v$).
# * **The next directions are shared less.** φ(8, 8) between rank 8 and rank 64 is below
#   φ(1, 1), though still several times its chance level of 8/256 (5 to 9 times over the
#   seeds we tried).
# * **Beyond the top few, a rank-64 adapter's directions do not reproduce.** Between two
#   seeds at r = 64, φ(64, 64) is barely
#   above its chance level of 64/256 = 0.25: beyond the first few, the 64 directions of one
#   run are about as related to the other run's as random ones would be. The paper reads
#   Figure 4 the same way: "other directions potentially contain mostly random noises
#   accumulated during training".
#
# A trap the baseline protects against: in layer `"0"` the input has d = 64 dimensions, so
# an $A$ of rank 64 spans *all* of $\mathbb{R}^{64}$, and φ(i, 64) = 1 for every i — chance
# is 64/64 = 1, and the "perfect similarity" means nothing:

# %%
grid_layer0 = similarity_grid(A_lora[(8, 0)]["0"], A_lora[(64, 1)]["0"])
print(f"layer 0: phi(i, 64) = {grid_layer0[:, -1].min():.3f} for every i; chance "
      f"{random_similarity(8, 64, 64):.0f}")
assert np.allclose(grid_layer0[:, -1], 1.0)

# %% [markdown]
# ## 4 · How does ΔW relate to W? (§7.3, Table 7)
#
# ### 4.1 Projecting W onto the directions of ΔW
#
# Does the update point along the directions the pretrained weight already emphasises, or
# elsewhere? §7.3 takes the top-r singular vectors of ΔW: $U$ (m × r, the left ones as
# columns) and $V$ (r × n, the right ones as **rows**, NumPy's `Vt[:r]`; this is why the
# paper writes $V^\top$), and measures how much of $W$ lies in that r × r block:
# $$\|U^\top W V^\top\|_F.$$
# (Appendix H.4, numbered as in arXiv v2: $U U^\top W V^\top V$ is the projection of $W$
# onto ΔW's subspace.) Table 7 puts three versions side by side, for the 48th layer's $W_q$
# of GPT-3: $U, V$ from
# **ΔW**, from **W itself** (the most any r directions can hold: $\sqrt{\sigma_1^2 + \dots +
# \sigma_r^2}$ of $W$), and from a **random** matrix. The paper's **amplification factor**
# (Appendix H.4) compares the update with what it amplifies:
# $$\text{amplification} = \frac{\|\Delta W\|_F}{\|U^\top W V^\top\|_F}.$$
# For random directions there is a formula: $\mathbb{E}[UU^\top] = \frac{r}{m}I$ and
# $\mathbb{E}[V^\top V] = \frac{r}{n}I$ as in §3.2, so
# $\mathbb{E}\|U^\top W V^\top\|_F^2 = \frac{r}{m}\frac{r}{n}\|W\|_F^2$, and the
# root-mean-square is $r\|W\|_F/\sqrt{mn}$ (`random_projection_rms`). It reproduces the
# paper's random column from ‖W_q‖_F = 61.95 alone:

# %%
for r, paper in [(4, 0.02), (64, 0.33)]:
    formula = r * 61.95 / np.sqrt(12288 * 12288)           # GPT-3: W_q is 12288 × 12288
    print(f"r = {r:2}: r ||W_q||_F / sqrt(mn) = {formula:.3f}; Table 7's Random: {paper}")
    assert abs(formula - paper) < 0.01

# %% [markdown]
# ### ✏️ Exercise 4 — predict first
#
# The paper found an amplification factor of 21.5 (= 6.91/0.32) at r = 4. We will measure
# it on layer `"2"` for our r = 8 and r = 64 adapters. (a) From r = 8 to r = 64, does it go
# `"up"`, `"down"` or stay the `"same"`? (b) By what factor does the random column
# $r\|W\|_F/\sqrt{mn}$ grow from r = 8 to r = 64?

# %% tags=["exercise"]
# ✏️ (a) "up", "down" or "same"; (b) a number
trend = ...  # ✏️ your answer
random_growth = ...  # ✏️ your answer

# %% [markdown]
# ### 4.2 Table 7 on the digits
#
# For each LoRA update of layer `"2"`, with r its LoRA rank: the three columns (the random
# one as one Gaussian draw, as in the paper, and as the formula), the norms, the stable rank
# of the update and the amplification factor.

# %%
W2, table = W["2"], {}                       # table[r, seed]: the seven numbers of each row
print(f"||W||_F = {np.linalg.norm(W2):.1f}\n{'':18}{'ΔW':>6}{'W':>7}{'random':>8}{'formula':>9}"
      f"{'||ΔW||_F':>10}{'stable rank':>13}{'amplification':>15}")
for (r, seed), update in ((key, delta_lora[key]["2"]) for key in lora):
    row = [projection_norm(W2, M, r) for M in (update, W2, rng.normal(size=W2.shape))]
    table[r, seed] = [*row, random_projection_rms(W2, r), np.linalg.norm(update),
                      stable_rank(update), amplification_factor(W2, update, r)]
    print(f"r = {r:2}, seed {seed}:  " + "".join(f"{v:>{w}.{p}f}" for v, w, p in zip(
        table[r, seed], (6, 7, 8, 9, 10, 13, 15), (1, 1, 2, 2, 0, 1, 1), strict=True)))

# %%
amplification = {8: table[8, 0][6], 64: table[64, 1][6]}
_ = checks.check_amplification_prediction(
    trend, random_growth, amplification,
    random_rms={r: random_projection_rms(W2, r) for r in amplification})

# %%
for dw, w, rand, formula, norm, sr, _ in table.values():
    assert 1.5 * formula < dw < w / 1.5 and 0.5 * formula < rand < 2 * formula
    assert norm > 2 * np.linalg.norm(W2) and sr < 1.3
assert 4 * table[8, 0][3] < table[8, 0][0] < table[8, 0][1] / 3      # r = 8: ΔW vs random, W
assert all(1.5 < table[64, seed][0] / table[8, 0][0] < 3 for seed in (1, 2))
amp_8, amp_64 = table[8, 0][6], max(table[64, 1][6], table[64, 2][6])
assert amp_8 > 10 and amp_8 > 2 * amp_64

# %% [markdown]
# How to read it, against the paper's three conclusions from Table 7:
#
# 1. **ΔW is related to W more than chance.** The ΔW column is above the random one: more
#    than 4 times at r = 8, about twice at r = 64. The update's directions carry more of $W$
#    than random directions would. Reproduced.
# 2. **ΔW does not repeat W's top directions.** The ΔW column is well below the W column
#    (under a third of it at r = 8, about half at r = 64): the update mostly amplifies directions
#    that $W$ has but does not emphasise. Reproduced.
# 3. **The amplification is large at small r, and smaller at large r.** Here 12 to 18 at
#    r = 8 against 4.6 to 5.4 at r = 64 (over eight seeds each); the paper: 21.5 at r = 4,
#    about 2 at r = 64. Reproduced in direction; at r = 64 ours is more than twice the
#    paper's. Part of the drop is geometry: with 8 times more directions on each side, even
#    random directions catch 8 times more of $W$ (the random columns), and ΔW's own top
#    directions catch about twice as much at r = 64 as at r = 8.
#
# Two things differ plainly. **Size:** here $\|\Delta W\|_F$ is 2 to 3.5 times $\|W\|_F$
# (about 40 against 16), while the paper's is a tenth of it (6.91 against 61.95):
# rotating the digits is a drastic shift, not a nudge. **Shape:** our LoRA updates are
# dominated by a single direction (stable rank below 1.3 at both ranks), so "the top r
# directions" of a rank-64 update include 60-odd weak ones, which carry little of ΔW but a
# fair share of $W$.
#
# ## 5 · What reproduces, and what does not
#
# | the paper (GPT-3 175B) | here (digits MLP, 300 examples) | |
# |---|---|---|
# | §7.1, Table 5: under a fixed budget, adapting $W_q$ and $W_v$ at r = 4 beats one weight type at r = 8 | not measured here; notebook 04 §9 compared single layers | — |
# | §7.2, Table 6: r = 1 suffices for $\{W_q, W_v\}$ | the full update cut to rank 1 keeps under a quarter of the digits; it needs rank ≈ 16 to match (§2.3) | **differs** |
# | §7.2: ΔW has a low "intrinsic rank" | full fine-tuning's ΔW: 90 % of the energy in under 20 of 256 directions, stable rank below 4 (§2.2) | reproduced |
# | §7.2, Figure 3: the top direction of $A_{r=8}$ and $A_{r=64}$ is shared (φ > 0.5) | φ(1, 1) far above chance: 0.32 to 0.64 over seeds (§3.3) | reproduced, a little weaker |
# | §7.2, Figure 3: other directions are not shared | φ(8, 8) smaller, but still 5 to 9 times chance | partly |
# | §7.2, Figure 4: two seeds at r = 64 share few directions beyond the top ones | φ(64, 64) within 16 % of chance | reproduced |
# | §7.3, Table 7: random < ΔW < W, ΔW amplifies directions W does not emphasise | same ordering (§4.2) | reproduced |
# | §7.3, H.4: amplification 21.5 at r = 4, about 2 at r = 64 | 12 to 18 at r = 8, 4.6 to 5.4 at r = 64 | same direction; larger at r = 64 |
# | ‖ΔW_q‖_F / ‖W_q‖_F = 6.91 / 61.95 ≈ 0.11 | 2 to 3.5 for LoRA, about 1.1 for full fine-tuning | **differs** |
#
# What the toy can and cannot show. The paper measured one layer of 96 (the 48th, with more
# layers in Appendix H.1) of a 175-billion-parameter transformer, on the weights $W_q$ and
# $W_v$ of self-attention, adapted to language tasks. We measured one hidden layer of a
# three-layer MLP whose inputs live in 256 dimensions, adapted to one drastic shift with 300
# examples, with a handful of seeds. That the same qualitative pattern appears — a nearly
# low-rank update, a shared top direction, noise beyond it, amplification of directions $W$
# does not emphasise — shows that the pattern does not need GPT-3's scale to appear.
# It does not show that the paper's numbers transfer: the rank that is enough, the size of
# the update and the amplification factor all depend on the model and on how far the task
# is from what the model was trained for.
#
# ## Summary
#
# * An update found by full fine-tuning, with no rank constraint at all, is **nearly
#   low-rank** here: a few large singular values, a long weak tail. 90 % of its energy
#   fits in under 20 of 256 directions, and cut down to rank 16 it keeps its accuracy
#   within 1.6 %.
# * The LoRA paper's φ compares the spaces spanned by the **right singular vectors of A**
#   (its row space, in the layer's input space). Its random baseline is
#   $\max(i, j)/d$ — always read φ against it: φ = 0.25 is chance for 64 of 256 dimensions.
# * Adapters of different rank and different seed **share their top direction** far above
#   chance; the rest of a rank-64 adapter is about as related to another seed's as random.
# * $\|U^\top W V^\top\|_F$ shows that ΔW **amplifies directions $W$ has but does not
#   emphasise**; the amplification factor is larger at small r, partly because random
#   directions catch $r\|W\|_F/\sqrt{mn}$ of $W$, a share that grows with r.
# * The toy reproduces the paper's pattern, not its numbers: here the shift is drastic and
#   the update larger than the weight.
#
# **Next: 06** takes LoRA to the architecture real models use — a small Llama-style
# transformer with `q_proj` and `v_proj`, the weights the paper adapted — and hands the
# result over to Hugging Face's PEFT.
