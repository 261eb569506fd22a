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
# Solutions to the four exercises of `01_rank_and_svd.ipynb`. Try them yourself first: the hints
# of the self-checks are designed to get you there. Each solution is followed by its check, which
# must print ✅.

# %%
import math

import numpy as np

from lora_lab import checks


# %% [markdown]
# ## Exercise 1 · A low-rank approximation, piece by piece
#
# The SVD sorts the pieces largest first, so the best rank-`k` approximation keeps pieces
# `0 .. k-1`. (The one-line version `(U[:, :k] * S[:k]) @ Vt[:k]` computes the same sum faster.)

# %%
def my_low_rank_approx(M, k):
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return sum(S[i] * np.outer(U[:, i], Vt[i]) for i in range(k))


assert checks.check_low_rank_approx(my_low_rank_approx)


# %% [markdown]
# ## Exercise 2 · The relative error
#
# Two routes, and the check accepts both.
#
# **Route 1: build and measure.** Build $M_k$ as in Exercise 1 and divide the norm of what is
# left over by the norm of $M$.

# %%
def my_relative_error(M, k):
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    M_k = (U[:, :k] * S[:k]) @ Vt[:k]
    return float(np.linalg.norm(M - M_k) / np.linalg.norm(M))


assert checks.check_relative_error(my_relative_error)


# %% [markdown]
# **Route 2: singular values only.** By the error formula of section 2.3 (the rank-1 pieces are
# orthonormal, so their squares add up), $\lVert M - M_k \rVert_F^2$ is the sum of the squared
# singular values thrown away, `s[k:]`, and $\lVert M \rVert_F^2$ is the sum of all of them. No
# $M_k$ is built, so this route is cheaper.

# %%
def my_relative_error(M, k):
    s = np.linalg.svd(M, compute_uv=False)
    return math.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))


assert checks.check_relative_error(my_relative_error)


# %% [markdown]
# ## Exercise 3 · Energy kept
#
# The energy of the first `k` pieces is the sum of their squared singular values, `s[:k] ** 2`
# (the slice `[:k]` holds indices `0 .. k-1`, i.e. exactly the first `k`). Dividing by the total,
# `np.sum(s**2)`, turns it into a fraction between 0 and 1. `float(...)` returns a plain Python
# number rather than a NumPy scalar; both would pass the check.

# %%
def my_energy_kept(s, k):
    return float(np.sum(s[:k] ** 2) / np.sum(s**2))


assert checks.check_energy_kept(my_energy_kept)


# %% [markdown]
# ## Exercise 4 · The largest rank that saves storage
#
# We need the largest whole `k` with `k * (m + n) < m * n`, i.e. strictly below $mn/(m+n)$. Both
# sides are whole numbers, so "$<mn$" is the same as "$\le mn - 1$", and the largest such `k` is
# `(m * n - 1) // (m + n)` (`//` rounds down). No floating point is involved, and a $4 \times 4$
# matrix (break-even exactly 2) correctly gets 1.

# %%
def my_largest_saving_rank(m, n):
    return (m * n - 1) // (m + n)


assert my_largest_saving_rank(4, 4) == 1 and my_largest_saving_rank(600, 512) == 276
assert checks.check_break_even(my_largest_saving_rank)
