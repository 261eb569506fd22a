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
# # LoRA Lab — start here
#
# Welcome! This course explains **Low-Rank Adaptation (LoRA)** from the ground up: the linear
# algebra it rests on, the few lines of math that make it work, and how to use it on real models.
# Every claim is checked by code that runs in this notebook, so nothing has to be taken on trust.
#
# **Learning objectives.** In this notebook you will
#
# 1. check that your environment has everything the course needs;
# 2. see the route through the course and how long each stop takes;
# 3. learn how the course tests itself, so you can change things without fear.

# %% [markdown]
# ## 1. Is my environment right?
#
# The next cell compares every package the course needs with the version installed. The versions on
# your machine may differ from the ones stored here, so this one cell's output is not compared by the
# regression tests (it is marked `NBVAL_IGNORE_OUTPUT`); the verdict below it is.

# %%
# NBVAL_IGNORE_OUTPUT
from lora_lab.environment import check_environment

environment_ok = check_environment()

# %%
assert environment_ok, "fix the problems listed above, then restart the kernel"
print("All required packages are installed.")

# %% [markdown]
# Floating-point sums depend on the order in which they are added up, and that order depends on how
# many threads PyTorch uses. To get *exactly* the numbers printed in these notebooks, every notebook
# seeds its random number generators, and every notebook that uses PyTorch also pins it to one
# thread, like this:

# %%
import numpy as np
import torch

torch.set_num_threads(1)
torch.manual_seed(0)
rng = np.random.default_rng(0)
print(f"PyTorch threads: {torch.get_num_threads()}")

# %% [markdown]
# A first taste of what is coming: a LoRA layer wraps an ordinary linear layer. Because one of its
# two new matrices starts at zero, the wrapped layer computes *exactly* what the original did —
# the check below is the first of many asserts in the course.

# %%
from torch import nn

from lora_lab import LoRALinear

base = nn.Linear(in_features=6, out_features=4)
layer = LoRALinear(base, r=2, alpha=4)
x = torch.randn(3, 6)
torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)
print(f"lora_A {tuple(layer.lora_A.shape)}, lora_B {tuple(layer.lora_B.shape)}, "
      f"scaling {layer.scaling}")
print("At initialisation the LoRA layer and the original layer agree exactly.")

# %% [markdown]
# ## 2. The route
#
# | # | notebook | the question it answers | time |
# |---|---|---|---|
# | 00 | `00_start_here.ipynb` | Is my environment right? What is the route? | 10 min |
# | 01 | `01_rank_and_svd.ipynb` | What is rank, and how well can a low-rank matrix stand in for a full one? | 45 min |
# | 02 | `02_delta_w_by_hand.ipynb` | What exactly is ΔW = B·A, and how do we train it — by hand, in NumPy? | 60 min |
# | 03 | `03_lora_layer.ipynb` *(coming)* | How does a LoRA layer look in PyTorch? | 45 min |
# | 04 | `04_finetune_toy_task.ipynb` *(coming)* | Does it work? What does rank buy? | 45 min |
# | 05 | `05_what_lora_learns.ipynb` *(coming)* | What does the learned update look like? | 40 min |
# | 06 | `06_lora_in_a_transformer.ipynb` *(coming)* | How is LoRA used on a real architecture, and with Hugging Face PEFT? | 60 min |
#
# Each notebook first **derives** an idea with plain code, then imports the verified version from the
# companion package `lora_lab` and **asserts that the two agree**. Exercises end with a self-check
# (`lora_lab.checks`) that tells you whether your answer is right and, if not, what to look at; worked
# solutions are in `notebooks/solutions/`.

# %% [markdown]
# ## 3. How the course tests itself
#
# The outputs stored in these notebooks are a regression test. From the course folder:
#
# ```bash
# make test        # unit tests + re-run every notebook and compare its outputs
# make notebooks   # after an intended change: refresh the stored outputs
# ```
#
# `make test` runs `pytest --nbval`, which re-executes each notebook in a fresh kernel and compares
# every printed output with the stored one, character for character. That is why the notebooks
# print rounded numbers and seed everything: a change in the 4th decimal is a real change.
#
# If you edit a notebook while learning, that is fine — `make notebooks` is only for maintainers who
# change the course on purpose. To get a clean copy back: `git checkout notebooks/`.

# %% [markdown]
# ## Summary
#
# - The environment check passed, and PyTorch runs single-threaded for reproducible numbers.
# - A LoRA layer starts out identical to the layer it wraps (asserted above).
# - The route: rank and the SVD (01) → ΔW = B·A by hand (02) → a PyTorch layer (03) → fine-tuning
#   (04) → what LoRA learns (05) → transformers and PEFT (06).
#
# Next: **`01_rank_and_svd.ipynb`**.
