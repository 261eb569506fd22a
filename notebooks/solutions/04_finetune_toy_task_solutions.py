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
# # 04 · Fine-tuning a pretrained model on a shifted task — worked solutions
#
# Solutions to the four exercises of `04_finetune_toy_task.ipynb`. Each exercise is checked
# against the experiment itself, so this notebook re-runs the parts of the main notebook that
# the checks need: the comparison on the sideways digits (§4, three seeds) and LoRA on one
# layer at a time (§9). For each exercise: the answer with its reasoning, the check passing,
# and a typical wrong answer with what the check says about it.

# %%
import torch
from tqdm.auto import tqdm

from lora_lab import checks
from lora_lab.digits_task import VARIANTS, best_lr, load_lr_sweep, make_task, run_variant

# %%
torch.set_num_threads(1)
SEEDS = (0, 1, 2)
task = make_task("rotate")
sweep = load_lr_sweep()
LR = {name: best_lr(sweep, "rotate", name) for name in VARIANTS if name != "frozen"}

# %% [markdown]
# The comparison of §4, as in the main notebook (each method at its own learning rate, three
# seeds):

# %%
COMPARED = ["head only", "full fine-tuning", "LoRA r=1", "LoRA r=2", "LoRA r=4", "LoRA r=8",
            "LoRA r=16", "logits correction r=8"]
runs = {name: [run_variant(task, **VARIANTS[name], lr=LR[name], seed=seed) for seed in SEEDS]
        for name in tqdm(COMPARED, desc="comparison")}
runs["frozen"] = [run_variant(task, "frozen")] * len(SEEDS)
for name, name_runs in runs.items():
    accs = [100 * run.accuracy for run in name_runs]
    print(f"{name:22} {min(accs):.1f}–{max(accs):.1f} %")

# %% [markdown]
# ## Exercise 1 — predict the ranking
#
# * **frozen** last: it has never seen a sideways digit and guesses.
# * **logits correction** next: $z + sBAz = (I + sBA)(Wh + b)$ is just another head on the
#   frozen features, so it can at best match training the head — and its 160 numbers can
#   only re-mix 10 logits, not re-read 256 features.
# * **head only** next: it re-reads the 256 features, but they were computed from pixels in
#   the wrong places; it cannot change how the pixels are read.
# * **LoRA r = 8** and **full fine-tuning** on top: both change the first layer, where the
#   rotation enters. Full fine-tuning has ten times the freedom, so it is ahead or level.

# %% tags=["solution"]
# ✏️ best first: "frozen", "head only", "full fine-tuning", "LoRA r=8", "logits correction r=8"
### BEGIN SOLUTION
my_ranking = ["full fine-tuning", "LoRA r=8", "head only", "logits correction r=8", "frozen"]
### END SOLUTION

# %%
RANKED = ["frozen", "head only", "full fine-tuning", "LoRA r=8", "logits correction r=8"]
assert checks.check_ranking(my_ranking, {name: runs[name] for name in RANKED})

# %% [markdown]
# **A typical wrong answer** trusts the write-ups and puts the logits correction above
# training the head — it "is LoRA", after all:

# %%
wrong = ["full fine-tuning", "LoRA r=8", "logits correction r=8", "head only", "frozen"]
_ = checks.check_ranking(wrong, {name: runs[name] for name in RANKED})

# %% [markdown]
# ## Exercise 2 — how many numbers, how many bytes?
#
# Each adapted layer of shape (out, in) gets $A$ (r × in) and $B$ (out × r): r·(in + out)
# numbers, no bias. With r = 8 on the three layers 64 → 256, 256 → 256 and 256 → 10:
# $8\cdot(64+256) + 8\cdot(256+256) + 8\cdot(256+10) = 2{,}560 + 4{,}096 + 2{,}128 = 8{,}784$.
#
# Training keeps four numbers for each: the parameter, its gradient, and Adam's two moments;
# this notebook computes in float64, 8 bytes per number: $8{,}784 \cdot 4 \cdot 8 = 281{,}088$
# bytes, about 275 KiB (full fine-tuning: $85{,}002 \cdot 32$ bytes, about 2.6 MiB).

# %% tags=["solution"]
# ✏️ two whole numbers (expressions like 8 * (64 + 256) are fine)
### BEGIN SOLUTION
lora_r8_params = 8 * (64 + 256) + 8 * (256 + 256) + 8 * (256 + 10)
lora_r8_bytes = lora_r8_params * 4 * 8    # weight, gradient, Adam's m and v; float64
### END SOLUTION

# %%
assert checks.check_training_memory(lora_r8_params, lora_r8_bytes, runs["LoRA r=8"][0].model)

# %% [markdown]
# **A typical wrong answer** counts 4 bytes per number, out of habit — right for float32,
# the usual training dtype, but not for this notebook:

# %%
_ = checks.check_training_memory(lora_r8_params, lora_r8_params * 4 * 4,
                                 runs["LoRA r=8"][0].model)

# %% [markdown]
# ## Exercise 3 — the smallest rank that is good enough
#
# Read each rank's **worst** seed and take the first one at or above 90 %:

# %%
by_rank = {r: runs[f"LoRA r={r}"] for r in (1, 2, 4, 8, 16)}
for r, rank_runs in by_rank.items():
    worst = min(run.accuracy for run in rank_runs)
    print(f"r = {r:2}: worst seed {worst:.1%}, best seed "
          f"{max(run.accuracy for run in rank_runs):.1%}")

# %% tags=["solution"]
# ✏️ one of 1, 2, 4, 8, 16
### BEGIN SOLUTION
smallest_r = 4
### END SOLUTION

# %%
assert checks.check_smallest_rank(smallest_r, by_rank, threshold=0.90)

# %% [markdown]
# **A typical wrong answer** reads the best seed instead of the worst:

# %%
lucky = min(r for r, rank_runs in by_rank.items()
            if max(run.accuracy for run in rank_runs) >= 0.90)
_ = checks.check_smallest_rank(lucky, by_rank, threshold=0.90)

# %% [markdown]
# ## Exercise 4 — which one layer?
#
# The rotation moves pixels, so it must be undone where the pixels are read: layer `"0"`.
# Layer `"2"` turns out to work about as well (layer 0 maps 64 pixels to 256 features and
# keeps much of what they were, so one layer later they can still be re-routed); the check
# accepts every layer that no other layer beat on every seed. The head, `"4"`, is the trap: it
# sees only what the frozen layers made of a misread image.

# %% tags=["solution"]
# ✏️ "0", "2" or "4"
### BEGIN SOLUTION
layer_choice = "0"
### END SOLUTION

# %%
by_layer = {layer: [run_variant(task, **VARIANTS[f"LoRA r=8 on layer {layer}"],
                                lr=LR[f"LoRA r=8 on layer {layer}"], seed=seed)
                    for seed in SEEDS] for layer in tqdm(("0", "2", "4"), desc="one layer")}
assert checks.check_target_layer(layer_choice, by_layer)

# %% [markdown]
# **A typical wrong answer** adapts the head, as one would for a classification task:

# %%
_ = checks.check_target_layer("4", by_layer)
