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
# # 06 · LoRA in a transformer, and the hand-off to PEFT
#
# Notebooks 03–05 put LoRA on models we wrote ourselves. Real models are not written by hand:
# they come as a folder of files in Hugging Face's format, their architecture is a class of the
# `transformers` library, and their layers have names — `q_proj`, `v_proj`, `down_proj` — that
# every LoRA configuration refers to. This last notebook works with such a model: a **tiny
# Llama**, the architecture of Meta's Llama models (`transformers.LlamaForCausalLM`), shrunk to
# 350,880 parameters and pretrained on Shakespeare one character at a time. It ships with the
# course in `data/tiny_llama/` and is loaded the way any model from the Hugging Face Hub is.
#
# We teach it two new texts — Python source code and the prose of Python's language reference
# — with LoRA, compare which layers to adapt, serve both tasks from one frozen base by
# switching small adapter files, merge an adapter for deployment, and hand everything over to
# Hugging Face's **PEFT**: it loads our adapters with identical outputs, and training with PEFT
# gives the same losses as training with `lora_lab`, step by step. The notebook ends with the
# memory arithmetic for a real 7-billion-parameter Llama.
#
# The questions LoRA users ask that this notebook answers, each under a heading with the
# question in it:
#
# | question | section |
# |---|---|
# | "Which target_modules should I adapt?" (in a transformer) | §3 |
# | "Does fine-tuning make the model forget?" | §3.3 |
# | "Can one base model serve several adapters?" | §4 |
# | "Why does the merged model give different outputs?" | §5.1 |
# | "Is inference slower with an unmerged adapter?" | §5.2 |
# | "Will PEFT load my adapter?" | §6.1 |
# | "How do I switch between adapters in PEFT?" | §6.2 |
# | "How much memory does fine-tuning a 7B model need?" | §7 |
#
# ## Learning objectives
#
# By the end of this notebook you will be able to
#
# 1. load a causal language model in Hugging Face's format from a local folder, read its
#    configuration and find its Linear layers by name;
# 2. put LoRA on a transformer's `q_proj` and `v_proj`, predict the number of trainable
#    parameters from the configuration, fine-tune on a new text and measure the result
#    (held-out loss, samples);
# 3. compare adapting the attention projections, every Linear layer and the whole model at
#    equal training steps — how much of the gap to full fine-tuning each closes, and how much
#    of the original text each forgets;
# 4. serve two tasks from one frozen base model by loading small adapter files in turn;
# 5. merge an adapter for deployment, and say what that changes in the outputs and the speed;
# 6. hand an adapter to PEFT and back, train the same adapter with PEFT, and name PEFT's
#    function for everything `lora_lab` does;
# 7. compute the memory needed to fine-tune a 7B Llama fully and with LoRA, and check it
#    against the figures published in the LoRA and QLoRA papers.
#
# ## Exercises
#
# Five exercises sit right after the ideas they practise, each marked ✏️:
#
# 1. count the layers `"all-linear"` adapts in a transformer (§3.1),
# 2. predict which choice of layers closes more of the gap, and which forgets most (§3.1),
# 3. predict which adapter PEFT uses after loading a second one (§6.2),
# 4. derive the trainable parameters of LoRA on a 7B Llama (§7.1),
# 5. choose what to fine-tune within a memory budget (§7.3).
#
# Each asks for an answer in place of `...`; the cell after it checks the answer (against
# what this notebook measured, where the answer is a prediction) and, if something is off,
# gives a hint. Until you have answered, the check says "not yet" — that is expected. Worked
# solutions are in `solutions/06_lora_in_a_transformer_solutions.ipynb`.
#
# Run the cells from top to bottom. The whole notebook takes under a minute on a laptop; the
# longest cell (§3) trains six small models in about ten seconds.

# %%
# %matplotlib inline
import copy
import math
import tempfile
import time
import warnings
from pathlib import Path

import torch
from IPython.display import display
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

# %%
from lora_lab import (
    apply_lora,
    checks,
    count_parameters,
    disable_adapter,
    load_adapter,
    lora_layers,
    lora_state_dict,
    merge_and_unload,
    plots,
    save_adapter,
)
from lora_lab.data import DATA_DIR, TINY_LLAMA_FILES, VOCAB, decode, encode, load_text, verify_data

# %%
from lora_lab.language_model import (
    TARGET_VARIANTS,
    char_windows,
    finetune,
    generate_text,
    next_char_loss,
    text_loss,
)
from lora_lab.memory import (
    GPT3_175B,
    LLAMA_2_7B,
    LLAMA_65B,
    TransformerShape,
    lora_parameter_count,
    training_memory,
)
from lora_lab.train import train

# %%
torch.set_num_threads(1)        # one thread: the same float results on every run
_ = torch.manual_seed(0)
hf_logging.disable_progress_bar()                       # transformers' "Loading weights" bar
# PEFT calls a transformers method that transformers has deprecated; nothing for us to fix
warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")

# %%
# Hugging Face's PEFT, which §6 hands everything over to
import peft
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

# %% [markdown]
# ## 1 · A small Llama, loaded the way real models are
#
# ### 1.1 A model is a folder
#
# A model on the Hugging Face Hub is a folder of files: `config.json` (the architecture and its
# sizes), `model.safetensors` (the weights) and `generation_config.json` (defaults for text
# generation), usually with a tokenizer beside them. `AutoModelForCausalLM.from_pretrained`
# reads the config, builds the class it names and fills in the weights. Given a local folder
# and `local_files_only=True`, it never touches the network. `lora_lab.data.verify_data` first
# checks the three files against their recorded SHA-256, so every learner runs exactly the
# model these outputs were made with.

# %%
folder = DATA_DIR / "tiny_llama"
verify_data([f"tiny_llama/{name}" for name in TINY_LLAMA_FILES])
base = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
for path in sorted(folder.iterdir()):
    print(f"{path.name:<24} {path.stat().st_size:>9,} bytes")
print(f"loaded a {type(base).__name__} in {'training' if base.training else 'eval'} mode")
assert type(base).__name__ == "LlamaForCausalLM" and not base.training

# %% [markdown]
# `from_pretrained` returns the model in eval mode (no dropout), ready for inference. The
# configuration holds the handful of sizes that fix the architecture:

# %%
config = base.config
for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "tie_word_embeddings"):
    print(f"{key:<22} {getattr(config, key)}")
shape = TransformerShape.from_config(config)
print(f"parameters: {count_parameters(base).total:,} counted, "
      f"{shape.parameter_count():,} from the config")
assert shape.parameter_count() == count_parameters(base).total == 350_880

# %% [markdown]
# 96 characters in, a hidden width of 96, a gated MLP of width 256, 3 layers with 4 attention
# heads each. A Llama 2 7B has the same structure with 4,096, 11,008, 32 layers and 32 heads.
# `lora_lab.memory.TransformerShape` computes the parameter count from those numbers; it agrees
# with the loaded model exactly, and §7 uses it on the 7B model.
#
# ### 1.2 The layers, by name
#
# Printing a model shows its tree of modules, with each one's name:

# %%
print(base)

# %% [markdown]
# Every layer has the same modules: the attention's four projections `q_proj`, `k_proj`,
# `v_proj` (queries, keys, values) and `o_proj` (output), and the gated MLP's `gate_proj`,
# `up_proj` and `down_proj` — Llama computes `down_proj(silu(gate_proj(x)) * up_proj(x))`.
# Last comes `lm_head`, which turns the final hidden vector into one score (a *logit*) per
# character. The embedding `embed_tokens` is an `nn.Embedding`, a lookup table, not a Linear
# layer. These names are what `target_modules` refers to; a Linear module's full name is its
# path in the tree:

# %%
linear_names = [name for name, m in base.named_modules() if isinstance(m, nn.Linear)]
kinds = sorted({name.rpartition(".")[2] for name in linear_names})
print(f"{len(linear_names)} nn.Linear modules, named {kinds}")
print("layer 0:", [name for name in linear_names if ".0." in name])
assert len(linear_names) == 3 * 7 + 1 and "lm_head" in kinds

# %% [markdown]
# ### 1.3 What it has learned
#
# The model reads and writes characters. `lora_lab.data.encode` turns a text into ids 0–95
# (newline and the 95 printable ASCII characters) and `decode` turns ids back; this is its
# whole tokenizer.

# %%
print(f"{len(VOCAB)} characters; 'ROMEO:' is {encode('ROMEO:').tolist()}, "
      f"decoded {decode(encode('ROMEO:'))!r}")

# %% [markdown]
# `generate_text(model, prompt, n)` lets the model write `n` characters after a prompt with
# `transformers`' own `model.generate`: each character is drawn from the model's predicted
# distribution (sharpened by a *temperature* of 0.8), from a seeded random generator. Which
# character is drawn can hinge on the last digits of a probability, and those differ slightly
# between CPUs; so we generate from a float64 copy of the model, whose rounding errors are
# about a billion times smaller — too small, in practice, to tip a draw (the course's tests
# check that these samples come out the same with other CPU kernels).

# %%
def float64_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of model, for generated text that is the same on every CPU."""
    return copy.deepcopy(model).double()


print(generate_text(float64_copy(base), "ROMEO:\n", 160, seed=0, temperature=0.8))

# %% [markdown]
# Shakespeare-shaped: speaker names in capitals, verse lines, mostly real words — from a model
# smaller than a photograph. How good a language model is, is measured by its **loss**: the
# average over the characters of a text of $-\ln p(\text{the actual next character})$, in
# *nats per character*. Guessing uniformly among 96 characters scores $\ln 96 = 4.56$; lower is
# better. `text_loss` computes it with `transformers`' own loss on windows of 128 characters
# from the held-out end of each text (the last 10 %, never trained on): 48 windows spread
# evenly over it, 6,144 characters per text.

# %%
EVAL_WINDOWS, EVAL_LENGTH = 48, 128
TEXTS = ("tinyshakespeare", "python_code", "python_docs")
held_out = {name: char_windows(load_text(name, "validation"), EVAL_LENGTH, EVAL_WINDOWS)
            for name in TEXTS}
base_loss = {name: text_loss(base, windows) for name, windows in held_out.items()}
for name, loss in base_loss.items():
    print(f"{name:<16} {loss:.2f} nats/char")
print(f"uniform guess    {math.log(len(VOCAB)):.2f} nats/char")
assert base_loss["tinyshakespeare"] < 1.5 < base_loss["python_docs"] < math.log(96)
assert math.log(96) < base_loss["python_code"]

# %% [markdown]
# On held-out Shakespeare the model is good (about 1.5 nats per character). On the prose of
# Python's documentation it is barely better than guessing, and on Python code it is *worse
# than guessing*: it is confidently wrong. Where does the loss on code come from? Each
# character's $-\ln p$, by kind of character:

# %%
code = held_out["python_code"]
with torch.no_grad():
    logits = base(code).logits[:, :-1]                     # predictions for characters 2..128
surprise = nn.functional.cross_entropy(logits.transpose(1, 2), code[:, 1:], reduction="none")
previous, following = code[:, :-1], code[:, 1:]           # each character and the next one
is_letter = torch.tensor([char.isalpha() for char in VOCAB])[following]
space, newline = encode(" ")[0], encode("\n")[0]
by_kind = {"letters": is_letter,
           "a space after a space": (previous == space) & (following == space),
           "digits and symbols": ~is_letter & (following != space) & (following != newline)}
for kind, where in by_kind.items():
    print(f"{kind:<22} {where.float().mean():4.0%} of the characters, "
          f"{surprise[where].mean():4.1f} nats each on average")
assert surprise[by_kind["a space after a space"]].mean() > 2 * surprise[is_letter].mean()
assert surprise[by_kind["digits and symbols"]].mean() > 3 * surprise[is_letter].mean()

# %% [markdown]
# Letters cost about 3 nats: the model knows English spelling a little, and Python's names are
# English-ish. The damage comes from the rest. Shakespeare almost never has two spaces in a
# row, while Python's indentation is made of them: each costs about 9 nats, a probability of
# about one in ten thousand. Brackets, `=`, `_` and digits cost even more. Learning that code
# is indented and full of symbols is the first, easy part of any fine-tuning on code; we will
# see it in every training curve.
#
# ## 2 · LoRA on the attention projections
#
# ### 2.1 PEFT's default for Llama: `q_proj` and `v_proj`
#
# The LoRA paper adapted only the attention weights and froze the MLPs (Hu et al., 2021,
# §4.2), and among the attention weights it found that adapting $W_q$ and $W_v$ together was
# among the best uses of a fixed parameter budget (§7.1, Table 5). PEFT's default is the same
# pair: for architectures it knows, `LoraConfig` without `target_modules` adapts the layers
# listed in a table, which for Llama says

# %%
QV = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["llama"]
print(f"PEFT {peft.__version__}: default target_modules for Llama = {QV}")
assert QV == ["q_proj", "v_proj"]

# %% [markdown]
# With $r = 4$ and $\alpha = 8$, each adapted (out × in) matrix gets $r\,(\text{in} +
# \text{out})$ trainable numbers; `q_proj` and `v_proj` are 96 × 96 here, in each of the 3
# layers. We count it three ways — by hand, with `lora_lab.memory.lora_parameter_count` from
# the config, and on the model with `count_parameters` — and once more with PEFT, letting it
# choose the targets itself:

# %%
torch.manual_seed(0)
qv_model = apply_lora(copy.deepcopy(base), QV, r=4, alpha=8)
by_hand = config.num_hidden_layers * 2 * 4 * (96 + 96)
peft_default = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8,
                                                              task_type="CAUSAL_LM"))
print(f"by hand {by_hand:,}; from the config {lora_parameter_count(shape, 4, QV):,}; "
      f"count_parameters {count_parameters(qv_model).trainable:,}")
print(f"PEFT chose {sorted(peft_default.peft_config['default'].target_modules)}:")
peft_default.print_trainable_parameters()
assert by_hand == lora_parameter_count(shape, 4, QV) == count_parameters(qv_model).trainable
assert peft_default.get_nb_trainable_parameters() == tuple(count_parameters(qv_model))

# %% [markdown]
# 4,608 trainable numbers, 1.3 % of the adapted model — the same count in all four, and PEFT's
# "all params" includes the adapter, as `count_parameters`' total does.
#
# ### 2.2 The new text: Python source code
#
# The training text is the first 90 % of the source of eleven modules of Python's standard
# library (`textwrap`, `string`, `json`, `dataclasses`, `contextlib`, `pprint`, …); the
# held-out 10 % we measured above comes after it. A piece of it, from `textwrap`:

# %%
python_code = load_text("python_code", "train")
start = python_code.index("        lines = []")
print(python_code[start:start + 400])

# %% [markdown]
# Training examples are **windows** of 65 consecutive characters at random places in the
# training text: the model reads the first 64 and predicts, at every position, the character
# that follows — the input is `w[:, :-1]`, the target `w[:, 1:]`. We draw 320 windows per text
# (20,800 characters, about a ninth of the training text) and train for one pass over them in
# mini-batches of 8: **40 steps**.

# %%
STEPS, BATCH, LENGTH = 40, 8, 64
train_windows = {name: char_windows(load_text(name, "train"), LENGTH + 1, STEPS * BATCH, seed=0)
                 for name in ("python_code", "python_docs")}
code_windows = train_windows["python_code"]
print(f"training windows: {tuple(code_windows.shape)}; the first starts "
      f"{decode(code_windows[0, :30])!r}")

# %% [markdown]
# ### 2.3 Fine-tuning in a few seconds
#
# `lora_lab.train.train` is notebook 04's loop: Adam on every parameter that requires a
# gradient (after `apply_lora`, only the adapters), the learning rate falling linearly to zero,
# mini-batches in an order drawn from `seed`. A language model needs only its own loss:
# `next_char_loss` is the cross-entropy of each position's logits against the next character.
# Before training we keep a copy of the adapter's starting values; §6 gives them to PEFT.

# %%
start_factors = {key: value.clone() for key, value in lora_state_dict(qv_model).items()}
history = train(qv_model, code_windows[:, :-1], code_windows[:, 1:], lr=0.02, epochs=1,
                batch_size=BATCH, seed=0, loss_fn=next_char_loss, progress=False)
qv_loss = text_loss(qv_model, held_out["python_code"])
print(f"{len(history.loss)} steps; training loss {history.loss[0]:.1f} -> {history.loss[-1]:.1f}")
print(f"held-out Python code: {base_loss['python_code']:.2f} -> {qv_loss:.2f} nats/char")
assert len(history.loss) == STEPS and qv_loss < 0.5 * base_loss["python_code"]

# %% [markdown]
# The held-out loss falls from 6.45 to 2.54 nats per character, by training 4,608 numbers for
# 40 steps. What the model writes after the prompt `def `, before and after:

# %%
print("before:", generate_text(float64_copy(base), "def ", 120, seed=0, temperature=0.8))
print("\nafter: ", generate_text(float64_copy(qv_model), "def ", 120, seed=0, temperature=0.8))

# %% [markdown]
# Before: Shakespeare, whatever the prompt. After: runs of spaces, line breaks and symbols —
# the look of indented code, with hardly a word in it. At 2.5 nats per character the model is
# still far from the 1.5 it reaches on Shakespeare: 40 steps of LoRA on two layer types teach a
# tiny model the layout of code, not its words or its grammar. (§3 does better.)
#
# ## 3 · "Which target_modules should I adapt?"
#
# ### 3.1 Three choices, at equal steps
#
# We now compare three ways to spend the same 40 steps on the same windows:
#
# * **q,v**: LoRA on `q_proj` and `v_proj`, $r = 4$ — as in §2;
# * **all-linear**: LoRA on every Linear layer, $r = 8$. `target_modules="all-linear"` is
#   PEFT's shortcut for it, and `apply_lora` follows PEFT's rule for what it includes;
# * **full**: full fine-tuning, every parameter trained.
#
# The QLoRA paper (Dettmers et al., 2023, §4) found that on large language models, LoRA on
# every Linear layer of the transformer blocks was needed to match full fine-tuning, and that
# the choice of layers mattered more than the rank.
#
# ### ✏️ Exercise 1 — how many layers does `"all-linear"` adapt?
#
# How many `LoRALinear` layers does `apply_lora(copy.deepcopy(base), "all-linear")` create in
# this model? Look at §1.2's list of Linear modules, and think about what PEFT means by
# "all-linear" in a language model. The check applies it and counts.

# %% tags=["exercise"]
# ✏️ the number of layers "all-linear" adapts in the tiny Llama
n_all_linear = ...  # ✏️ your answer

# %%
_ = checks.check_all_linear_count(n_all_linear, base)

# %% [markdown]
# The three variants, with the trainable parameters of each (from the config, and counted)
# and the arguments `finetune` gets for each (below):

# %%
VARIANTS = TARGET_VARIANTS                # finetune's arguments for each, from lora_lab
trainable = {name: lora_parameter_count(shape, v["r"], v["target_modules"])
             if v["target_modules"] else shape.parameter_count() for name, v in VARIANTS.items()}
for name, settings in VARIANTS.items():
    print(f"{name:<11} {trainable[name]:>7,} trainable "
          f"({trainable[name] / shape.parameter_count():6.1%})   {settings}")
torch.manual_seed(0)
all_linear = apply_lora(copy.deepcopy(base), "all-linear", r=8)
assert count_parameters(all_linear).trainable == trainable["all-linear"]
assert VARIANTS["q,v"]["target_modules"] == QV and VARIANTS["all-linear"]["r"] == 8

# %% [markdown]
# Each variant trains at its own learning rate: 0.02, 0.01 and 0.003, the best of a factor-2
# grid for each in this setting (ranked by held-out loss over two seeds; a slow test,
# `tests/test_language_model.py`, reruns that sweep). Full fine-tuning wants the smallest:
# it moves every weight of the model at once.
#
# `lora_lab.language_model.finetune` is §2.3's lines — copy the base, `apply_lora` (with
# $\alpha = 2r$) after seeding, `train` — so each run is one call. Every variant runs with two
# seeds, which change the adapter's random start and the order of the mini-batches.
#
# ### ✏️ Exercise 2 — predict before you run
#
# The **gap** is how much full fine-tuning lowers the held-out loss on Python code; a
# variant **closes** the fraction $(L_\text{base} - L_\text{variant}) / (L_\text{base} -
# L_\text{full})$ of it (with $L_\text{full}$ from the same seed). Which LoRA variant will
# close more of the gap, `"q,v"` or `"all-linear"`? And after fine-tuning on code, which of
# the three variants will have **forgotten** the most Shakespeare (the highest held-out
# Shakespeare loss): `"q,v"`, `"all-linear"` or `"full"`?

# %% tags=["exercise"]
# ✏️ "q,v" or "all-linear"; then "q,v", "all-linear" or "full"
closes_more = ...  # ✏️ your answer
forgets_most = ...  # ✏️ your answer

# %% [markdown]
# The six runs (the notebook's longest cell, about ten seconds):

# %%
SEEDS = (0, 1)
runs = {(name, seed): finetune(base, code_windows, seed=seed, **settings)
        for name, settings in VARIANTS.items() for seed in SEEDS}
assert runs["q,v", 0][1].loss == history.loss              # finetune is §2.3's lines
code_loss = {key: text_loss(model, held_out["python_code"]) for key, (model, _) in runs.items()}
old_loss = {key: text_loss(model, held_out["tinyshakespeare"])
            for key, (model, _) in runs.items()}

# %% [markdown]
# ### 3.2 How much of the gap each closes

# %%
gap = {s: base_loss["python_code"] - code_loss["full", s] for s in SEEDS}     # seed by seed
closed = {(name, s): (base_loss["python_code"] - loss) / gap[s]
          for (name, s), loss in code_loss.items()}
print(f"base {base_loss['python_code']:.2f} nats/char; the gap full fine-tuning closes: "
      + ", ".join(f"{gap[s]:.1f} (seed {s})" for s in SEEDS) + "\n")
print(f"{'variant':<11} {'trainable':>9}   held-out loss (seeds 0, 1)   gap closed")
for name in VARIANTS:
    losses = "  ".join(f"{code_loss[name, s]:.2f}" for s in SEEDS)
    shares = "  ".join(f"{closed[name, s]:.0%}" for s in SEEDS)
    print(f"{name:<11} {trainable[name]:>9,}   {losses:>26}   {shares}")
worst = {name: max(code_loss[name, s] for s in SEEDS) for name in VARIANTS}
best = {name: min(code_loss[name, s] for s in SEEDS) for name in VARIANTS}
assert worst["full"] < best["all-linear"] and worst["all-linear"] < best["q,v"]
assert all(0.8 < closed["q,v", s] < 0.9 < closed["all-linear", s] < 1 for s in SEEDS)

# %% [markdown]
# LoRA on `q_proj` and `v_proj` closed about 85 % of the gap, LoRA on every Linear layer about
# 95 %. The order is the same in both seeds — each seed of a better variant beats both seeds
# of the worse one (asserted): full fine-tuning lowest, all-linear next, q,v last. The spread
# between seeds (a few hundredths) is far smaller than the gaps between the variants (tenths),
# so two seeds are enough for the order, not for the digits.
#
# The percentages need a caution, though. The base model starts so far off (6.45 nats per
# character, worse than guessing, §1.3) that much of the gap is the easy part: runs of spaces
# and symbols, which every variant learns to expect within a few steps. The training curves
# show it:

# %%
curves = {name: [runs[name, s][1].loss for s in SEEDS] for name in VARIANTS}
display(plots.training_curves_figure(curves, title="fine-tuning on Python code, 8 windows "
                                     "of 64 characters a step"))
early = {name: curves[name][0][4] for name in VARIANTS}
assert max(early.values()) < 0.75 * history.loss[0]        # all fall fast at first

# %% [markdown]
# All three fall steeply in the first few steps; the differences build up afterwards. So read
# the result also as *what is left*: after 40 steps, q,v is about 0.7 nats per character
# behind full fine-tuning, all-linear about 0.3. On this model and text, adapting every Linear
# layer got much closer to full fine-tuning than adapting `q_proj` and `v_proj`, with an
# eighth of the trainable parameters of full fine-tuning (43,776 of 350,880) — the direction
# QLoRA reports for large models, here at $r = 8$ against $r = 4$ (the rank is not held fixed,
# the targets and the rank change together). Neither LoRA variant matched full fine-tuning
# within 40 steps.

# %%
gaps_left = {name: sum(code_loss[name, s] - code_loss["full", s] for s in SEEDS) / len(SEEDS)
             for name in ("q,v", "all-linear")}
print(f"left behind full fine-tuning: q,v {gaps_left['q,v']:.1f}, "
      f"all-linear {gaps_left['all-linear']:.1f} nats/char")
assert 0.6 < gaps_left["q,v"] < 1.0 and 0.15 < gaps_left["all-linear"] < 0.45

# %% [markdown]
# ### 3.3 "Does fine-tuning make the model forget?"
#
# Training on code changes how the model treats Shakespeare. The same runs, measured on
# held-out Shakespeare:

# %%
print(f"held-out Shakespeare: base {base_loss['tinyshakespeare']:.2f} nats/char")
for name in VARIANTS:
    print(f"  after {name:<11} " + "  ".join(f"{old_loss[name, s]:.2f}" for s in SEEDS))
forgot = {name: [old_loss[name, s] for s in SEEDS] for name in VARIANTS}
rise = [loss - base_loss["tinyshakespeare"] for losses in forgot.values() for loss in losses]
print(f"rise over the base: {min(rise):.1f} to {max(rise):.1f} nats/char")
assert min(forgot["q,v"]) > max(forgot["full"]) > max(forgot["all-linear"])

# %%
_ = checks.check_target_prediction(closes_more, forgets_most, code_loss, old_loss)

# %% [markdown]
# Every variant forgot a lot of Shakespeare: its loss rose by 0.9 to 1.4 nats per character.
# The most forgetful was **q,v** — the variant with the fewest trainable parameters — in both
# seeds. One plausible reading: with only the attention projections to work with, and at the
# highest learning rate (0.02), the optimiser had to bend them far to make a Shakespeare model
# expect indented code, and that broke more of Shakespeare than a change spread over every
# layer. All-linear forgot the least, a little less than full fine-tuning, in both seeds.
# Biderman et al. (2024, "LoRA Learns Less and Forgets Less") found LoRA forgetting less than
# full fine-tuning on large models; this small experiment agrees for all-linear, and shows
# that it is not guaranteed: how much a model forgets is not decided by how many parameters
# train.
#
# The figure shows both measurements, one dot per seed:

# %%
display(plots.target_comparison_figure(
    {name: [code_loss[name, s] for s in SEEDS] for name in VARIANTS}, forgot,
    base=(base_loss["python_code"], base_loss["tinyshakespeare"]),
    titles=("new text: Python code", "old text: Shakespeare")))

# %% [markdown]
# There is a difference of kind, too. LoRA's forgetting is **reversible**: the base weights
# were never touched, so switching the adapter off gives back the pretrained model exactly —
# while full fine-tuning overwrote every weight, and only a saved copy of the original can
# undo it.

# %%
q_v_model = runs["q,v", 0][0]
with disable_adapter(q_v_model):
    restored = text_loss(q_v_model, held_out["tinyshakespeare"])
print(f"q,v model, adapter off: Shakespeare {restored:.2f} nats/char (the base: "
      f"{base_loss['tinyshakespeare']:.2f})")
assert restored == base_loss["tinyshakespeare"]             # exactly: the same computation

# %% [markdown]
# ## 4 · "Can one base model serve several adapters?"
#
# That reversibility is what makes LoRA practical for serving: one frozen base model in
# memory, and for each task a small adapter file, loaded when needed. We train a second
# adapter, all-linear with $r = 8$ like the first, on the second new text — the prose of
# Python's language reference — and save both with `save_adapter`.

# %%
print(load_text("python_docs", "train")[:300])

# %%
docs_model, _ = finetune(base, train_windows["python_docs"], seed=0, **VARIANTS["all-linear"])
code_model = runs["all-linear", 0][0]
workdir = tempfile.TemporaryDirectory()                    # deleted at the end of the notebook
folders = {"code": Path(workdir.name) / "code", "docs": Path(workdir.name) / "docs"}
save_adapter(code_model, folders["code"])
save_adapter(docs_model, folders["docs"])
model_bytes = (folder / "model.safetensors").stat().st_size
for name, path in folders.items():
    size = (path / "adapter_model.safetensors").stat().st_size
    print(f"{name} adapter: {size:,} bytes ({size / model_bytes:.0%} of the model's "
          f"{model_bytes:,})")

# %% [markdown]
# Now one base model with LoRA layers in place — the *server* — and the two adapter files,
# loaded into it in turn with `load_adapter`, which replaces the values of every $A$ and $B$.
# For each adapter, the held-out loss on both texts:

# %%
server = apply_lora(copy.deepcopy(base), "all-linear", r=8, alpha=16)
table = {"base": {text: base_loss[text] for text in ("python_code", "python_docs")}}
for name, path in folders.items():
    load_adapter(server, path)
    table[name] = {text: text_loss(server, held_out[text]) for text in table["base"]}
print(f"{'':<14} {'Python code':>12} {'Python docs':>12}")
for row, losses in table.items():
    print(f"{row + ' adapter' if row != 'base' else 'base model':<14} "
          f"{losses['python_code']:>12.2f} {losses['python_docs']:>12.2f}")
assert table["code"]["python_code"] == code_loss["all-linear", 0]   # its own behaviour, exactly
assert table["code"]["python_docs"] < 0.6 * table["base"]["python_docs"]
for own, text in (("code", "python_code"), ("docs", "python_docs")):
    assert table[own][text] < min(table[other][text] for other in table if other != own)

# %% [markdown]
# Each adapter is best on its own text — better than the other adapter and than the base —
# and the code adapter, loaded from its file, reproduces exactly the loss it had after
# training; the docs adapter, loaded last, computes exactly the docs model's logits:

# %%
probe = held_out["python_code"][:8]
with torch.no_grad():
    same = torch.equal(server(probe).logits, docs_model(probe).logits)
print(f"server with the docs adapter = the trained docs model, logit for logit: {same}")
assert same

# %% [markdown]
# The code adapter also helps a lot on the documentation (4.44 → 2.24): the language
# reference is full of indented grammar rules and code examples, so much of what one adapter
# learned serves the other. The base model stayed untouched all along; switching tasks means
# loading 180 KB, not another model.
#
# **The byte count, honestly.** Each adapter here is 13 % of the base model's file — not the
# fraction of a percent people quote. An adapted (out × in) matrix adds $r\,(\text{in} +
# \text{out})$ numbers to its $\text{in}\cdot\text{out}$, a share of about $2r/d$ for a square
# $d \times d$ matrix: large when $r = 8$ and $d = 96$, tiny when $d$ is in the thousands. For
# a Llama 2 7B, the same all-linear adapter at $r = 16$:

# %%
big_adapter = lora_parameter_count(LLAMA_2_7B, 16, "all-linear")
print(f"7B Llama: {LLAMA_2_7B.parameter_count():,} parameters; all-linear r = 16 adapter: "
      f"{big_adapter:,} ({big_adapter / LLAMA_2_7B.parameter_count():.2%})")
print(f"in 16-bit numbers: {2 * big_adapter / 1e6:.0f} MB per adapter next to "
      f"{2 * LLAMA_2_7B.parameter_count() / 1e9:.1f} GB of base model")
assert big_adapter / LLAMA_2_7B.parameter_count() < 0.006
assert 100 * big_adapter < LLAMA_2_7B.parameter_count()      # a hundred adapters < one model

# %% [markdown]
# So at real scale the story holds: one 13.5 GB base, and for each task an 80 MB file — a
# hundred tasks cost less memory than a second copy of the model.
#
# ## 5 · Deployment: `merge_and_unload`
#
# ### 5.1 "Why does the merged model give different outputs?"
#
# When one adapter will serve alone, `merge_and_unload` folds each update into its weight,
# $W = W_0 + \frac{\alpha}{r}BA$, and puts plain `nn.Linear` layers back: the model is a
# `LlamaForCausalLM` like the one we loaded, which anyone can use without `lora_lab` or PEFT.
# Its outputs equal the adapted model's up to rounding: in float32, adding $\Delta W$ to $W_0$
# rounds each weight once, and the logits then differ in their last digits.

# %%
merged = merge_and_unload(copy.deepcopy(code_model))
with torch.no_grad():
    difference = (merged(probe).logits - code_model(probe).logits).abs().max().item()
    scale = code_model(probe).logits.abs().max().item()
print(f"merged: {type(merged).__name__}, LoRA layers left: {len(list(lora_layers(merged)))}")
print(f"largest |logit difference| vs the unmerged model: below 1e-4 ({difference < 1e-4}); "
      f"largest |logit|: {scale:.0f}")
assert not list(lora_layers(merged)) and difference < 1e-4

# %% [markdown]
# A difference below $10^{-4}$ on logits as large as 13: float32 rounding, nothing more.
# (In bfloat16 or float16 the merge rounds much more coarsely; notebook 03 §6.2 measured it.)
#
# ### 5.2 "Is inference slower with an unmerged adapter?"
#
# Unmerged, each of the 21 adapted layers computes two extra small matrix products for every
# character generated. We time `generate` for 64 characters with the base model, the merged
# model and the unmerged one, three rounds interleaved, keeping the fastest run of each (the
# one least disturbed by whatever else the computer was doing). Timings vary between runs and
# machines, so this cell's output is not checked by the regression tests (it is marked
# `NBVAL_IGNORE_OUTPUT`) and nothing about it is asserted.

# %%
# NBVAL_IGNORE_OUTPUT
contenders = {"base": base, "merged": merged, "unmerged": code_model}
seconds = dict.fromkeys(contenders, math.inf)
for _ in range(3):
    for name, model in contenders.items():
        began = time.perf_counter()
        generate_text(model, "def ", 64)
        seconds[name] = min(seconds[name], time.perf_counter() - began)
for name, t in seconds.items():
    print(f"{name:<9} {t * 1e3:6.0f} ms for 64 characters   {t / seconds['merged']:.2f} × merged")

# %% [markdown]
# The merged model does exactly the base model's computation, so it takes the base model's
# time, up to noise. The unmerged one does 42 more small matrix products per character (two
# per adapted layer) plus the additions; what they cost in time depends on the machine. In a
# model this small, the fixed overhead of each extra operation weighs heavily; in a large
# model the extra arithmetic is a small share ($2r/d$ per adapted matrix, notebook 03 §6.3).
# Merge for single-adapter deployment; keep adapters unmerged to switch between them (§4) or
# to keep training.
#
# ## 6 · Hand-off to PEFT
#
# ### 6.1 "Will PEFT load my adapter?"
#
# `save_adapter` writes PEFT's own file layout, so PEFT loads our code adapter with
# `PeftModel.from_pretrained(base model, folder)` — and computes the same logits:

# %%
peft_code = PeftModel.from_pretrained(copy.deepcopy(base), folders["code"])
with torch.no_grad():
    peft_difference = (peft_code(probe).logits - code_model(probe).logits).abs().max().item()
settings = peft_code.peft_config["default"]
print(f"PEFT loaded r = {settings.r}, lora_alpha = {settings.lora_alpha}, target_modules = "
      f"{sorted(settings.target_modules)}")
print(f"largest |logit difference| vs lora_lab: below 1e-6 ({peft_difference < 1e-6})")
assert peft_difference < 1e-6
assert sorted(settings.target_modules) == sorted(set(kinds) - {"lm_head"})

# %% [markdown]
# Our `adapter_config.json` lists the 21 adapted modules by their full paths; PEFT, given a
# list that long, replaces it by the shortest set of names that selects the same modules —
# here the 7 last names. The adapter is the same.
#
# ### 6.2 "How do I switch between adapters in PEFT?"
#
# PEFT can hold several adapters in one model, each under a name: the first is `"default"`,
# and `peft_model.load_adapter(folder, adapter_name="docs")` adds another.
#
# ### ✏️ Exercise 3 — predict before you run
#
# After `peft_code.load_adapter(folders["docs"], adapter_name="docs")`, which adapter does
# `peft_code` use to compute its outputs: `"code"` (the one loaded first, as `"default"`) or
# `"docs"` (the one just loaded)?

# %% tags=["exercise"]
# ✏️ "code" or "docs"
active_after_loading = ...  # ✏️ your answer

# %% [markdown]
# We load it and compare `peft_code`'s logits with each of our two adapted models:

# %%
def closest_adapter(model: nn.Module) -> str:
    """Which of our two adapted models ("code" or "docs") model reproduces, to 1e-6."""
    with torch.no_grad():
        logits = model(probe).logits
        for name, ours in (("code", code_model), ("docs", docs_model)):
            if (logits - ours(probe).logits).abs().max() < 1e-6:
                return name
    return "neither"


peft_code.load_adapter(folders["docs"], adapter_name="docs")
measured = closest_adapter(peft_code)
print(f"after load_adapter: active adapter {peft_code.active_adapter!r}, outputs of: {measured}")

# %%
_ = checks.check_active_adapter(active_after_loading, measured)

# %% [markdown]
# `load_adapter` only *loads*; `set_adapter` switches, and `disable_adapter()` gives the base:

# %%
peft_code.set_adapter("docs")
print(f"after set_adapter('docs'): outputs of {closest_adapter(peft_code)}")
with peft_code.disable_adapter(), torch.no_grad():
    off = (peft_code(probe).logits - base(probe).logits).abs().max().item()
print(f"inside disable_adapter(): the base model's logits exactly ({off == 0})")
assert closest_adapter(peft_code) == "docs" and off == 0

# %% [markdown]
# `lora_lab.load_adapter` is simpler: a model holds one adapter, and loading replaces it
# (§4). With PEFT, forgetting `set_adapter` is a classic silent bug — the model keeps
# answering with the previous adapter.
#
# ### 6.3 The same fine-tuning, done with PEFT
#
# Now §2.3's training run again, in PEFT: `LoraConfig` with the same $r$, $\alpha$, dropout
# and targets, `get_peft_model`, the same starting values of $A$ and $B$ copied in (kept in
# §2.3), the same optimiser, learning rate and mini-batches (`train` with the same seed).

# %%
peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=QV,
                         task_type="CAUSAL_LM")
peft_qv = get_peft_model(copy.deepcopy(base), peft_config)
with torch.no_grad():
    for name, _ in lora_layers(qv_model):
        theirs = peft_qv.base_model.model.get_submodule(name)
        theirs.lora_A["default"].weight.copy_(start_factors[f"{name}.lora_A"])
        theirs.lora_B["default"].weight.copy_(start_factors[f"{name}.lora_B"])
peft_history = train(peft_qv, code_windows[:, :-1], code_windows[:, 1:], lr=0.02, epochs=1,
                     batch_size=BATCH, seed=0, loss_fn=next_char_loss, progress=False)

# %%
relative = [abs(a - b) / b for a, b in zip(peft_history.loss, history.loss, strict=True)]
print(f"{len(relative)} steps; PEFT {peft_history.loss[0]:.2f} ... {peft_history.loss[-1]:.2f}, "
      f"lora_lab {history.loss[0]:.2f} ... {history.loss[-1]:.2f}")
print(f"largest relative difference between the two libraries' losses: below 1e-6 "
      f"({max(relative) < 1e-6})")
assert max(relative) < 1e-6

# %% [markdown]
# Step by step, the two libraries compute the same losses: the same layer, the same
# initialisation, the same update. What you built in notebooks 02–06 is what PEFT does. The
# other direction works too: an adapter PEFT saves with `save_pretrained` loads into
# `lora_lab` with `load_adapter`, giving the same logits.

# %%
peft_folder = Path(workdir.name) / "peft_qv"
peft_qv.save_pretrained(peft_folder)
round_trip = load_adapter(apply_lora(copy.deepcopy(base), QV, r=4, alpha=8), peft_folder)
with torch.no_grad():
    back = (round_trip(probe).logits - peft_qv(probe).logits).abs().max().item()
print(f"PEFT's files: {sorted(p.name for p in peft_folder.iterdir())}; lora_lab's logits "
      f"agree to 1e-6: {back < 1e-6}")
assert back < 1e-6

# %% [markdown]
# ### 6.4 PEFT's name for everything you built
#
# | what | `lora_lab` | PEFT |
# |---|---|---|
# | the settings | arguments of `apply_lora` | `LoraConfig(r, lora_alpha, lora_dropout, target_modules)` |
# | add adapters, freeze the rest | `apply_lora(model, target_modules, r, alpha, dropout)` | `get_peft_model(model, config)` |
# | the layer | `LoRALinear` (`lora_A`, `lora_B`) | `peft.tuners.lora.Linear` (`lora_A["default"]`, `lora_B["default"]`) |
# | count | `count_parameters(model)` | `model.get_nb_trainable_parameters()`, `model.print_trainable_parameters()` |
# | every Linear but the output layer | `target_modules="all-linear"` | `target_modules="all-linear"` |
# | train a whole module too | `apply_lora(..., modules_to_save=[...])` | `LoraConfig(modules_to_save=[...])` |
# | $\alpha/\sqrt r$ scaling | `apply_lora(..., use_rslora=True)` | `LoraConfig(use_rslora=True)` |
# | the base model's outputs | `with disable_adapter(model):` | `with model.disable_adapter():` |
# | merge, keep the adapter | `merge_lora`, `unmerge_lora` | `model.merge_adapter()`, `model.unmerge_adapter()` |
# | merge and remove | `merge_and_unload(model)` | `model.merge_and_unload()` |
# | save the adapter | `save_adapter(model, folder)` | `model.save_pretrained(folder)` |
# | load an adapter | `load_adapter(model, folder)` | `PeftModel.from_pretrained(base, folder)` |
# | a second adapter | load it in place of the first | `model.load_adapter(folder, adapter_name)`, then `model.set_adapter(adapter_name)` |
#
# Every PEFT name in the table exists in the installed PEFT:

# %%
peft_names = [(peft_qv, ["from_pretrained", "save_pretrained", "load_adapter", "set_adapter",
                         "disable_adapter", "merge_adapter", "unmerge_adapter",
                         "merge_and_unload", "get_nb_trainable_parameters",
                         "print_trainable_parameters"]),
              (peft_config, ["r", "lora_alpha", "lora_dropout", "target_modules",
                             "modules_to_save", "use_rslora"])]
missing = [name for owner, names in peft_names for name in names if not hasattr(owner, name)]
print(f"PEFT {peft.__version__}: {sum(len(names) for _, names in peft_names)} names looked up on a "
      f"PeftModel and a LoraConfig, missing: {missing}")
assert not missing and isinstance(peft_qv, PeftModel) and hasattr(peft.tuners.lora, "Linear")

# %% [markdown]
# ## 7 · "How much memory does fine-tuning a 7B model need?"
#
# ### 7.1 The trainable parameters
#
# A Llama 2 7B, from its published sizes: 32 layers, hidden width 4,096, MLP width 11,008,
# 32,000 tokens, 32 heads (each with its own keys and values). `lora_lab.memory.LLAMA_2_7B` holds
# these; its parameter count is the model's exact one, 6,738,415,616.

# %%
print(LLAMA_2_7B)
for name, (out_f, in_f) in LLAMA_2_7B.linear_shapes().items():
    print(f"  {name:<10} {out_f:>6} × {in_f:<6}")
assert LLAMA_2_7B.parameter_count() == 6_738_415_616

# %% [markdown]
# ### ✏️ Exercise 4 — derive the 7B's trainable parameters
#
# From the shapes above, compute by hand (a line of arithmetic each) the trainable parameters
# of LoRA with $r = 16$ on the 7B model: on `q_proj` and `v_proj`, and on `"all-linear"`.

# %% tags=["exercise"]
# ✏️ trainable parameters of LoRA r = 16 on the 7B model
qv_r16 = ...  # ✏️ your answer
all_linear_r16 = ...  # ✏️ your answer

# %%
_ = checks.check_7b_lora_count(qv_r16, all_linear_r16)

# %% [markdown]
# ### 7.2 Weights, gradients and Adam's state
#
# Training keeps, for every parameter, its value; for every *trainable* parameter also its
# gradient and Adam's two running averages. In mixed-precision training the usual sizes are
# 2 bytes for a 16-bit weight, 2 for its gradient and 8 for Adam's two float32 averages —
# 12 bytes for each trained parameter, 2 for each frozen one. (Activations come on top; they
# depend on batch size and sequence length, and are not counted here.)
# `lora_lab.memory.training_memory` does this bookkeeping:

# %%
n_7b = LLAMA_2_7B.parameter_count()
setups = {"full fine-tuning": (n_7b, n_7b)}
for label, targets in (("LoRA r=16 q,v", ["q_proj", "v_proj"]), ("LoRA r=16 all-linear",
                                                                  "all-linear")):
    extra = lora_parameter_count(LLAMA_2_7B, 16, targets)
    setups[label] = (n_7b + extra, extra)
memory = {label: training_memory(total, trained) for label, (total, trained) in setups.items()}
print(f"{'7B Llama':<22} {'weights':>8} {'gradients':>10} {'Adam':>7} {'total':>7}  (GB)")
for label, m in memory.items():
    print(f"{label:<22} {m.weights / 1e9:8.1f} {m.gradients / 1e9:10.2f} "
          f"{m.optimizer / 1e9:7.2f} {m.total / 1e9:7.1f}")
assert memory["full fine-tuning"].total > 5.5 * memory["LoRA r=16 all-linear"].total

# %% [markdown]
# Full fine-tuning needs about 81 GB before a single activation — more than an 80 GB GPU
# holds. LoRA needs the frozen 16-bit weights (13.5 GB) and almost nothing else: the whole
# adapter with its gradient and Adam's state adds 0.1 GB (q,v) or 0.5 GB (all-linear). That
# is also why the choice of targets is rarely a question of memory: all-linear costs 0.4 GB
# more than q,v, next to 13.5 GB of frozen weights.
#
# **Checked against the papers.** The same function reproduces the published figures:
#
# * QLoRA (Dettmers et al., 2023, abstract and §1): full 16-bit fine-tuning of LLaMA 65B needs
#   "more than 780 GB of GPU memory";
# * LoRA (Hu et al., 2021, §4.2): on GPT-3 175B with $r = 4$ on $W_q$ and $W_v$, training
#   memory falls from 1.2 TB to 350 GB, and a checkpoint from 350 GB to 35 MB.

# %%
n_65b = LLAMA_65B.parameter_count()
full_65b = training_memory(n_65b, n_65b).total
n_gpt3 = GPT3_175B.parameter_count()
lora_gpt3 = lora_parameter_count(GPT3_175B, 4, ["q_proj", "v_proj"])
with_lora = training_memory(n_gpt3 + lora_gpt3, lora_gpt3).total
full_16bit_adam = training_memory(n_gpt3, n_gpt3, optimizer_bytes=4).total
full_gpt3 = training_memory(n_gpt3, n_gpt3).total
no_adam = 4 * n_gpt3                                      # 16-bit weights and gradients only
print(f"LLaMA 65B, full 16-bit fine-tuning: {full_65b / 1e9:.0f} GB   (QLoRA: more than 780 GB)")
print(f"GPT-3 175B, LoRA r=4 on q,v: {with_lora / 1e9:.0f} GB, adapter "
      f"{2 * lora_gpt3 / 2**20:.0f} MiB in 16 bits   (LoRA paper: 350 GB, 35 MB)")
print(f"GPT-3 175B, full: {no_adam / 1e12:.1f} TB without Adam's state, "
      f"{full_16bit_adam / 1e12:.1f} TB with it in 16 bits, {full_gpt3 / 1e12:.1f} TB in "
      f"float32   (LoRA paper: 1.2 TB)")
assert 780e9 < full_65b < 800e9 and with_lora < 350.5e9 and abs(2 * lora_gpt3 / 2**20 - 35) < 1.5
assert 0.65e12 < no_adam < 1.2e12 < full_16bit_adam < 1.5e12 < 2e12 < full_gpt3 < 2.2e12

# %% [markdown]
# The 780 GB, the 350 GB and the 35 MB come out as published (the adapter is 36 MiB, the
# paper's "35 MB" rounded). The paper's 1.2 TB for full fine-tuning is not reproduced
# exactly: it lies between 0.7 TB (weights and gradients only) and 1.4 TB (with Adam's two
# averages in 16 bits), and float32 averages would make it 2.1 TB. The paper does not say how
# it counted.
#
# ### 7.3 Choosing within a budget
#
# ### ✏️ Exercise 5 — choose for a memory budget
#
# You have one GPU with 16 GB and keep 1.5 GB of it for activations and the software: 14.5 GB
# for weights, gradients and Adam's state, counted as above (`training_memory`'s defaults).
# Which of these do you choose to fine-tune the 7B Llama: `"full"`, `"q,v r=16"`,
# `"all-linear r=16"` or `"all-linear r=64"`? Choose the one that fits and, by what §3 found,
# should adapt best.

# %% tags=["exercise"]
# ✏️ "full", "q,v r=16", "all-linear r=16" or "all-linear r=64"
choice = ...  # ✏️ your answer

# %%
_ = checks.check_memory_choice(choice, code_loss)

# %% [markdown]
# The budget that matters most is set by the frozen weights. QLoRA's answer is to shrink those
# too, to 4-bit numbers, while the adapter trains in 16 bits; that is how the QLoRA paper
# fine-tunes a 65B model on one 48 GB GPU. For the 7B model:

# %%
four_bit = n_7b / 2                                       # half a byte per weight
print(f"7B weights in 4 bits: {four_bit / 1e9:.1f} GB (plus a little for the scales of the "
      f"quantisation), instead of {2 * n_7b / 1e9:.1f} GB in 16 bits")
assert 3.3e9 < four_bit < 3.4e9
workdir.cleanup()

# %% [markdown]
# PEFT supports this together with the `bitsandbytes` library (its **Quantization** guide).

# %% [markdown]
# ## Summary
#
# * **A model is a folder.** `AutoModelForCausalLM.from_pretrained(folder,
#   local_files_only=True)` builds the architecture from `config.json` and loads
#   `model.safetensors`; `print(model)` and `named_modules()` show the names `target_modules`
#   refers to: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`,
#   and `lm_head`.
# * **Counting.** LoRA on a transformer trains $n_\text{layers}\sum r\,(\text{in} +
#   \text{out})$ numbers over the targets: 4,608 for $r = 4$ on q,v of the tiny Llama,
#   8,388,608 for $r = 16$ on q,v of a 7B — the config is enough to compute it.
# * **Which targets.** At 40 equal steps on Python code, full fine-tuning did best, LoRA on
#   all Linear layers ($r = 8$) came within about 0.3 nats per character of it, and LoRA on
#   `q_proj`, `v_proj` ($r = 4$) stayed about 0.7 behind — the same order in both seeds,
#   the direction QLoRA reports. `"all-linear"` leaves out `lm_head`.
# * **Forgetting.** Every variant forgot much of Shakespeare; q,v forgot the most, all-linear
#   the least. LoRA's forgetting is undone exactly by switching the adapter off.
# * **One base, many adapters.** Two adapters on one frozen base, loaded in turn, each best on
#   its own text. Here an adapter is 13 % of the tiny model's file; for a 7B Llama it is 0.6 %
#   (80 MB).
# * **Deployment.** `merge_and_unload` gives a plain `LlamaForCausalLM` whose logits agree to
#   float32 rounding and which does exactly the base model's work; unmerged adapters add two
#   small matrix products per adapted layer for every generated token.
# * **PEFT.** Our adapter files load in PEFT with the same logits and PEFT's files load in
#   `lora_lab`; training with PEFT gives the same losses step by step. PEFT's
#   `load_adapter` does not switch adapters — `set_adapter` does.
# * **Memory.** A 7B Llama needs about 81 GB for full fine-tuning (weights, gradients, Adam)
#   and about 13.6–14.0 GB with LoRA, dominated by the frozen weights; the same bookkeeping
#   reproduces the LoRA and QLoRA papers' figures.
#
# ## Where to go next
#
# You have built LoRA from a rank-1 outer product to an adapter that PEFT trains and loads. The
# next steps are PEFT's own documentation: its **Quicktour**, the **LoRA** developer guide
# (initialisation options, merging, several adapters, and `add_weighted_adapter` for
# combining them), the **PEFT checkpoint format** page (what `adapter_config.json` holds), the
# **Quantization** guide (QLoRA with `bitsandbytes`), and its **Troubleshooting** page.
# Together with `transformers`' `Trainer` or TRL's `SFTTrainer`, they take the same ideas to
# models with billions of parameters.
