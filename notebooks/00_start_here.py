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
# algebra it rests on, the few lines of maths that make it work, and how to use it on real
# models. The claims the notebooks make, and the numbers they quote, are checked by code that
# runs in them (an `assert` stops the cell if a claim is wrong), so little has to be taken on
# trust.
#
# **The problem.** A large pretrained model is adapted to a new task by *fine-tuning*: training
# it a little further on the task's data. *Full* fine-tuning changes every weight, and that is
# expensive twice over. While training, the computer holds not only each weight but also its
# gradient and, with Adam (the usual optimiser), two running averages per weight: four numbers for
# every weight of the model. And the result is a complete new copy of the model, for every task:
# ten tasks, ten full copies.
#
# **The idea.** LoRA (Hu et al., 2021) leaves the pretrained model exactly as it is, frozen, and
# learns a small correction beside some of its weight matrices $W_0$ (often the attention
# projections): $\Delta W = B A$, the product of two thin matrices, $A$ with $r$ rows and $B$
# with $r$ columns, for a small rank $r$ such as 8. An adapted layer then computes
#
# $$h = W_0\,x + \frac{\alpha}{r}\, B A\, x ,$$
#
# where $\alpha$ is a constant chosen once. Only $A$ and $B$ are trained, so only they need
# weight gradients and optimiser state (the backward pass still runs through $W_0$ to reach the
# layers before it), and only they need to be saved after training: one shared base model plus
# one small file per task.
#
# **Learning objectives.** In this notebook you will
#
# 1. say which problem LoRA solves, and what it trains instead of the full weights;
# 2. read the diagram of a LoRA layer, with the shape of every part;
# 3. check that your environment has everything the course needs;
# 4. measure, on one layer, what LoRA saves, and scale it up to a 7-billion-parameter model;
# 5. see the route through the course and how long each stop takes.

# %% [markdown]
# ## 1 · A LoRA layer in one picture
#
# Read the diagram from left to right. The input $x$ (a vector of length `in`) takes two paths.
# On top, the pretrained weight $W_0$, an `out` $\times$ `in` matrix, computes $W_0 x$ as it
# always did; it is frozen, so training never changes it. Below, $A$ (`r` $\times$ `in`) squeezes
# $x$ down to just $r$ numbers, $B$ (`out` $\times$ `r`) maps them back up to `out` numbers, and
# the result is scaled by $\alpha / r$. The two paths are added. (The base layer's bias, if it
# has one, is added on the top path and stays frozen; the diagram leaves it out.) $B$ starts at
# zero, so at the start of training the layer computes exactly what the pretrained layer did;
# $A$ starts random, so that training has something to work with (notebook 02 shows why both
# choices matter).
#
# (If this cell fails with an `ImportError`, run the environment check in section 2: it says
# what is missing; unless NumPy itself is missing, which the check needs too: then run
# `make setup` from the course folder.)

# %%
# %matplotlib inline
from IPython.display import display

from lora_lab import plots

display(plots.lora_layer_figure())

# %% [markdown]
# ## 2 · Is my environment right?
#
# The next cell compares every package the course needs with the version Python can import, and
# tells you how to fix anything missing or too old. It works whether the course is installed
# (`make lab`, `pip install -e .`) or only on Python's path (a copied folder, `PYTHONPATH`, a
# Colab-style checkout). The versions on your machine may differ from the ones stored here, so
# this one cell's output is not compared by the course's regression tests (it is marked
# `NBVAL_IGNORE_OUTPUT`); the verdict below it is.

# %%
# NBVAL_IGNORE_OUTPUT
from lora_lab.environment import check_environment

environment_ok = check_environment()

# %%
assert environment_ok, "fix the problems listed above, restart the kernel, then run this again"
print("Everything the course needs is there.")

# %% [markdown]
# ## 3 · A first LoRA layer
#
# Floating-point sums depend on the order in which they are added up, and that order depends on
# how many threads PyTorch uses. So that you get the same numbers, to the digits printed in these
# notebooks, every notebook seeds its random number generators, and every notebook that uses
# PyTorch also pins it to one thread, like this. (Another CPU, BLAS library or library version
# can still change the last bits of a result; that is why the notebooks print only the digits
# that hold.)

# %%
import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)
torch.manual_seed(0)
rng = np.random.default_rng(0)
print(f"PyTorch threads: {torch.get_num_threads()}")

# %% [markdown]
# `lora_lab.LoRALinear` wraps an ordinary linear layer exactly as in the diagram. Because $B$
# starts at zero, the wrapped layer computes *exactly* what the original did: the check below is
# the first of many asserts in the course. Of its parameters, only $A$ and $B$ are trained.

# %%
from lora_lab import LoRALinear, storage_cost

base = nn.Linear(in_features=1024, out_features=1024)
layer = LoRALinear(base, r=8, alpha=16)
x = torch.randn(3, 1024)
torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)  # identical at the start
trained = {name for name, p in layer.named_parameters() if p.requires_grad}
assert trained == {"lora_A", "lora_B"}  # W0 and its bias are frozen
n_trained = layer.lora_A.numel() + layer.lora_B.numel()
assert n_trained == storage_cost(1024, 1024, 8) == 8 * (1024 + 1024)  # r (in + out)
print(f"lora_A {tuple(layer.lora_A.shape)}, lora_B {tuple(layer.lora_B.shape)}, "
      f"scaling alpha/r = {layer.scaling}")
print(f"trained: {n_trained:,} numbers instead of {base.weight.numel():,} "
      f"({n_trained / base.weight.numel():.1%})")
assert round(n_trained / base.weight.numel(), 3) == 0.016  # the 1.6% of the summary

# %% [markdown]
# ## 4 · What LoRA saves
#
# **Memory while training.** Let's count what one training step with Adam keeps in memory, for
# full fine-tuning of the $1024 \times 1024$ layer and for its LoRA version: every weight, every
# gradient, and every tensor of Adam's state (its two running averages; Adam also keeps one step
# counter per tensor, a single number that we leave out). Activations, the intermediate results
# kept for the backward pass, are counted separately below: they depend mostly on the batch, and
# are about the same for both methods.

# %%
def numbers_in_memory(model):
    """Weights + gradients + Adam's running averages after one training step of `model`."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    model(torch.randn(8, 1024)).pow(2).mean().backward()
    optimizer.step()
    weights = sum(p.numel() for p in model.parameters())
    grads = sum(p.grad.numel() for p in model.parameters() if p.grad is not None)
    state = sum(t.numel() for s in optimizer.state.values() for t in s.values() if t.dim() > 0)
    return weights + grads + state


full = numbers_in_memory(nn.Linear(1024, 1024))
lora = numbers_in_memory(LoRALinear(nn.Linear(1024, 1024), r=8, alpha=16))
assert full == 4 * (1024 * 1024 + 1024)  # four numbers per weight
assert lora == (1024 * 1024 + 1024) + 4 * n_trained  # frozen: one number; trained: four
assert 0.25 < lora / full < 0.27 and round(full / lora, 1) == 3.8  # a little over a quarter
print(f"full fine-tuning: {full:,} numbers; LoRA (r = 8): {lora:,} ({full / lora:.1f}x fewer)")

# %% [markdown]
# The frozen weight is still there (LoRA saves its gradient and optimiser state, not the weight
# itself), so for this one layer LoRA needs a little over a quarter of the memory.
#
# **Activations.** What the backward pass needs from the forward pass can be counted too:
# PyTorch lets us watch every tensor it saves (`saved_tensors_hooks`). For a batch of 8 inputs,
# full fine-tuning keeps the input $x$ (to compute $W_0$'s gradient); LoRA keeps $x$ (for $A$'s
# gradient) and also $A x$, $r$ more numbers per input (for $B$'s gradient). With dropout on
# the LoRA path it keeps the dropped-out copy of $x$ instead of $x$.

# %%
def activations_saved(model, batch=8):
    """How many numbers autograd keeps from the forward pass for the backward pass."""
    weights = {p.data_ptr() for p in model.parameters()}
    saved = []

    def keep(t):
        if t.data_ptr() not in weights:  # weights are counted above, not here
            saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(torch.randn(batch, 1024))
    return sum(saved)


# %%
act_full = activations_saved(nn.Linear(1024, 1024))
act_lora = activations_saved(LoRALinear(nn.Linear(1024, 1024), r=8, alpha=16))
assert act_full == 8 * 1024 and act_lora == 8 * 1024 + 8 * 8  # x; x and A x
with_dropout = LoRALinear(nn.Linear(1024, 1024), r=8, alpha=16, dropout=0.1)
assert activations_saved(with_dropout) == act_lora  # dropped-out x instead of x, and A x
assert round(act_lora / act_full - 1, 2) == 0.01  # LoRA keeps 1% more
assert activations_saved(nn.Linear(1024, 1024), batch=16) == 2 * act_full  # grows with the batch
print(f"activations kept: full fine-tuning {act_full:,} numbers, LoRA {act_lora:,}")

# %% [markdown]
# So the activations are about the same for both (here LoRA keeps 1% more), and they grow
# with the batch, not with the number of trained weights.
#
# **At the scale LoRA was made for.** The same accounting for LLaMA-7B (Touvron et al., 2023), a
# language model with 32 layers of width 4096, computed from its architecture. For LoRA we take
# rank 8 on two of the four attention matrices of every layer ($W_q$ and $W_v$, the choice of
# the LoRA paper). Numbers are 4-byte floats while training; the saved copy of the full model
# and the adapter are in 2-byte floats, as they usually are shared. (Full fine-tuning in mixed
# precision also comes to 16 bytes per weight: 2-byte weights and gradients, a 4-byte
# master copy and Adam's two 4-byte averages.)

# %%
d, n_layers, d_mlp, vocabulary = 4096, 32, 11008, 32000  # LLaMA-7B
per_layer = 4 * d * d + 3 * d * d_mlp + 2 * d  # attention (q, k, v, o), MLP (3 matrices), norms
params = n_layers * per_layer + 2 * vocabulary * d + d  # + embedding, output layer, final norm
assert params == 6_738_415_616  # the released LLaMA-7B's exact count ("6.7B" in the paper)
adapter = n_layers * 2 * storage_cost(d, d, 8)  # rank 8 on W_q and W_v of every layer
GB = 1e9
print(f"parameters: {params:,}; LoRA adapter: {adapter:,} ({adapter / params:.2%})")
print(f"training memory: full {16 * params / GB:.0f} GB; LoRA "
      f"{(4 * params + 16 * adapter) / GB:.0f} GB (before activations)")
print(f"saved per task:  full copy {2 * params / GB:.1f} GB; adapter {2 * adapter / 1e6:.1f} MB")
lora_share = (4 * params + 16 * adapter) / (16 * params)
assert 0.25 < lora_share < 0.26  # about a quarter
assert round(2 * adapter / 1e6, 1) == 8.4 and round(2 * params / GB, 1) == 13.5

# %% [markdown]
# So for each new task, LoRA stores an 8.4 MB file instead of a 13.5 GB copy, and while training
# it needs about a quarter of the memory of full fine-tuning: the frozen weights dominate, and
# they stay. That quarter assumes 4-byte frozen weights. Usually they are kept in 2-byte floats
# (or in 4 bits, as QLoRA does), and then LoRA's share is about an eighth, or less:

# %%
assert 2 + 2 + 4 + 2 * 4 == 16  # mixed-precision full fine-tuning: bytes per weight
shares = {}
for name, bytes_per_frozen in [("2-byte floats", 2), ("4 bits (QLoRA)", 0.5)]:
    lora_bytes = bytes_per_frozen * params + 16 * adapter
    shares[name] = lora_bytes / (16 * params)
    print(f"frozen weights in {name}: LoRA {lora_bytes / GB:.1f} GB, "
          f"{shares[name]:.1%} of full fine-tuning")
assert 0.12 < shares["2-byte floats"] < 0.13 and shares["4 bits (QLoRA)"] < 0.125

# %% [markdown]
# Whether such a small update is *enough* for a task is an empirical question that notebooks 04
# and 05 look at.

# %% [markdown]
# ## 5 · The route
#
# | # | notebook | the question it answers | time |
# |---|---|---|---|
# | 00 | `00_start_here.ipynb` | What is LoRA for? Is my environment right? What is the route? | 15 min |
# | 01 | `01_rank_and_svd.ipynb` | What is rank, and how well can a low-rank matrix stand in for a full one? | 90–120 min |
# | 02 | `02_delta_w_by_hand.ipynb` | What exactly is ΔW = B·A, and how do we train it — by hand, in NumPy? | 2–2½ h, +45 min for the ⭐ optional parts |
# | 03 | `03_lora_layer.ipynb` | How does a LoRA layer look in PyTorch? | 60–90 min |
# | 04 | `04_finetune_toy_task.ipynb` | Does it work? What does rank buy? | 90–120 min |
# | 05 | `05_what_lora_learns.ipynb` | What does the learned update look like? | 60–90 min |
# | 06 | `06_lora_in_a_transformer.ipynb` | How is LoRA used on a real architecture, and with Hugging Face PEFT? | 90–120 min |
#
# The times include reading, running every cell and doing the exercises; for 03–06 they are
# estimates. Go in order: each notebook builds on the ones before it.

# %% [markdown]
# ## 6 · How the course works
#
# Each notebook first **derives** an idea with plain code, then imports the verified version
# from the companion package `lora_lab` and **asserts that the two agree**. Exercises, marked ✏️,
# sit right after the idea they practise. Each ends with a self-check (`lora_lab.checks`) that
# says ✅ or gives a hint naming the likely mistake; until you answer, it says "not yet", which
# is expected. Worked solutions are in `notebooks/solutions/`.
#
# Experiment freely: change a number, re-run a cell, break things. If the course folder is a git
# checkout, `git checkout notebooks/` brings back the original notebooks (and throws away
# everything you changed in them, your answers included: copy a notebook first if you want to
# keep it). `make test`, from the course folder, re-runs every notebook and test to check that
# the whole course still works on your machine (it takes a while).

# %% [markdown]
# ## Summary
#
# - Full fine-tuning trains every weight: four numbers in memory per weight with Adam, and a full
#   copy of the model per task. LoRA freezes the model and trains a low-rank $\Delta W = BA$
#   beside some of its weight matrices $W_0$, $h = W_0 x + \frac{\alpha}{r} B A x$.
# - On one $1024 \times 1024$ layer at $r = 8$ it trains 1.6% of the numbers and keeps 3.8x fewer
#   numbers in memory while training (activations aside, which are about the same); for
#   LLaMA-7B an adapter is 8.4 MB against a 13.5 GB copy, and training needs about a quarter of
#   the memory with 4-byte frozen weights, an eighth or less with 16-bit or 4-bit ones.
# - A LoRA layer starts out identical to the layer it wraps (asserted above), and the environment
#   check passed.
#
# Next: **`01_rank_and_svd.ipynb`**, where the "low rank" comes from.
