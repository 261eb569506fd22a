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
# against the experiment itself, so this notebook re-runs the part of the main notebook that
# the checks need: the four methods of Exercise 1 on the sideways digits (three seeds). The
# choices of Exercises 3 and 4 are checked against the validation runs of the shipped sweep,
# as in the main notebook — the test images choose nothing. For each exercise: the answer
# with its reasoning, the check passing, and a typical wrong answer with what the check says
# about it.

# %%
import torch
from tqdm.auto import tqdm

from lora_lab import checks
from lora_lab.digits_task import (
    VARIANTS,
    best_lr,
    build_variant,
    load_lr_sweep,
    make_task,
    run_variant,
    validation_accuracies,
)

# %%
torch.set_num_threads(1)
SEEDS = (0, 1, 2)
task = make_task("rotate")
sweep = load_lr_sweep()
LR = {name: best_lr(sweep, "rotate", name) for name in VARIANTS if name != "frozen"}

# %% [markdown]
# The four methods of Exercise 1, as in §4 of the main notebook (each at its own learning
# rate, three seeds), and their validation accuracies from the sweep:

# %%
RANKED = ["head only", "full fine-tuning", "LoRA r=8", "logits correction r=8"]
runs = {name: [run_variant(task, **VARIANTS[name], lr=LR[name], seed=seed) for seed in SEEDS]
        for name in tqdm(RANKED, desc="four methods")}
val = {name: validation_accuracies(sweep, "rotate", name) for name in RANKED}
for name, name_runs in runs.items():
    accs = [100 * run.accuracy for run in name_runs]
    print(f"{name:22} test {min(accs):.1f}–{max(accs):.1f} %, validation "
          f"{round(100 * min(val[name]))}–{round(100 * max(val[name]))} of 100")

# %% [markdown]
# ## Exercise 1 — predict the ranking
#
# * **logits correction** last: $z + sBAz = (I + sBA)(Wh + b)$ is just another head on the
#   frozen features, so everything it can express, training the head can express too — and
#   its 160 numbers can only re-mix 10 logits, not re-weigh 256 features.
# * **head only** next: it re-weighs the 256 features, but they were computed from pixels in
#   the wrong places; it cannot change how the features are computed.
# * **LoRA r = 8** and **full fine-tuning** on top: both change every layer, including the
#   first, which reads the pixels. Full fine-tuning has ten times the freedom, so expect it
#   ahead or level.

# %% tags=["solution"]
# ✏️ best first: "head only", "full fine-tuning", "LoRA r=8", "logits correction r=8"
### BEGIN SOLUTION
my_ranking = ["full fine-tuning", "LoRA r=8", "head only", "logits correction r=8"]
### END SOLUTION

# %%
assert checks.check_ranking(my_ranking, runs, validation=val)

# %% [markdown]
# **A typical wrong answer** trusts the write-ups and puts the logits correction above
# training the head — it "is LoRA", after all:

# %%
wrong = ["full fine-tuning", "LoRA r=8", "logits correction r=8", "head only"]
_ = checks.check_ranking(wrong, runs, validation=val)

# %% [markdown]
# ## Exercise 2 — how many numbers, how many bytes?
#
# Each adapted layer of shape (out, in) gets $A$ (r × in) and $B$ (out × r): r·(in + out)
# numbers, no bias. With r = 8 on the three layers 64 → 256, 256 → 256 and 256 → 10:
# $8\cdot(64+256) + 8\cdot(256+256) + 8\cdot(256+10) = 2{,}560 + 4{,}096 + 2{,}128 = 8{,}784$.
#
# Training keeps four numbers for each: the parameter, its gradient, and Adam's two moments;
# this notebook computes in float64, 8 bytes per number: $8{,}784 \cdot 4 \cdot 8 = 281{,}088$
# bytes, about 275 KiB (full fine-tuning: $85{,}002 \cdot 32$ bytes, about 2.6 MiB). The
# frozen weights come on top of that in the table's memory column, but the question asks for
# the trainable numbers only.

# %% tags=["solution"]
# ✏️ two whole numbers (expressions like 8 * (64 + 256) are fine)
### BEGIN SOLUTION
lora_r8_params = 8 * (64 + 256) + 8 * (256 + 256) + 8 * (256 + 10)
lora_r8_bytes = lora_r8_params * 4 * 8    # weight, gradient, Adam's m and v; float64
### END SOLUTION

# %%
lora_r8 = build_variant(**VARIANTS["LoRA r=8"])    # counting needs no training
assert checks.check_training_memory(lora_r8_params, lora_r8_bytes, lora_r8)

# %% [markdown]
# **A typical wrong answer** counts 4 bytes per number, out of habit — right for float32,
# the usual training dtype, but not for this notebook. In float64, $4 \cdot 4$ bytes is also
# what someone gets who counts 8 bytes but forgets Adam's two moments, so the check names
# both slips:

# %%
_ = checks.check_training_memory(lora_r8_params, lora_r8_params * 4 * 4, lora_r8)

# %% [markdown]
# ## Exercise 3 — the smallest rank that is good enough
#
# Read each rank's **worst** validation seed and take the first one at or above 90 of 100:

# %%
val_by_rank = {r: validation_accuracies(sweep, "rotate", f"LoRA r={r}") for r in (1, 2, 4, 8, 16)}
for r, accs in val_by_rank.items():
    print(f"r = {r:2}: worst seed {min(accs):.0%}, best seed {max(accs):.0%}")

# %% tags=["solution"]
# ✏️ one of 1, 2, 4, 8, 16 (or None)
### BEGIN SOLUTION
smallest_r = 8
### END SOLUTION

# %%
assert checks.check_smallest_rank(smallest_r, val_by_rank, threshold=0.90)

# %% [markdown]
# **A typical wrong answer** reads the best seed instead of the worst:

# %%
lucky = min(r for r, accs in val_by_rank.items() if max(accs) >= 0.90)
_ = checks.check_smallest_rank(lucky, val_by_rank, threshold=0.90)

# %% [markdown]
# ## Exercise 4 — which one layer?
#
# The rotation moves pixels, so it must be undone where the features are computed from them:
# layer `"0"`, which reads the pixels, or layer `"2"` one step later (layer 0 keeps much of
# what the pixels were in its 256 features). That the exact fix of §1 has rank 48 does not
# rule layer 0 out: a task only needs a change that is good enough on digits. On the
# validation runs, layers 0 and 2 overlap — the check accepts both, and says so — while the
# head, `"4"`, is the trap: it sees only what the frozen layers made of a misread image.

# %% tags=["solution"]
# ✏️ "0", "2" or "4"
### BEGIN SOLUTION
layer_choice = "0"
### END SOLUTION

# %%
val_by_layer = {layer: validation_accuracies(sweep, "rotate", f"LoRA r=8 on layer {layer}")
                for layer in ("0", "2", "4")}
assert checks.check_target_layer(layer_choice, val_by_layer)
assert checks.check_target_layer("2", val_by_layer)     # also right: the seeds overlap

# %% [markdown]
# **A typical wrong answer** adapts the head, as one would for a classification task:

# %%
_ = checks.check_target_layer("4", val_by_layer)
