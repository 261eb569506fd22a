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
# # 05 · What LoRA learns — worked solutions
#
# Solutions to the four exercises of `05_what_lora_learns.ipynb`. For each one: the answer
# with the reasoning behind it, the self-check passing, and a typical wrong answer together
# with what the check tells you about it. Try the exercises yourself first — the hints in
# the main notebook are designed to get you there. Where an exercise uses the lesson's
# trained models, this notebook trains them again, with the same seeds.

# %%
import numpy as np
import torch

from lora_lab import checks, lora_layers, singular_values, subspace_similarity
from lora_lab.data import load_digits_mlp
from lora_lab.digits_task import DTYPE, best_lr, load_lr_sweep, make_task, run_variant
from lora_lab.update_analysis import (
    compare_to_weight,
    energy_rank,
    random_projection_rms,
    random_similarity,
)

torch.set_num_threads(1)        # one thread: the same float results on every run
_ = torch.manual_seed(0)

# %% [markdown]
# ## Exercise 1 — how many directions hold 90 % of the update?
#
# The lesson's full fine-tuning update of layer `"2"`, and its singular values:

# %%
task = make_task("rotate")
sweep = load_lr_sweep()
full = run_variant(task, "full", lr=best_lr(sweep, "rotate", "full fine-tuning"), seed=0)
W2 = load_digits_mlp().to(DTYPE).get_submodule("2").weight.detach().numpy()
s = singular_values(full.model.get_submodule("2").weight.detach().numpy() - W2)
print(np.array2string(s[:24], precision=2, separator=", "))
print(f"||ΔW||_F² = {np.sum(s**2):.1f}")

# %% [markdown]
# The energy of the top k is $(\sigma_1^2 + \dots + \sigma_k^2)/\|\Delta W\|_F^2$: square the
# singular values, add them up in order, divide by the sum of **all** the squares — the 24
# printed ones are not all of the matrix — and find the first k at which the share reaches
# 0.9. In code the position of that first crossing counts from 0, so k is the position + 1.
# By hand, keep a few digits: a share of 0.898 is not yet 0.9.

# %% tags=["solution"]
# ✏️ a whole number k
### BEGIN SOLUTION
k90 = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= 0.9)) + 1    # first k with E(k) >= 0.9
### END SOLUTION

# %%
_ = checks.check_update_k90(k90, s, printed=24)
assert k90 == energy_rank(s, 0.9)
shares = np.cumsum(s**2) / np.sum(s**2)          # E(1), E(2), ...: the energy of the top k
print(f"k90 = {k90}: the top {k90} of {s.size} directions hold {shares[k90 - 1]:.1%}")

# %% [markdown]
# **A typical wrong answer** divides by the energy of the printed values only. Their sum is
# smaller than the whole, so 90 % of it is reached too early:

# %%
printed = s[:24]
k_printed = int(np.argmax(np.cumsum(printed**2) / np.sum(printed**2) >= 0.9)) + 1
_ = checks.check_update_k90(k_printed, s, printed=24)

# %% [markdown]
# ## Exercise 2 — φ by hand
#
# With orthonormal bases made of coordinate axes, ${V_1}^\top V_2$ has an entry 1 wherever
# the two bases share an axis and 0 elsewhere, so $\|{V_1}^\top V_2\|_F^2$ counts the shared
# axes.
#
# * Same subspace: 3 shared axes, min(i, j) = 3, so φ = 3/3 = 1.
# * Orthogonal subspaces: no shared axis, φ = 0.
# * span($e_1, e_2$) inside span($e_1, \dots, e_5$): 2 shared axes, min(i, j) = 2, so
#   φ = 2/2 = 1. Dividing by the *smaller* dimension makes "one subspace lies inside the
#   other" score 1, which is what §7.2 of the paper asks: "how much of the subspace spanned
#   by the top $i$ singular vectors in $U_{A_{r=8}}$ (for $1\leq i \leq 8$) is contained in
#   the subspace spanned by top $j$ singular vectors of $U_{A_{r=64}}$ (for
#   $1\leq j \leq 64$)?" (The paper writes $U_A$ for what the lesson calls $V$.)

# %% tags=["solution"]
# ✏️ three numbers
### BEGIN SOLUTION
phi_same = 3 / 3          # ||I_3||_F² = 3 shared axes, divided by min(3, 3)
phi_orthogonal = 0 / 3    # no shared axis
phi_nested = 2 / 2        # e1, e2 both inside; divided by min(2, 5) = 2
### END SOLUTION

# %%
_ = checks.check_phi_by_hand(phi_same, phi_orthogonal, phi_nested)
e = np.eye(6)
assert np.isclose(phi_nested, subspace_similarity(e[:, :2], e[:, :5]))

# %% [markdown]
# **A typical wrong answer** divides the nested case by the larger dimension, 2/5:

# %%
_ = checks.check_phi_by_hand(1.0, 0.0, 2 / 5)

# %% [markdown]
# ## Exercise 3 — predict the baseline
#
# One random unit vector has d squared coordinates that add up to 1 and, by symmetry, have
# the same mean: 1/d each. A fixed 64-dimensional subspace (rotate it onto the first 64
# axes) holds 64 of them, so on average the share 64/256 of the vector. An 8-dimensional
# random subspace has 8 such directions, so $\mathbb{E}\|V_8^\top V_{64}\|_F^2 = 8 \cdot
# 64/256 = 2$, and dividing by min(8, 64) = 8 gives φ = 64/256 = 0.25: max(i, j)/d.

# %% tags=["solution"]
# ✏️ a number (an expression like 3 / 7 is fine)
### BEGIN SOLUTION
chance_8_64 = max(8, 64) / 256     # = 0.25; the overlap 8 * 64 / 256 = 2, divided by min(8, 64)
### END SOLUTION

# %%
_ = checks.check_random_baseline(chance_8_64, i=8, j=64, d=256)
assert chance_8_64 == random_similarity(8, 64, 256)

# %% [markdown]
# **A typical wrong answer** divides by the larger dimension instead of the smaller, and gets
# 8/256:

# %%
_ = checks.check_random_baseline(8 / 256, i=8, j=64, d=256)

# %% [markdown]
# ## Exercise 4 — amplification from r = 8 to r = 64
#
# (b) first, since (a) uses it. $\|U^\top W V^\top\|_F^2 = \operatorname{tr}(UU^\top W
# V^\top V W^\top)$. With $U$ (m × r) uniformly random and independent of $W$ and of $V$,
# $\mathbb{E}[UU^\top] = \frac{r}{m}I$ (§3.2's $\mathbb{E}[P]$), and likewise
# $\mathbb{E}[V^\top V] = \frac{r}{n}I$, so $\mathbb{E}\|U^\top W V^\top\|_F^2 =
# \frac{r}{m}\frac{r}{n}\|W\|_F^2$. Its root at r = 8, m = n = 256, $\|W\|_F = 16.0$:
# $8 \cdot 16.0/256 = 0.5$. It grows like r: 8 times more at r = 64.
#
# (a) The amplification factor divides $\|\Delta W\|_F$ by that projection, computed with
# ΔW's own top-r directions instead of random ones. 64 directions on each side hold more of
# $W$ than 8 do — random ones 8 times more, by (b). The numerator is not fixed by the task:
# it depends on the training (learning rate, α/r — 2 at r = 8, 0.25 at r = 64 — and the
# number of steps). In the lesson it grows from r = 8 to r = 64, but by much less than the
# denominator, so the factor goes **down**, as in the paper (21.5 at r = 4, "around 2" at
# r = 64). The lesson's two adapters, trained again with the same seeds and learning rates:

# %%
updates = {r: dict(lora_layers(run_variant(task, "lora", r=r, seed=seed,
                                           lr=best_lr(sweep, "rotate", f"LoRA r={r}")).model))
           ["2"].delta_weight().detach().numpy() for r, seed in [(8, 0), (64, 1)]}
rows = {r: compare_to_weight(W2, updates[r], r) for r in updates}
for r, row in rows.items():
    print(f"r = {r:2}: ||ΔW||_F = {row.update_norm:.0f}, ||U.T W V.T||_F = "
          f"{row.projection:.1f}, amplification {row.amplification:.1f}")
growth = {name: getattr(rows[64], name) / getattr(rows[8], name)
          for name in ("update_norm", "projection")}
assert growth["projection"] > 1.5 * growth["update_norm"]
assert rows[64].amplification < rows[8].amplification

# %% tags=["solution"]
# ✏️ (a) "up", "down" or "same"; (b) a number
### BEGIN SOLUTION
trend = "down"              # the part of W in ΔW's top-r directions grows faster than ||ΔW||
random_8 = 8 * 16.0 / 256   # r ||W||_F / sqrt(m n), with ||W||_F = 16.0 printed in the lesson
### END SOLUTION

# %%
amplification = {r: row.amplification for r, row in rows.items()}
_ = checks.check_amplification_prediction(trend, random_8, amplification, W2)
assert abs(random_8 - random_projection_rms(W2, 8)) < 0.01 * random_8

# %% [markdown]
# **A typical wrong answer** for (b) stops at the mean *square*, (r/m)(r/n)‖W‖²_F = 0.25:

# %%
_ = checks.check_amplification_prediction("down", (8 / 256) ** 2 * 16.0**2, amplification, W2)
