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
# # 01 · Rank and the SVD
#
# How much of a matrix do you really need to keep? This notebook answers that question from first
# principles, and the answer is the foundation of **LoRA** (*Low-Rank Adaptation*), the method this
# course is about. LoRA fine-tunes a large model by learning a correction to its weight matrices
# that has **low rank**. Before we can talk about fine-tuning we need to understand what "rank" is,
# how to find the best low-rank stand-in for a matrix, and what it costs or saves. That is the job
# of this notebook; no neural networks yet.
#
# **Learning objectives.** By the end you will be able to
#
# 1. build a rank-1 matrix as an outer product, and any matrix as a sum of rank-1 pieces;
# 2. measure rank, and explain why a little random noise makes a matrix "full rank";
# 3. compute the singular value decomposition (SVD) and truncate it to rank $k$;
# 4. state the **Eckart–Young theorem** (in the Frobenius norm, the truncated SVD is the best
#    rank-$k$ approximation, with error $\sqrt{\sigma_{k+1}^2 + \sigma_{k+2}^2 + \dots}$),
#    check it against other candidates, and see why a small step away from it costs so little;
# 5. compress a real photograph, read its singular-value spectrum and energy curve, relate the
#    energy kept to the relative error, and find the rank below which low rank saves storage:
#    $k < mn/(m+n)$;
# 6. explain the bet LoRA makes: that the *update* to a weight matrix has a fast-decaying spectrum.
#
# **How to work through it.** Run the cells from top to bottom. The mathematical claims, and the
# numbers the text quotes from its experiments, are checked on examples by `assert`s in the cells
# next to them: an example is not a proof, but a wrong claim would stop the cell with an error.
# (What a picture shows is left to your eye.) We always derive an idea with plain
# NumPy first, then compare with the tested version in the companion package `lora_lab`.
#
# ## Exercises
#
# Four short exercises sit right after the ideas they practise, each marked ✏️:
#
# 1. reading errors off the singular values: the errors of a rank-2 approximation (§2.3);
# 2. predict, then run: how much worse does a slightly nudged SVD get (§2.4)?
# 3. choose the smallest rank that keeps 99% of a photo's energy (§3.1);
# 4. derive the relative error from the energy, and write it as a function (§3.1).
#
# In each, replace the `...` (or the line `raise NotImplementedError(...)`) with your answer and
# run the cell; the cell after it checks your answer and, if something is off, gives a hint that
# names the likely mistake. Until you have answered, the check says "not yet"; that is expected.
# Use NumPy only, not `lora_lab`, which would be cheating a little. Worked solutions are in
# `solutions/01_rank_and_svd_solutions.ipynb`.

# %% [markdown]
# First the tools. `%matplotlib inline` makes figures appear below the cell that shows them.
# Random numbers come from NumPy's generator `np.random.default_rng(seed)`. Each section that needs
# them makes a fresh one with its own seed, so every number is reproducible, and re-running a
# cell does not shift the numbers of the cells after it.

# %%
# %matplotlib inline
import numpy as np
from IPython.display import display

import lora_lab as ll
from lora_lab import checks, plots
from lora_lab.widgets import RankSlider, load_sample_image

# %% [markdown]
# ## 1 · Rank from the ground up
#
# ### 1.1 The simplest matrices: outer products
#
# Take a column vector $u$ with $m$ entries and a row vector $v^\top$ with $n$ entries. Their
# **outer product** $u v^\top$ is the $m \times n$ matrix whose entry $(i, j)$ is $u_i v_j$.
# Every row of it is a multiple of the same row $v^\top$, and every column is a multiple of the
# same column $u$. Unless $u$ or $v$ is zero (which gives the zero matrix, of rank 0), it is the
# simplest kind of matrix there is: a **rank-1** matrix.

# %%
u = np.array([1, 2, 3])
v = np.array([2, 0, -1, 1])
R1 = np.outer(u, v)  # the same as u[:, None] * v[None, :]
print(R1)

for i in range(len(u)):
    assert np.array_equal(R1[i], u[i] * v)  # row i is u_i times v
for j in range(len(v)):
    assert np.array_equal(R1[:, j], v[j] * u)  # column j is v_j times u
print(f"{R1.size} entries, but only {u.size + v.size} numbers are needed to describe them")

# %% [markdown]
# That last line is the whole economic idea of this course in miniature. An $m \times n$ rank-1
# matrix has $mn$ entries but is fully described by $m + n$ numbers. For a $4096 \times 4096$ matrix
# that is 8,192 numbers instead of 16,777,216.
#
# ### 1.2 Every matrix is a sum of rank-1 pieces
#
# Rank-1 matrices are rather special, but adding a few of them together gives something richer.
# Here are two outer products and their sum, drawn as heat maps: red is positive, blue negative,
# white zero, on one colour scale shared by the three panels (the colour bar on the right). Each
# piece is a **plaid**: every row is a multiple of one row pattern and every column a multiple of
# one column pattern. The sum is no longer a plaid.

# %%
piece_1 = np.outer([1, 2, 0, -1, 1], [1, 1, 0, -1, 2, 1])
piece_2 = np.outer([0, 1, 2, 1, -2], [2, -1, 1, 0, 0, 1])
M_sum = piece_1 + piece_2

fig = plots.outer_products_figure([piece_1, piece_2], titles=["piece 1", "piece 2"])
display(fig)
assert np.linalg.matrix_rank(piece_1) == 1 and np.linalg.matrix_rank(piece_2) == 1
assert np.linalg.matrix_rank(M_sum) == 2  # two pieces, and no fewer will do
print(f"M_sum is {M_sum.shape[0]} x {M_sum.shape[1]} and has rank "
      f"{np.linalg.matrix_rank(M_sum)}")

# %% [markdown]
# Can *every* matrix be written as a sum of rank-1 pieces? Yes, and there is a boringly simple
# way to do it: column by column. If $e_j$ is the $j$-th unit vector (a 1 in place $j$, zeros
# elsewhere), then $M_{:,j}\, e_j^\top$ is a matrix that holds column $j$ of $M$ and zeros
# everywhere else. Adding these up over all $n$ columns gives back $M$. The same works row by
# row: with $e_i$ now a unit vector of length $m$, $e_i\, M_{i,:}$ holds row $i$ of $M$ and zeros
# elsewhere, and the $m$ row pieces add up to $M$ too:
#
# $$M = \sum_{j=1}^{n} M_{:,j}\, e_j^\top = \sum_{i=1}^{m} e_i\, M_{i,:} .$$
#
# Let's check both on a random $4 \times 3$ matrix of whole numbers.

# %%
rng = np.random.default_rng(12)  # section 1.2's own generator
ints = rng.integers(-5, 6, size=(4, 3))
rows, cols = ints.shape
by_columns = sum(np.outer(ints[:, j], np.eye(cols)[j]) for j in range(cols))
assert np.array_equal(by_columns, ints)

by_rows = sum(np.outer(np.eye(rows)[i], ints[i]) for i in range(rows))
assert np.array_equal(by_rows, ints)
print(f"a {rows} x {cols} matrix rebuilt from {cols} column pieces and from {rows} row pieces")

# %% [markdown]
# This gives us the definition we will use throughout:
#
# > The **rank** of a matrix is the smallest number of rank-1 pieces that add up to it.
#
# The column-by-column and row-by-row constructions show that the rank of an $m \times n$ matrix is
# at most $\min(m, n)$. A matrix with that maximal rank is called **full rank**. The matrix `M_sum`
# above needs only 2 pieces even though it is $5 \times 6$: it has **low rank**.
#
# Writing $r$ pieces $u_i v_i^\top$ side by side gives a compact form. Put the $u_i$ as the columns
# of a matrix $B$ ($m \times r$) and the $v_i^\top$ as the rows of a matrix $A$ ($r \times n$). Then
#
# $$\sum_{i=1}^{r} u_i v_i^\top = B A .$$
#
# Keep an eye on this product $BA$: it is exactly the shape of a LoRA update.

# %%
B = np.column_stack([[1, 2, 0, -1, 1], [0, 1, 2, 1, -2]])  # (5, 2): the u's as columns
A = np.vstack([[1, 1, 0, -1, 2, 1], [2, -1, 1, 0, 0, 1]])  # (2, 6): the v's as rows
assert np.array_equal(B @ A, M_sum)
print(f"B {B.shape} @ A {A.shape} = M_sum {M_sum.shape}: {B.size + A.size} numbers "
      f"instead of {M_sum.size}")

# %% [markdown]
# ### 1.3 Measuring rank
#
# How do we find the rank of a matrix we are handed, without knowing how it was built? NumPy's
# `np.linalg.matrix_rank` does it, and so does `lora_lab.matrix_rank` (section 1.4 explains how
# both work inside). Let's build matrices of known rank $r$ as $B A$ with random $B$ ($m \times r$)
# and $A$ ($r \times n$), and check that both functions recover $r$.

# %%
rng = np.random.default_rng(13)  # section 1.3's own generator
for m, n, r in [(6, 4, 1), (6, 4, 3), (5, 9, 2), (30, 20, 7), (8, 8, 8)]:
    M_r = rng.normal(size=(m, r)) @ rng.normal(size=(r, n))
    ours, numpys = ll.matrix_rank(M_r), np.linalg.matrix_rank(M_r)
    assert ours == numpys == r
    print(f"{m:>2} x {n:<2} matrix = B ({m} x {r}) @ A ({r} x {n}): rank {ours}")

# %% [markdown]
# **A common confusion: low rank is not the same as "mostly zeros".** A matrix with many zeros is
# *sparse*; that says nothing about its rank. The identity matrix is almost all zeros but has full
# rank, while a matrix of all ones has no zeros at all but rank 1.

# %%
eye, ones = np.eye(100), np.ones((100, 100))
print(f"identity: {np.count_nonzero(eye):>6,} non-zero entries, rank {ll.matrix_rank(eye)}")
print(f"ones:     {np.count_nonzero(ones):>6,} non-zero entries, rank {ll.matrix_rank(ones)}")
assert ll.matrix_rank(eye) == 100 and ll.matrix_rank(ones) == 1

# %% [markdown]
# ### 1.4 What noise does to rank
#
# Real data is never exactly low rank. Let's take an $8 \times 6$ matrix of rank 3 and add a tiny
# bit of random noise, about a millionth of the size of its entries. The matrix hardly changes,
# but its rank jumps to the maximum, 6. To see why, we peek ahead at the **singular values**, a
# list of $\min(m, n)$ non-negative numbers, largest first, that section 2 introduces properly.
# For now: the rank is the number of singular values that are not zero.

# %%
rng = np.random.default_rng(14)  # section 1.4's own generator
M3 = rng.normal(size=(8, 3)) @ rng.normal(size=(3, 6))
noisy = M3 + 1e-6 * rng.normal(size=M3.shape)
show = lambda x: f"{x:.1e}" if x > 1e-12 else "<1e-12"  # tiny values differ by machine
for name, X in [("rank-3 matrix", M3), ("with noise   ", noisy)]:
    s = ll.singular_values(X)
    print(f"{name}: rank {ll.matrix_rank(X)}, singular values {', '.join(map(show, s))}")
assert ll.matrix_rank(M3) == 3 and ll.matrix_rank(noisy) == 6
assert np.max(np.abs(noisy - M3)) < 1e-5
assert 1e-7 < np.median(np.abs(noisy - M3)) / np.median(np.abs(M3)) < 1e-5  # about a millionth
s_exact, s_noisy = ll.singular_values(M3), ll.singular_values(noisy)
assert np.all(s_exact[:3] >= 1.7) and np.all(s_exact[3:] < 1e-12)  # three >= 1.7, three zeros
assert np.all((1e-6 < s_noisy[3:]) & (s_noisy[3:] < 1e-5))  # noise: a few times 1e-6

# %% [markdown]
# Look at the numbers. Without noise, three singular values are 1.7 or more and the other three
# are below $10^{-12}$: zero, up to rounding error. With noise, the last three become a few times
# $10^{-6}$. They are tiny, but they are far above rounding error, so the noisy matrix really is
# of rank 6.
#
# This is why rank in floating point is always **numerical rank**: the number of singular values
# above a tolerance. The default tolerance (`σ_max · max(m, n) · machine epsilon`, the same in
# NumPy and `lora_lab`) only forgives rounding error. A larger tolerance can recover the
# structure underneath, but knowing the size of the noise's entries is not enough: they have
# size $10^{-6}$, yet `tol = 1e-6` still counts 6. Adding a matrix $E$ moves each singular value
# by at most $E$'s *largest singular value* $\lVert E \rVert_2$ (Weyl's inequality), so a
# tolerance of at least $\lVert E \rVert_2$, and well below the smallest singular value we want
# to keep, is sure to recover the rank. For random noise with entries of size $\varepsilon$,
# $\lVert E \rVert_2$ is typically at most about $\varepsilon(\sqrt{m} + \sqrt{n})$, here
# $5.3 \cdot 10^{-6}$; the noise we added has $\lVert E \rVert_2 = 3.5 \cdot 10^{-6}$.

# %%
noise_bound = 1e-6 * (np.sqrt(8) + np.sqrt(6))  # entry size * (sqrt(m) + sqrt(n))
for tol in [None, 1e-8, 1e-6, noise_bound, 1e-4, 1e-1]:
    ours = ll.matrix_rank(noisy, tol=tol)
    assert ours == np.linalg.matrix_rank(noisy, tol=tol)
    print(f"tol = {'None' if tol is None else f'{tol:.1e}':>7}: rank {ours}")
assert ll.matrix_rank(noisy, tol=1e-6) == 6  # the entry size is not enough
assert ll.matrix_rank(noisy, tol=noise_bound) == ll.matrix_rank(noisy, tol=1e-4) == 3
noise_norm = ll.singular_values(noisy - M3)[0]  # ||E||_2, the noise's largest singular value
assert 3.4e-6 < noise_norm < 3.6e-6 and noise_norm < noise_bound
assert ll.matrix_rank(noisy, tol=noise_norm) == 3
assert np.all(np.abs(s_noisy - s_exact) <= noise_norm)  # Weyl: no singular value moved further

# %% [markdown]
# So the honest question is not "what is the rank?" but "**how well can a matrix of low rank stand
# in for this one?**" The noisy matrix is full rank, yet a rank-3 matrix (the original `M3`) is
# within $10^{-5}$ of it everywhere. The singular value decomposition answers this question
# exactly.

# %% [markdown]
# ## 2 · The SVD and the Eckart–Young theorem
#
# ### 2.1 The singular value decomposition
#
# Every real $m \times n$ matrix $M$ can be written as
#
# $$M = U \Sigma V^\top = \sum_{i=1}^{p} \sigma_i\, u_i v_i^\top, \qquad p = \min(m, n),$$
#
# where
#
# * the columns $u_i$ of $U$ ($m \times p$) are orthonormal: unit length, at right angles to each
#   other, so $U^\top U = I$;
# * the columns $v_i$ of $V$ ($n \times p$) are orthonormal too, so $V^\top V = I$;
# * $\Sigma$ is diagonal, holding the **singular values** $\sigma_1 \ge \sigma_2 \ge \dots \ge
#   \sigma_p \ge 0$, sorted largest first.
#
# Read the right-hand side as a sum of rank-1 pieces again, but now a very special one: the pieces
# are sorted by importance, $\sigma_i$ says how strong piece $i$ is, and the directions are
# mutually orthogonal (the $u_i$ among themselves, and the $v_i$ among themselves). NumPy computes
# it with `np.linalg.svd`. It returns $V^\top$ (called `Vt`) rather than $V$, and with
# `full_matrices=False` it returns the compact shapes above.
#
# One thing to keep straight: mathematics numbers the singular values from 1 ($\sigma_1$ is the
# largest), while NumPy numbers array entries from 0. So $\sigma_1$ is `S[0]`, and $u_1$ and
# $v_1$ are `U[:, 0]` and `Vt[0]`.

# %%
rng = np.random.default_rng(21)  # section 2.1's own generator
M = rng.normal(size=(6, 4))
U, S, Vt = np.linalg.svd(M, full_matrices=False)
print(f"U {U.shape}, S {S.shape}, Vt {Vt.shape}; singular values "
      + ", ".join(f"{x:.3f}" for x in S))

np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-12)  # orthonormal columns
np.testing.assert_allclose(Vt @ Vt.T, np.eye(4), atol=1e-12)  # orthonormal rows of Vt
assert np.all(S[:-1] >= S[1:]) and np.all(S >= 0)  # sorted, non-negative
np.testing.assert_allclose(U @ np.diag(S) @ Vt, M, atol=1e-12)  # it rebuilds M
pieces = [S[i] * np.outer(U[:, i], Vt[i]) for i in range(len(S))]
np.testing.assert_allclose(sum(pieces), M, atol=1e-12)  # ... as a sum of rank-1 pieces

# %% [markdown]
# ### 2.2 Truncating: keep the $k$ strongest pieces
#
# If the pieces are sorted by strength, the obvious way to approximate $M$ with rank $k$ is to keep
# the first $k$ of them and drop the rest:
#
# $$M_k = \sum_{i=1}^{k} \sigma_i\, u_i v_i^\top = U_k \Sigma_k V_k^\top .$$
#
# In NumPy there is a neat trick for $U_k \Sigma_k$: multiplying column $i$ of `U[:, :k]` by `S[i]`
# is what broadcasting does in `U[:, :k] * S[:k]`, so we never build the diagonal matrix. This is
# the **truncated SVD**. We compute it by hand, then check it against `lora_lab.low_rank_approx`.

# %%
k = 2
M_k = (U[:, :k] * S[:k]) @ Vt[:k]  # (6, k) * (k,) -> (6, k), then @ (k, 4)

np.testing.assert_allclose(M_k, U[:, :k] @ np.diag(S[:k]) @ Vt[:k], atol=1e-12)
np.testing.assert_allclose(M_k, sum(pieces[:k]), atol=1e-12)
assert np.linalg.matrix_rank(M_k) == k

np.testing.assert_allclose(M_k, ll.low_rank_approx(M, k), atol=1e-12)
U_k, S_k, Vt_k = ll.truncated_svd(M, k)
np.testing.assert_allclose((U_k * S_k) @ Vt_k, M_k, atol=1e-12)
print(f"rank-{k} approximation of a {M.shape[0]} x {M.shape[1]} matrix: "
      f"agrees with ll.low_rank_approx")

# %% [markdown]
# ### 2.3 How large is the error?
#
# What do we lose by truncating? The part we dropped:
#
# $$M - M_k = \sum_{i=k+1}^{p} \sigma_i\, u_i v_i^\top .$$
#
# That is itself an SVD (orthonormal directions, sorted strengths), so its size can be read off
# its singular values $\sigma_{k+1}, \dots, \sigma_p$. Two standard ways to measure a matrix:
#
# * The **Frobenius norm** $\lVert X \rVert_F = \sqrt{\sum_{ij} X_{ij}^2}$, the ordinary length of
#   the matrix seen as one long vector. It comes with an entry-wise inner product,
#   $\langle X, Y \rangle = \sum_{ij} X_{ij} Y_{ij}$, and for it the rank-1 matrices $u_i v_i^\top$
#   are orthonormal: $\langle u_i v_i^\top, u_j v_j^\top \rangle = (u_i^\top u_j)(v_i^\top v_j)$,
#   which is 1 if $i = j$ and 0 otherwise. So, as in Pythagoras' theorem, the squared lengths of
#   the pieces add up: $\lVert X \rVert_F^2 = \sum_i \sigma_i^2$, and
#   $$\lVert M - M_k \rVert_F = \sqrt{\sigma_{k+1}^2 + \sigma_{k+2}^2 + \dots + \sigma_p^2}.$$
# * The **spectral norm** $\lVert X \rVert_2$, the most $X$ can stretch a unit vector, which is its
#   largest singular value. So $\lVert M - M_k \rVert_2 = \sigma_{k+1}$.
#
# First the orthonormality of the pieces, on the $6 \times 4$ matrix `M` of section 2.1:

# %%
# each u_i v_i^T, flattened into one long vector (a row of `flat`)
flat = np.array([np.outer(U[:, i], Vt[i]).ravel() for i in range(len(S))])
np.testing.assert_allclose(flat @ flat.T, np.eye(len(S)), atol=1e-12)  # orthonormal
assert np.isclose(np.linalg.norm(M, "fro") ** 2, np.sum(S**2))  # so the squares add up
print(f"||M||_F^2 = {np.linalg.norm(M, 'fro') ** 2:.4f} = sum of sigma_i^2 = {np.sum(S**2):.4f}")

# %% [markdown]
# ### ✏️ Exercise 1 — reading errors off the singular values
#
# Apply the two error formulas before we check them in code. `M` is the $6 \times 4$ matrix of
# section 2.1 and `S` its singular values, largest first. For the best rank-2 approximation
# $M_2$ of `M`, set
#
# * `spectral_error_2` to $\lVert M - M_2 \rVert_2$, and
# * `frobenius_error_2` to $\lVert M - M_2 \rVert_F$,
#
# using only entries of `S` (don't build $M_2$). Mind the numbering (section 2.1).

# %% tags=["exercise"]
# ✏️ use only entries of S (from section 2.1); no need to build M_2
spectral_error_2 = ...  # ✏️ your answer
frobenius_error_2 = ...  # ✏️ your answer

# %%
_ = checks.check_rank_2_errors(spectral_error_2, frobenius_error_2, M)

# %% [markdown]
# Now both error formulas, checked for every $k$ on a larger matrix, `M_test` (at $k = p$ nothing
# is dropped and both errors are 0). `s_test[k:]` is the tail $\sigma_{k+1}, \dots, \sigma_p$:
# NumPy's index $k$ is the maths' $\sigma_{k+1}$.

# %%
rng = np.random.default_rng(23)  # section 2.3's own generator
M_test = rng.normal(size=(40, 30))
s_test = ll.singular_values(M_test)
for k in range(1, len(s_test) + 1):
    dropped = M_test - ll.low_rank_approx(M_test, k)  # the truncated SVD of section 2.2
    tail = s_test[k:]  # the singular values we threw away
    fro, spec = np.linalg.norm(dropped, "fro"), np.linalg.norm(dropped, 2)
    assert np.isclose(fro, np.sqrt(np.sum(tail**2)), rtol=1e-10, atol=1e-10)
    assert np.isclose(spec, tail[0] if tail.size else 0.0, rtol=1e-10, atol=1e-10)
    assert np.isclose(fro, ll.truncation_error(s_test, k), rtol=1e-10, atol=1e-10)
    assert np.isclose(spec, ll.truncation_error(s_test, k, norm="spectral"), rtol=1e-10,
                      atol=1e-10)
print(f"checked k = 1 .. {len(s_test)}: Frobenius error = sqrt(sum of dropped sigma^2), "
      f"spectral error = first dropped sigma")

# %% [markdown]
# The error is known **before** we build the approximation: it only depends on the singular values
# we drop. To compare matrices of different sizes we usually report the **relative error**
# $\lVert M - M_k \rVert_F / \lVert M \rVert_F$, a number between 0 (perfect) and 1 (we kept
# nothing). Section 3.1 links it to the "energy" a rank-$k$ approximation keeps.
#
# ### 2.4 Eckart–Young: nothing of rank $k$ does better
#
# Truncating the SVD is an obvious idea. The **Eckart–Young theorem** says it is also the *best*
# idea. It carries the names of Carl Eckart and Gale Young, who proved it for matrices in 1936,
# but Erhard Schmidt had already proved the Frobenius-norm statement in 1907, for integral
# operators (the continuous cousins of matrices); Leon Mirsky extended it in 1960 to the spectral
# norm and every other unitarily invariant norm. So you will also meet it as the
# Schmidt–Mirsky or Eckart–Young–Mirsky theorem:
#
# > For every matrix $X$ of rank at most $k$:
# > $\;\lVert M - X \rVert_F \ge \lVert M - M_k \rVert_F\;$ and
# > $\;\lVert M - X \rVert_2 \ge \lVert M - M_k \rVert_2 = \sigma_{k+1}$.
#
# We won't prove it here; instead we try hard to beat it. We need a matrix whose spectrum decays
# (section 3 meets a real one), say with singular values $0.8^0, 0.8^1, 0.8^2, \dots$ The easy
# way to get one is an **SVD assembled backwards**: pick orthonormal $U$ and $V$, pick the
# singular values, and multiply $U \Sigma V^\top$. For random orthonormal columns we use
# `np.linalg.qr(G)`, which factors any matrix $G$ as $QR$ with $Q$ having orthonormal columns;
# we keep $Q$ and ignore $R$.
#
# Most challengers work in two steps. First they choose $k$ directions (vectors of length $m$).
# Then they take the best matrix whose columns are combinations of those directions, that is, lie
# in their **span**. That best matrix is the **projection** of $M$ onto the span: each column of
# $M$ is replaced by its closest point in the span (least squares). With an orthonormal basis $Q$
# ($m \times k$) of the directions, the projection is simply $Q Q^\top M$. Three families compete:
#
# 1. **Random directions**: $k$ random vectors.
# 2. **Columns of $M$**: $k$ actual columns of $M$ as the directions, namely the $k$ longest
#    columns, and also many random choices of $k$ columns.
# 3. **Nudged SVD**: no projection here. Start from the truncated SVD and move its factors slightly
#    in random directions. The result still has rank $k$. Can a small step improve it?

# %%
rng = np.random.default_rng(24)  # section 2.4's own generator
m, n = 40, 30
U_decay, _ = np.linalg.qr(rng.normal(size=(m, n)))  # Q of a QR: orthonormal columns
V_decay, _ = np.linalg.qr(rng.normal(size=(n, n)))
sigmas = 0.8 ** np.arange(n)  # 1, 0.8, 0.64, ...
M_decay = (U_decay * sigmas) @ V_decay.T  # an SVD assembled backwards
np.testing.assert_allclose(ll.singular_values(M_decay), sigmas, atol=1e-12)


# %% [markdown]
# Two helpers: `best_fit` projects `M` onto the span of some directions, and `errors` measures a
# candidate `X` in both norms.

# %%
def best_fit(M, directions):
    # Project M onto the span of `directions`: Q Q^T M, with Q an orthonormal basis of it.
    Q, _ = np.linalg.qr(directions)
    return Q @ (Q.T @ M)


def errors(M, X):
    return ll.approximation_error(M, X), ll.approximation_error(M, X, norm="spectral")


# %% [markdown]
# `challengers(M, k, rng)` returns a list of `(family, candidate)` pairs, each candidate of rank
# at most $k$: one "k longest columns", then 50 of each random family.

# %%
def challengers(M, k, rng, tries=50):
    longest = np.argsort(-np.linalg.norm(M, axis=0))[:k]  # indices of the k longest columns
    found = [("k longest columns", best_fit(M, M[:, longest]))]
    U_k, S_k, Vt_k = ll.truncated_svd(M, k)
    for _ in range(tries):
        columns = rng.choice(M.shape[1], size=k, replace=False)
        nudge_U, nudge_V = 1e-3 * rng.normal(size=U_k.shape), 1e-3 * rng.normal(size=Vt_k.shape)
        found += [("random directions", best_fit(M, rng.normal(size=(M.shape[0], k)))),
                  ("random columns", best_fit(M, M[:, columns])),
                  ("nudged SVD", ((U_k + nudge_U) * S_k) @ (Vt_k + nudge_V))]
    return found


# %% [markdown]
# Now the contest, at every rank from 1 to 10. Each challenger must do no better than the
# truncated SVD in both norms. For the figure we also record, for each family and rank, the
# lowest relative error any of its challengers reached.

# %%
rng = np.random.default_rng(0)  # fresh: re-running this cell gives the same challengers
ranks = list(range(1, 11))
families = ["truncated SVD", "k longest columns", "random directions", "random columns",
            "nudged SVD"]
best = {family: [np.inf] * len(ranks) for family in families}  # lowest relative error
norm_decay, count = np.linalg.norm(M_decay), 0
for k in ranks:
    svd_fro, svd_spec = errors(M_decay, ll.low_rank_approx(M_decay, k))
    assert np.isclose(svd_spec, 0.8**k)  # sigma_{k+1}, counting from sigma_1 = 0.8**0
    best["truncated SVD"][k - 1] = svd_fro / norm_decay
    for family, X in challengers(M_decay, k, rng):
        assert np.linalg.matrix_rank(X) <= k
        fro, spec = errors(M_decay, X)
        assert fro >= svd_fro - 1e-12 and spec >= svd_spec - 1e-12, (family, k)
        best[family][k - 1] = min(best[family][k - 1], fro / norm_decay)
        count += 1
assert count == 1510
print(f"{count:,} challengers, none beat the SVD")

# %% [markdown]
# Not one of the 1,510 challengers got closer than the truncated SVD, in either norm. The left
# panel of the figure shows, for each family and rank, the lowest error its challengers reached,
# next to the SVD's (thick black). The nudged SVD's curve lies right on top of the SVD's: the gap
# is far too small to see on that scale. So the right panel shows the gaps themselves,
# error minus SVD error, on a logarithmic axis; the cell prints their range over the ranks.

# %%
fig = plots.eckart_young_figure(ranks, best)
display(fig)
svd_errors = np.array(best["truncated SVD"])
gaps = {family: np.array(best[family]) - svd_errors for family in families[1:]}
for family, gap in gaps.items():
    assert np.all(gap > 0)  # strictly worse, at every rank
    print(f"{family:>18}: worse by {gap.min():.1e} to {gap.max():.1e}; at rank 5 "
          f"{best[family][4]:.6f} (SVD: {svd_errors[4]:.6f})")
assert np.all(gaps["k longest columns"] < 0.2) and np.all(gaps["random columns"] < 0.2)
assert np.all(gaps["random directions"] > 0.1) and np.all(gaps["nudged SVD"] < 1e-3)
assert 5e-6 < gaps["nudged SVD"].min() < 2e-5 and 2e-4 < gaps["nudged SVD"].max() < 4e-4

# %% [markdown]
# Here, columns of $M$ made fair directions: they stayed within 0.2 of the SVD. Random
# directions were hopeless, worse by more than 0.1 at every rank. And the nudged SVD was worse by
# less than $10^{-3}$, but worse at every rank: a small step away from the optimum, in any
# direction we tried, only made things worse.
#
# ### ✏️ Exercise 2 — predict, then run
#
# The nudge moved every entry of the factors by a random amount of typical size $10^{-3}$, yet the
# best nudged candidates came within about $10^{-5}$ to $3 \cdot 10^{-4}$ of the SVD's relative
# error (the last line printed above). The cell after your prediction repeats the nudge at rank 5
# twice, along one fixed random direction: once with size $10^{-3}$ and once with size
# $10^{-4}$, ten times smaller.
#
# **Predict before you run it:** how many times smaller will the gap (error of the nudged SVD
# minus error of the SVD) get: 1 (no change), 10, or 100? Set `shrink_factor` to your answer.

# %% tags=["exercise"]
# ✏️ one of 1, 10 or 100
shrink_factor = ...  # ✏️ your answer

# %%
rng = np.random.default_rng(25)  # the nudge's own generator
U_5, S_5, Vt_5 = ll.truncated_svd(M_decay, 5)
svd_error_5 = ll.approximation_error(M_decay, ll.low_rank_approx(M_decay, 5))
nudge_u, nudge_vt = rng.normal(size=U_5.shape), rng.normal(size=Vt_5.shape)  # fixed


def nudged_gap(size):
    # how much worse the SVD's factors get when nudged by `size` along the fixed direction
    X = ((U_5 + size * nudge_u) * S_5) @ (Vt_5 + size * nudge_vt)
    return ll.approximation_error(M_decay, X) - svd_error_5


measured_ratio = nudged_gap(1e-3) / nudged_gap(1e-4)
print(f"gap at nudge 1e-3: {nudged_gap(1e-3):.2e}, at nudge 1e-4: {nudged_gap(1e-4):.2e}: "
      f"{measured_ratio:.0f} times smaller")

# %%
_ = checks.check_shrink_prediction(shrink_factor, measured_ratio)

# %% [markdown]
# A step ten times smaller made the gap a hundred times smaller: the gap grows like the
# **square** of the step. That is what happens where the ground is flat, as it is at the bottom
# of a valley: walking a distance $\varepsilon$ from the lowest point raises you in proportion to
# $\varepsilon^2$, whereas on a slope you would rise in proportion to $\varepsilon$.
#
# Here is the flat ground, computed. Nudging the factors by $\varepsilon$ changes the rank-5
# matrix by $\varepsilon\,\Delta X$ plus terms of order $\varepsilon^2$, with
# $\Delta X = \delta U\, \Sigma_5 V_5^\top + U_5 \Sigma_5\, \delta V^\top$ (`change` in the
# code below) for nudge directions $\delta U, \delta V^\top$. The squared error then changes by
# $-2\varepsilon \langle M - M_5, \Delta X \rangle$ plus terms of order $\varepsilon^2$. And
# that first-order term is zero for *every* direction: each term of $\Delta X$ has $U_5$ or
# $V_5^\top$ as a factor, and the dropped part $M - M_5$, built from the $u_i$ and $v_i$ with
# $i > 5$, is orthogonal to both ($U_5^\top (M - M_5) = 0$ and $(M - M_5) V_5 = 0$).

# %%
residual = M_decay - ll.low_rank_approx(M_decay, 5)  # M - M_5
directions = [(nudge_u, nudge_vt)]  # the direction of the experiment, and four more random ones
directions += [(rng.normal(size=U_5.shape), rng.normal(size=Vt_5.shape)) for _ in range(4)]
for d_u, d_vt in directions:
    change = (d_u * S_5) @ Vt_5 + (U_5 * S_5) @ d_vt  # first-order change of the matrix
    first_order = np.sum(residual * change)  # the inner product <M - M_5, change>
    assert abs(first_order) < 1e-12 * np.linalg.norm(residual) * np.linalg.norm(change)
assert 90 < measured_ratio < 110
print("<M - M_5, change> = 0 (to rounding) in all 5 directions: no first-order change")

# %% [markdown]
# **Flat is necessary, not sufficient.** Every lowest point is flat, but not every flat point is
# a lowest point: a mountain pass (a *saddle*) is flat too. Keep $\sigma_1, \dots, \sigma_4$
# and $\sigma_6$ instead of $\sigma_1, \dots, \sigma_5$. The argument above goes through word for
# word (every term of $\Delta X$ has a kept $u_i$ or $v_i$ as a factor, and what is left out is
# built from the others), so the first-order change is zero there too, and the same nudge
# shrinks the gap the same hundred times.

# %%
U_all, S_all, Vt_all = np.linalg.svd(M_decay, full_matrices=False)
keep = [0, 1, 2, 3, 5]  # sigma_1 .. sigma_4 and sigma_6: rank 5, but not the best rank 5
U_x, S_x, Vt_x = U_all[:, keep], S_all[keep], Vt_all[keep]
error_x = ll.approximation_error(M_decay, (U_x * S_x) @ Vt_x)


def gap_x(size):
    # the nudge of the experiment, now applied to the factors of this other rank-5 matrix
    X = ((U_x + size * nudge_u) * S_x) @ (Vt_x + size * nudge_vt)
    return ll.approximation_error(M_decay, X) - error_x


change = (nudge_u * S_x) @ Vt_x + (U_x * S_x) @ nudge_vt
residual_x = M_decay - (U_x * S_x) @ Vt_x
first_order_x = np.sum(residual_x * change)  # <M - X, change>, zero as at the SVD
assert abs(first_order_x) < 1e-12 * np.linalg.norm(residual_x) * np.linalg.norm(change)
ratio_x = gap_x(1e-3) / gap_x(1e-4)
assert 90 < ratio_x < 110  # just as flat: the same hundred-fold shrink
print(f"keeping sigma_1..4 and sigma_6: error {error_x:.3f} (SVD: {svd_error_5:.3f}); "
      f"nudge gap {ratio_x:.0f} times smaller")

# %% [markdown]
# Yet this flat point is no minimum: its error is larger than the SVD's, and there is a way
# down. Turn the sixth piece a little toward the fifth, $u_6 \to \cos\theta\, u_6 + \sin\theta\,
# u_5$ and the same for $v_6$, and the error *drops*.

# %%
theta = 1e-2
U_turned, Vt_turned = U_x.copy(), Vt_x.copy()
U_turned[:, 4] = np.cos(theta) * U_all[:, 5] + np.sin(theta) * U_all[:, 4]  # u_6 toward u_5
Vt_turned[4] = np.cos(theta) * Vt_all[5] + np.sin(theta) * Vt_all[4]  # v_6 toward v_5
turned_gap = ll.approximation_error(M_decay, (U_turned * S_x) @ Vt_turned) - error_x
assert np.linalg.matrix_rank((U_turned * S_x) @ Vt_turned) == 5
assert turned_gap < 0 and error_x > svd_error_5  # a way down: a saddle, not a minimum
print(f"turned by {theta}: the error changes by {turned_gap:.1e}")

# %% [markdown]
# So flat ground alone could not tell us that no small step from the truncated SVD helps. That
# is Eckart–Young's doing: no rank-$k$ matrix anywhere does better, near or far. The flat ground
# is what that global minimum looks like up close.

# %% [markdown]
# ## 3 · A real photograph
#
# Small random matrices are good for checking theorems. To get a feeling for what rank *means*,
# nothing beats a picture. A grayscale photograph is just a matrix: one number per pixel, 0 for
# black and 1 for white. `load_sample_image()` loads the portrait of Grace Hopper that ships with
# matplotlib (it is read from the installed package; nothing is downloaded) and turns its red,
# green and blue channels into one brightness value per pixel, using the weights
# $0.299\,R + 0.587\,G + 0.114\,B$ that match how bright each colour looks to the eye.

# %%
photo = load_sample_image()
m, n = photo.shape
print(f"photo: {m} x {n} = {photo.size:,} pixels, dtype {photo.dtype}, "
      f"values in [{photo.min():.2f}, {photo.max():.2f}]")
assert (m, n) == (600, 512) and photo.dtype == np.float64
assert 0.0 <= photo.min() and photo.max() <= 1.0
rank = ll.matrix_rank(photo)
print(f"rank: {rank} (full rank is {min(m, n)})")
assert rank == min(m, n)

# %% [markdown]
# Like the noisy matrix in section 1.4, the photo is full rank: none of its 512 columns is a linear
# combination of the others (up to the rounding tolerance), so no fewer than 512 rank-1 pieces
# add up to it exactly. But how well can a low-rank matrix stand in for it? Here are its best
# approximations of rank 1, 5, 20, 50 and 100, each with its relative error.

# %%
shown_ranks = [1, 5, 20, 50, 100]
fig = plots.reconstructions_figure(photo, shown_ranks)
display(fig)

U_photo, s, Vt_photo = np.linalg.svd(photo, full_matrices=False)
np.testing.assert_allclose(s, ll.singular_values(photo))
norm_photo = np.linalg.norm(photo)
for k in shown_ranks:
    measured = np.linalg.norm(photo - (U_photo[:, :k] * s[:k]) @ Vt_photo[:k]) / norm_photo
    predicted = ll.truncation_error(s, k) / norm_photo  # section 2.3's formula, from s alone
    assert np.isclose(measured, predicted, rtol=1e-9)
    print(f"rank {k:>3}: relative error {measured:.2f}")

# %% [markdown]
# Rank 1 is a single outer product: a "plaid" of one column profile times one row profile, which
# captures only where the picture is bright or dark on average. By rank 20 the face is
# recognisable, and at rank 100 you have to look closely to find differences. Yet rank 100 is
# less than a fifth of the full rank.
#
# ### 3.1 The spectrum and the energy curve
#
# Why does it work so well? Because the singular values of the photo **decay fast**. The left panel
# below shows $\sigma_i$ against its index $i$ (counted from 1, as in the maths) on a logarithmic
# scale: the first is almost four times the second, and the hundredth is about a hundred times
# smaller than the first.
#
# A convenient summary is the **energy** kept by rank $k$. The name comes from physics, where the
# energy of a wave grows with the square of its amplitude; here too it is a sum of squares. The
# total energy $\lVert M \rVert_F^2 = \sigma_1^2 + \dots + \sigma_p^2$ is shared out among the
# pieces (section 2.3), and $E(k)$ is the share the first $k$ pieces hold:
#
# $$E(k) = \frac{\sigma_1^2 + \dots + \sigma_k^2}{\sigma_1^2 + \dots + \sigma_p^2} .$$
#
# The right panel plots $E(k)$ against the rank $k$, on a logarithmic axis, which gives the
# first few ranks, where most of the energy is, room to show.

# %%
energy = ll.energy_curve(s)  # energy[k - 1] is E(k)
fig = plots.spectrum_figure(s, mark_ranks=[1, 20, 100])
display(fig)

np.testing.assert_allclose(energy, np.cumsum(s**2) / np.sum(s**2))
print(f"rank 1 keeps {energy[0]:.1%} of the energy")
print(f"sigma_1 / sigma_2 = {s[0] / s[1]:.1f}, sigma_1 / sigma_100 = {s[0] / s[99]:.0f}")
assert 3.5 < s[0] / s[1] < 4 and 90 < s[0] / s[99] < 110  # almost 4; about a hundred

# %% [markdown]
# ### ✏️ Exercise 3 — how much rank for 99%?
#
# You want the cheapest rank-$k$ version of the photo that keeps at least 99% of its energy.
# Using the array `energy` from the cell above (`energy[k - 1]` is $E(k)$), set `k99` to the
# smallest such rank $k$, as a whole number.

# %% tags=["exercise"]
# ✏️ energy[k - 1] is E(k); you may use np.argmax, a loop, or np.searchsorted
k99 = ...  # ✏️ your answer

# %%
_ = checks.check_energy_rank(k99, s)

# %% [markdown]
# For the record, the smallest ranks for three energy targets, found with `np.argmax`, which
# returns the position of the first `True` counted from 0; the rank is one more:

# %%
rank_needed = {}
for target in [0.9, 0.95, 0.99]:
    k = int(np.argmax(energy >= target)) + 1  # position counted from 0, so + 1
    assert energy[k - 1] >= target and (k == 1 or energy[k - 2] < target)
    rank_needed[target] = k
    print(f"{target:.0%} of the energy needs rank {k:>2} of {len(s)}")

# %% [markdown]
# ### ✏️ Exercise 4 — from energy to relative error
#
# The energy kept, $E(k)$, and the relative error,
# $\lVert M - M_k \rVert_F / \lVert M \rVert_F$, both come from the singular values alone.
# How are they related? Work it out on paper with the Pythagoras-like rule of section 2.3, then
# write `my_relative_error(s, k)`: the relative error of the best rank-`k` approximation of a
# matrix whose singular values are `s` (largest first), computed **through** $E(k)$.

# %% tags=["exercise"]
def my_relative_error(s, k):
    """||M - M_k||_F / ||M||_F for the best rank-k approximation M_k of a matrix M with
    singular values s (a 1-D array, largest first), computed from the energy E(k)."""
    # ✏️ your code here: first E(k), then the relative error from it
    raise NotImplementedError("exercise: write my_relative_error")


# %%
_ = checks.check_relative_error(my_relative_error)

# %% [markdown]
# The derivation: the pieces of the SVD are orthogonal, so their squared lengths add up
# (section 2.3). The kept pieces hold $\lVert M_k \rVert_F^2 = \sigma_1^2 + \dots + \sigma_k^2$,
# the dropped ones $\lVert M - M_k \rVert_F^2 = \sigma_{k+1}^2 + \dots + \sigma_p^2$, and
# together they make $\lVert M \rVert_F^2$. Dividing by $\lVert M \rVert_F^2$:
#
# $$E(k) + \left(\frac{\lVert M - M_k \rVert_F}{\lVert M \rVert_F}\right)^2 = 1,
# \qquad\text{so}\qquad \text{relative error} = \sqrt{1 - E(k)} .$$
#
# The two numbers carry the same information, on different scales. Because $\sqrt{x} \ge x$ for
# $x$ between 0 and 1, the relative error is never smaller than the energy lost, $1 - E(k)$, and
# the less energy is lost, the larger the factor between them ($1 / \sqrt{1 - E(k)}$): 99% of
# the energy kept still means a relative error of $\sqrt{0.01} = 10\%$. Checked for every rank
# of the photo:

# %%
relative_errors = np.array([ll.truncation_error(s, k) for k in range(1, len(s) + 1)]) / norm_photo
np.testing.assert_allclose(relative_errors**2, 1 - energy, atol=1e-12)  # error² = 1 - E(k)
assert np.all(relative_errors >= 1 - energy - 1e-12)  # never smaller than the energy lost
assert relative_errors[rank_needed[0.99] - 1] <= np.sqrt(0.01)  # 99% kept: error at most 10%
for k in [1, rank_needed[0.99]]:
    print(f"rank {k:>2}: energy kept {energy[k - 1]:.1%}, energy lost {1 - energy[k - 1]:.1%}, "
          f"relative error {relative_errors[k - 1]:.2f}")

# %% [markdown]
# A word of caution about energy: it flatters. The first piece alone holds about 73% of the
# energy, because it mostly records the average brightness, which is positive at every pixel. Two
# checks of that claim. A flat grey image, every pixel at the photo's mean brightness, shows
# nothing of the photo, yet already holds over half of $\lVert M \rVert_F^2$. And the first
# piece's column profile $u_1$ and row profile $v_1$ point almost exactly along the average
# brightness of each row and of each column: their cosine similarity (1 means the same
# direction) is above 0.99.

# %%
grey = np.full(photo.shape, photo.mean())  # every pixel at the mean brightness
grey_share = np.sum(grey**2) / np.sum(photo**2)
u1, v1 = U_photo[:, 0], Vt_photo[0]  # unit vectors
if u1.sum() < 0:
    u1, v1 = -u1, -v1  # the SVD fixes each piece only up to a sign
row_means, col_means = photo.mean(axis=1), photo.mean(axis=0)
cos_u = u1 @ row_means / np.linalg.norm(row_means)
cos_v = v1 @ col_means / np.linalg.norm(col_means)
print(f"flat grey image: {grey_share:.1%} of the energy; first piece: {energy[0]:.1%}")
print(f"cosine(u_1, row means) = {cos_u:.4f}, cosine(v_1, column means) = {cos_v:.4f}")
assert 0.5 < grey_share < energy[0]
assert cos_u > 0.99 and cos_v > 0.99
assert np.all(u1 > 0) and np.all(v1 > 0)  # no sign changes: brightness, not contrast
assert 0.72 < energy[0] < 0.74 and round(relative_errors[0], 2) == 0.52  # about 73%; 0.52

# %% [markdown]
# So 73% of the energy is mostly the average brightness, and the relative error of the same
# rank-1 approximation, 0.52, says more plainly how much of the picture is missing. From here on
# we judge approximations by their relative error.
#
# ### 3.2 Storage: when does low rank pay?
#
# Storing $M_k$ as factors means storing $U_k \Sigma_k$ ($m \times k$) and $V_k^\top$
# ($k \times n$): $k(m + n)$ numbers instead of $mn$. That is a saving only when
#
# $$k\,(m + n) < m n \quad\Longleftrightarrow\quad k < \frac{mn}{m + n} .$$
#
# For the photo the break-even rank is $600 \cdot 512 / 1112 \approx 276.3$. Above it, the
# "compressed" version is bigger than the picture itself. In the figure, the dots at ranks 20, 50
# and 100 are labelled with their storage as a share of the full matrix: "k=20: 7% of m n" means
# that rank-20 factors need 7% of the photo's 307,200 numbers.

# %%
even = ll.break_even_rank(m, n)
assert np.isclose(even, m * n / (m + n)) and round(even, 1) == 276.3
assert round(ll.storage_cost(m, n, 20) / (m * n), 2) == 0.07  # "k=20: 7% of m n"
for k in range(1, min(m, n) + 1):
    assert ll.storage_cost(m, n, k) == k * (m + n)
    assert (ll.storage_cost(m, n, k) < m * n) == (k < even)
fig = plots.storage_figure(m, n, mark_ranks=[20, 50, 100])
display(fig)
for k in [20, 50, 100, 277]:
    ratio = m * n / ll.storage_cost(m, n, k)
    print(f"rank {k:>3}: {ll.storage_cost(m, n, k):>7,} numbers, compression {ratio:5.3f}x, "
          f"relative error {ll.truncation_error(s, k) / norm_photo:.2f}")
ratio_50 = m * n / ll.storage_cost(m, n, 50)
assert round(ratio_50, 1) == 5.5 and round(1 / ratio_50, 2) == 0.18  # 1/5.5 of the space, 18%
assert 0.10 < ll.truncation_error(s, 50) / norm_photo < 0.12  # about 11%

# %% [markdown]
# The **compression ratio** $mn / (k(m+n))$ says how many times smaller the factors are. Rank 50
# stores the photo in 1/5.5 of the space (18%) with about 11% relative error. From rank 277, the
# first whole rank past break-even, the ratio is below 1: the factors store *more* numbers than
# the picture. (Eckart–Young makes the truncated SVD the best approximation *of low rank*, not the
# best compression there is: image formats such as JPEG work differently and are not limited to
# low rank.)
#
# ### 3.3 The rank slider
#
# Numbers are one thing; watching the picture sharpen is another. `RankSlider` puts the rank on a
# slider. It computes the SVD **once**. Each time you move the slider it only recombines the
# factors, `(U[:, :k] * S[:k]) @ Vt[:k]`, and updates the existing picture, the energy and error
# curves, and the readout of relative error, energy kept and compression. (One more trick keeps
# it quick: a screen shows the photo at about half size, so the widget shows averages of
# $2 \times 2$ pixel blocks, and it averages the SVD factors once rather than every picture.
# Run `RankSlider?` to read why that gives exactly the same picture.)
#
# Here is a static snapshot at rank 30, so this page also makes sense when read on GitHub or on
# paper, where the live widget below cannot run. On the right are the energy kept and the
# relative error against rank, on a logarithmic rank axis; the black line marks the rank shown,
# the dotted line the storage break-even.

# %%
explorer = RankSlider(photo, rank=30)
display(explorer.figure)
blocks = explorer.reconstruction.reshape(m // 2, 2, n // 2, 2).mean(axis=(1, 3))
np.testing.assert_allclose(explorer.screen_image, blocks, atol=1e-12)  # the 2 x 2 trick
assert np.isclose(explorer.relative_error, ll.truncation_error(s, 30) / norm_photo)
assert np.isclose(explorer.energy, ll.energy_captured(s, 30))
assert np.isclose(explorer.compression, m * n / ll.storage_cost(m, n, 30))
print(f"rank {explorer.rank}: relative error {explorer.relative_error:.2f}, "
      f"energy kept {explorer.energy:.1%}, compression {explorer.compression:.2f}x")

# %% [markdown]
# And the live version: drag the slider, or click its handle and use the arrow keys. Run the cells
# above first: the slider needs a live kernel. On a static page (GitHub, a printout) you see the
# snapshot above instead.

# %%
display(explorer.widget)

# %% [markdown]
# The widget is ordinary Python, so code can drive it too. To leave your slider where you put it,
# we drive a second `RankSlider`, `probe`, which is never displayed. At full rank the
# reconstruction is the photo itself (up to rounding). The compression ratio is then about 0.54,
# and it has been below 1 ever since rank 277, the first whole rank past break-even.

# %%
probe = RankSlider(photo, rank=512)  # not displayed: the live slider above stays put
np.testing.assert_allclose(probe.reconstruction, photo, atol=1e-12)
assert np.linalg.norm(photo - probe.reconstruction) / norm_photo < 1e-12
assert probe.relative_error == 0 and 0.53 < probe.compression < 0.55  # about 0.54
print(f"rank 512: relative error {probe.relative_error:.2f}, "
      f"compression {probe.compression:.2f}x (the factors outweigh the photo)")
for rank_shown in [276, 277]:
    probe.update(rank_shown)
    print(f"rank {rank_shown}: compression {probe.compression:.4f}x")
assert probe.compression < 1 < m * n / ll.storage_cost(m, n, 276)

# %% [markdown]
# ## 4 · The bridge to LoRA
#
# So far the matrices were photos and random numbers. In a neural network, each layer holds a
# **weight matrix** $W_0$, say $d \times d$, learned during pre-training. *Fine-tuning* adapts the
# model to a new task by changing the weights to $W_0 + \Delta W$. Full fine-tuning learns every
# one of the $d^2$ entries of the update $\Delta W$.
#
# LoRA makes a bet, stated by its authors (Hu et al., 2021) as a **hypothesis**: the update
# needed for adaptation has a low "intrinsic rank": its spectrum decays fast, like the photo's,
# even though the pre-trained $W_0$ itself may be full rank and far from low rank. If that is
# true, then $\Delta W \approx B A$ with $B$ ($d \times r$) and $A$ ($r \times d$) for a small
# $r$, and we only need to learn $2dr$ numbers.
#
# We can't test that hypothesis here. An update that LoRA learns has rank at most $r$ by
# construction, so its spectrum could not test it either: notebook 05 looks at the spectrum of
# the update that *full* fine-tuning learns on a toy task, where nothing limits the rank, and
# sets LoRA's updates beside it. What we can do here is see what the bet looks like. Below, `W0`
# is a random matrix, standing in for pre-trained weights, and `delta` is a **synthetic** update
# $\Delta W$ that we *built* from four strong directions plus a little noise, the shape the
# hypothesis predicts. The assertions check properties of these two
# matrices, not of real networks.

# %%
rng = np.random.default_rng(4)  # section 4's own generator
d = 256
W0 = rng.normal(size=(d, d)) / np.sqrt(d)  # a stand-in for pre-trained weights
directions_out, directions_in = rng.normal(size=(d, 4)), rng.normal(size=(4, d))
strengths = np.array([4.0, 2.0, 1.0, 0.5])
delta = (directions_out * strengths) @ directions_in / d + 0.002 * rng.normal(size=(d, d))

matrices = {"W0 (random)": W0, "ΔW (synthetic)": delta}
spectra = {name: ll.singular_values(X) for name, X in matrices.items()}
display(plots.spectrum_figure(spectra, normalize=True, mark_ranks=[4]))
for name, X in matrices.items():
    assert ll.matrix_rank(X) == d  # both are full rank ...
    print(f"{name:>14}: rank {ll.matrix_rank(X)}, "
          f"energy kept by rank 4: {ll.energy_captured(spectra[name], 4):.1%}")
assert ll.energy_captured(spectra["ΔW (synthetic)"], 4) > 0.95  # ... but one is nearly rank 4
assert ll.energy_captured(spectra["W0 (random)"], 4) < 0.1

# %% [markdown]
# Both spectra are divided by their largest singular value, so that the two matrices share one
# scale (the left panel's axis reads $\sigma_i / \sigma_1$); the energy panel again uses a
# logarithmic rank axis.
#
# Both matrices are full rank, but their spectra could hardly differ more. The random $W_0$ spreads
# its energy over all 256 directions; the update puts almost all of it in four. If we keep the top
# $r = 4$ SVD pieces of $\Delta W$ and split them into two thin factors, $B = U_r \Sigma_r$ and
# $A = V_r^\top$, we have exactly the form of a LoRA update, and by Eckart–Young no rank-4 pair
# $B, A$ can be closer to $\Delta W$ (in the Frobenius norm, or in the spectral norm).

# %%
r = 4
U_r, S_r, Vt_r = ll.truncated_svd(delta, r)
B, A = U_r * S_r, Vt_r  # B (d, r), A (r, d)
np.testing.assert_allclose(B @ A, ll.low_rank_approx(delta, r), atol=1e-12)
relative_error = ll.approximation_error(delta, B @ A) / np.linalg.norm(delta)
print(f"B {B.shape} @ A {A.shape}: relative error {relative_error:.3f}, "
      f"{B.size + A.size:,} numbers instead of {delta.size:,}")
assert relative_error < 0.2

d_big = 4096  # a LLaMA-7B-sized layer: one attention projection is 4096 x 4096
print(f"at d = {d_big}, r = 8: {ll.storage_cost(d_big, d_big, 8):,} trainable numbers "
      f"instead of {d_big**2:,} ({ll.storage_cost(d_big, d_big, 8) / d_big**2:.2%})")


# %% [markdown]
# In notebook 02 we will not have the SVD of the update to start from, because the whole point of
# fine-tuning is that we don't know $\Delta W$ in advance. Instead we will **train** $B$ and $A$ by
# gradient descent. The truncated SVD from this notebook then becomes the yardstick, with one
# condition. Eckart–Young is about the *distance to* $\Delta W$, measured in the Frobenius or the
# spectral norm, while training minimises a *task loss* on data. Take notebook 02's loss, the
# mean squared error `ll.mse_loss` (a mean over the $N$ inputs and the `out` outputs), with
# whitened inputs ($X^\top X = N I$, where the $N$ rows of $X$ are the inputs) and targets
# produced by $W_0 + \Delta W$ itself, without noise. Then the loss of an update $BA$ is
# $\lVert BA - \Delta W \rVert_F^2 / \text{out}$, a fixed multiple of the squared Frobenius
# distance, and notebook 02 shows that no trained rank-$r$ pair does better than the truncated
# SVD. With other inputs, the best rank-$r$ update weighs the directions of $\Delta W$ by how
# strongly the inputs excite them. First the whitened case, checked on the synthetic `delta`:

# %%
rng = np.random.default_rng(5)  # the loss check's own generator
N = 2 * d
X_white = np.sqrt(N) * np.linalg.qr(rng.normal(size=(N, d)))[0]  # N inputs of length d
np.testing.assert_allclose(X_white.T @ X_white, N * np.eye(d), atol=1e-9)  # whitened


def task_loss(X, update):
    # notebook 02's loss: outputs of W0 + update against targets of W0 + delta
    return ll.mse_loss(X @ (W0 + update).T, X @ (W0 + delta).T)[0]


assert np.isclose(task_loss(X_white, B @ A), np.linalg.norm(B @ A - delta) ** 2 / d)

# %% [markdown]
# Now inputs that are not whitened: each input direction $j$ is scaled by its own strength
# $c_j$, so $X^\top X = N\,\mathrm{diag}(c^2)$ and the loss becomes
# $\lVert (BA - \Delta W)\,\mathrm{diag}(c) \rVert_F^2 / \text{out}$. Eckart–Young, applied
# to $\Delta W\,\mathrm{diag}(c)$, gives the best rank-$r$ update for *this* loss, and it is not
# the truncated SVD of $\Delta W$:

# %%
strength = np.linspace(0.1, 2.0, d)  # c: some input directions excited 20 times more
X_skewed = X_white * strength  # X^T X = N diag(strength^2)
# the loss is ||(update - delta) diag(strength)||_F^2 / d: Eckart-Young on delta * strength
np.testing.assert_allclose(task_loss(X_skewed, B @ A),
                           np.linalg.norm((B @ A - delta) * strength) ** 2 / d, rtol=1e-9)
weighted = ll.low_rank_approx(delta * strength, r) / strength  # the best rank r for this loss
assert task_loss(X_skewed, weighted) < task_loss(X_skewed, B @ A)
print(f"skewed inputs: loss of the truncated SVD {task_loss(X_skewed, B @ A):.2e}, "
      f"of the weighted rank-{r} update {task_loss(X_skewed, weighted):.2e}")

# %% [markdown]
# ## Summary
#
# * A **rank-1** matrix is an outer product $u v^\top$: $mn$ entries from $m + n$ numbers. Every
#   matrix is a sum of rank-1 pieces, and its **rank** is the fewest pieces that will do; in matrix
#   form, $r$ pieces are a product $BA$ with $B$ ($m \times r$) and $A$ ($r \times n$).
# * In floating point, rank is **numerical rank**: the count of singular values above a tolerance.
#   A whisper of random noise makes a matrix full rank. A tolerance recovers the rank underneath
#   if it is at least the noise's largest singular value (the noise's entry size is not enough)
#   and well below the signal's; still, the useful question is how well a low-rank matrix can
#   *approximate* the matrix.
# * The **SVD** $M = \sum_i \sigma_i u_i v_i^\top$ sorts the pieces by strength. Keeping the first
#   $k$ gives the truncated SVD $M_k$. Its Frobenius error is $\sqrt{\sigma_{k+1}^2 + \dots}$ and
#   its spectral error $\sigma_{k+1}$ (NumPy's `S[k]`: the maths counts from 1), and by the
#   **Eckart–Young theorem** (Schmidt 1907, Eckart and Young 1936, Mirsky 1960) no rank-$k$ matrix
#   is closer to $M$ in either norm. None of 1,510 challengers beat it above, and a small nudge
#   away from it costs only in proportion to the square of the nudge. That flatness alone does
#   not make a minimum (a saddle is just as flat); the minimum is Eckart–Young's doing.
# * This photograph is full rank, but its spectrum decays fast: rank 50 gives about 11% relative
#   error in 1/5.5 of the storage. The energy kept and the relative error are tied by
#   $\text{relative error} = \sqrt{1 - E(k)}$, so 99% of the energy is still a 10% error. Low rank
#   only saves storage for $k < mn/(m+n)$.
# * LoRA's **hypothesis** is that fine-tuning updates $\Delta W$ have such fast-decaying spectra, so
#   that $\Delta W \approx BA$ with a small $r$. The truncated SVD is the closest any rank-$r$ $BA$
#   can get to $\Delta W$ (Frobenius or spectral norm). A trained adapter minimises a task loss
#   instead; with whitened inputs and noiseless targets the two goals coincide (notebook 02),
#   with skewed inputs they need not.
#
# **Next:** `02_delta_w_by_hand.ipynb` builds $\Delta W = BA$ into a layer and trains $B$ and $A$
# by hand, with nothing but NumPy.
