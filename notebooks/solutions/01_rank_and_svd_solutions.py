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
# # 01 · Rank and the SVD: worked solutions
#
# Solutions to the four exercises of `01_rank_and_svd.ipynb`, with the reasoning behind each.
# Try them yourself first: the hints of the self-checks are written to get you there. Each
# solution is followed by its check, which must print ✅. Where an exercise uses data of the
# lesson (the matrix `M`, the photo), this notebook rebuilds it first with the same seed, so it
# runs on its own.

# %%
import numpy as np

import lora_lab as ll
from lora_lab import checks
from lora_lab.widgets import load_sample_image

# %% [markdown]
# ## Exercise 1 · Reading errors off the singular values
#
# The lesson's `M` and its singular values `S`, rebuilt:

# %%
rng = np.random.default_rng(21)  # section 2.1's generator: the same M as in the lesson
M = rng.normal(size=(6, 4))
S = np.linalg.svd(M, compute_uv=False)

# %% [markdown]
# `M` has $p = 4$ singular values. Rank 2 keeps $\sigma_1, \sigma_2$ and drops $\sigma_3, \sigma_4$.
# The spectral error is the largest value dropped, $\sigma_3$; the Frobenius error is the root of
# the sum of *all* dropped squares, $\sqrt{\sigma_3^2 + \sigma_4^2}$. NumPy counts from 0, so
# $\sigma_3$ is `S[2]` and $\sigma_4$ is `S[3]`.

# %% tags=["solution"]
# ✏️ use only entries of S (from section 2.1); no need to build M_2
### BEGIN SOLUTION
spectral_error_2 = S[2]  # sigma_3: the maths counts from 1, NumPy from 0
frobenius_error_2 = np.sqrt(S[2] ** 2 + S[3] ** 2)  # sigma_3 and sigma_4: all that rank 2 drops
### END SOLUTION

# %%
assert checks.check_rank_2_errors(spectral_error_2, frobenius_error_2, M)

# %% [markdown]
# For any rank $k$ the same reasoning gives `S[k]` and `np.sqrt(np.sum(S[k:] ** 2))`: the maths'
# $\sigma_{k+1}$ is NumPy's `S[k]`. The usual slip is `S[3]` for $\sigma_3$, which is $\sigma_4$.
# Building $M_2$ and measuring confirms both numbers:

# %%
M_2 = ll.low_rank_approx(M, 2)
assert np.isclose(np.linalg.norm(M - M_2, 2), spectral_error_2)  # spectral norm
assert np.isclose(np.linalg.norm(M - M_2), frobenius_error_2)  # Frobenius norm
print(f"measured: spectral {np.linalg.norm(M - M_2, 2):.4f}, "
      f"Frobenius {np.linalg.norm(M - M_2):.4f}")

# %% [markdown]
# ## Exercise 2 · Predict, then run
#
# The truncated SVD is the *best* rank-$k$ matrix: a lowest point. At a lowest point the ground
# is flat (the first-order change is zero in every direction), so a step of size $\varepsilon$
# costs something proportional to $\varepsilon^2$. A ten times smaller step therefore costs a
# hundred times less. (The reverse does not hold: flat ground is not always a lowest point. The
# lesson shows a saddle, keeping $\sigma_6$ instead of $\sigma_5$, that is just as flat; that the
# truncated SVD is the lowest point is what Eckart–Young proves.)

# %% tags=["solution"]
# ✏️ one of 1, 10 or 100
### BEGIN SOLUTION
shrink_factor = 100  # at a minimum the error grows like the square of the step
### END SOLUTION

# %% [markdown]
# The experiment again, on a different matrix (a random $8 \times 6$ one, at rank 2), and once
# more from a point that is *not* the optimum: random rank-2 factors. There the ground slopes,
# and a ten times smaller step changes the error about ten times less.

# %%
def gap_ratio(M, B, A, rng):
    """How many times the error change shrinks when a nudge of B and A shrinks 10 times."""
    dB, dA = rng.normal(size=B.shape), rng.normal(size=A.shape)  # one fixed direction
    base = np.linalg.norm(M - B @ A)
    change = lambda size: np.linalg.norm(M - (B + size * dB) @ (A + size * dA)) - base
    return change(1e-3) / change(1e-4)


rng = np.random.default_rng(7)
M_8x6 = rng.normal(size=(8, 6))
U_2, S_2, Vt_2 = ll.truncated_svd(M_8x6, 2)
at_the_svd = gap_ratio(M_8x6, U_2 * S_2, Vt_2, rng)
on_a_slope = gap_ratio(M_8x6, rng.normal(size=(8, 2)), rng.normal(size=(2, 6)), rng)
print(f"at the truncated SVD: {at_the_svd:.0f} times smaller; "
      f"at random factors: {on_a_slope:.0f} times smaller")
assert 90 < at_the_svd < 110 and 9 < on_a_slope < 11

# %%
assert checks.check_shrink_prediction(shrink_factor, at_the_svd)

# %% [markdown]
# ## Exercise 3 · How much rank for 99%?
#
# The photo's energy curve, rebuilt:

# %%
photo = load_sample_image()
s = ll.singular_values(photo)
energy = ll.energy_curve(s)  # energy[k - 1] is E(k)

# %% [markdown]
# `energy >= 0.99` is an array of `False ... False True ... True` (the curve only grows), and
# `np.argmax` returns the position of its first `True` (the largest value, found first). That
# position is counted from 0 while ranks are counted from 1, so the rank is the position + 1.

# %% tags=["solution"]
# ✏️ energy[k - 1] is E(k); you may use np.argmax, a loop, or np.searchsorted
### BEGIN SOLUTION
k99 = int(np.argmax(energy >= 0.99)) + 1  # first position with E >= 99%, plus 1
### END SOLUTION

# %%
assert checks.check_energy_rank(k99, s)

# %% [markdown]
# Two other routes give the same rank: `np.searchsorted` finds where 0.99 would be inserted into
# the sorted curve (again a position counted from 0), and a plain loop counts ranks from 1.

# %%
by_loop = next(k for k in range(1, len(s) + 1) if energy[k - 1] >= 0.99)
assert k99 == np.searchsorted(energy, 0.99) + 1 == by_loop
assert energy[k99 - 1] >= 0.99 > energy[k99 - 2]  # k99 is enough, one less is not

# %% [markdown]
# ## Exercise 4 · From energy to relative error
#
# The kept and the dropped pieces are orthogonal, so their squared lengths add up:
# $\lVert M_k \rVert_F^2 + \lVert M - M_k \rVert_F^2 = \lVert M \rVert_F^2$. Divided by
# $\lVert M \rVert_F^2$, that reads $E(k) + \text{relative error}^2 = 1$, so the relative error
# is $\sqrt{1 - E(k)}$.

# %% tags=["solution"]
def my_relative_error(s, k):
    """||M - M_k||_F / ||M||_F for the best rank-k approximation M_k of a matrix M with
    singular values s (a 1-D array, largest first), computed from the energy E(k)."""
    # ✏️ your code here: first E(k), then the relative error from it
    ### BEGIN SOLUTION
    energy_kept = np.sum(s[:k] ** 2) / np.sum(s**2)  # E(k): s[:k] are the first k
    return np.sqrt(max(1 - energy_kept, 0))  # max: a guard, see below
    ### END SOLUTION


# %%
assert checks.check_relative_error(my_relative_error)

# %% [markdown]
# With this formula, at $k = p$ the numerator and the denominator are the same sum of the same
# numbers, so $E(p)$ is exactly 1 and $1 - E(p)$ exactly 0. The `max(..., 0)` guards the other
# way of getting $E(k)$: reading it off a cumulative sum (`energy[k - 1]`, `np.cumsum`), which
# adds the squares in another order than `np.sum`. Then rounding can leave $1 - E(p)$ at
# $-2 \cdot 10^{-16}$, whose square root is NaN. Both, on a small spectrum:

# %%
s_small = np.array([0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.3, 0.1, 0.1])
from_cumsum = (np.cumsum(s_small**2) / np.sum(s_small**2))[-1]  # E(p) from a cumulative sum
from_sum = np.sum(s_small[:10] ** 2) / np.sum(s_small**2)  # E(p) as the solution computes it
assert from_sum == 1 and 1 - from_cumsum < 0  # the cumulative sum overshoots 1
with np.errstate(invalid="ignore"):  # the square root of a negative number: NaN, no warning
    assert np.isnan(np.sqrt(1 - from_cumsum))
assert my_relative_error(s_small, 10) == 0 and my_relative_error(s, len(s)) == 0
print(f"1 - E(p): {1 - from_sum:.1e} from the sum, {1 - from_cumsum:.1e} from the cumulative sum")

# %% [markdown]
# Adding up the dropped squares directly, `np.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))`, avoids
# the subtraction altogether and agrees:

# %%
for k in range(1, len(s) + 1):
    from_the_tail = np.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))
    assert np.isclose(my_relative_error(s, k), from_the_tail, rtol=1e-6, atol=1e-7)
print(f"checked k = 1 .. {len(s)} on the photo's singular values")
