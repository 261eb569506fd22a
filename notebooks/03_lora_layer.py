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
# # 03 · A LoRA layer in PyTorch
#
# Notebook 02 built LoRA with NumPy and pencil and paper: the layer computes
# $h = W_0x + \frac{\alpha}{r}BAx$, its gradients were derived by hand, $B$ starts at zero, and
# the update can be merged into $W_0$. Real models are written in **PyTorch**, where *autograd*
# derives the gradients and a model is a tree of *modules*. This notebook moves LoRA there. We
# write the layer ourselves in a few lines and check it against notebook 02 number by number,
# then switch to the course's verified `LoRALinear` and to Hugging Face's **PEFT**, the library
# real projects use.
#
# Then come the questions LoRA users ask most often, for instance on PEFT's issue tracker. Each
# is answered by a small experiment under a heading with the question in it:
#
# | question | section |
# |---|---|
# | "The trainable-parameter count looks wrong" | §2.2 |
# | "My LoRA isn't learning" | §2.4 |
# | "Which target_modules should I adapt?" | §3 |
# | "What does lora_dropout do at inference?" | §5 |
# | "Why does the merged model give different outputs?" | §6.2 |
# | "Is inference slower with an unmerged adapter?" | §6.3 |
# | "Why is my adapter file this size?" | §7 |
# | "How do I pick r and alpha?" | §8 |
#
# ## Learning objectives
#
# By the end of this notebook you will be able to
#
# 1. write a LoRA layer as a PyTorch `nn.Module`, show that its outputs and autograd gradients
#    equal notebook 02's formulas, and recognise the same layer in `lora_lab` and in PEFT;
# 2. say what freezing (`requires_grad`) does, predict trainable-parameter counts, and find out
#    why a LoRA is not learning;
# 3. choose the layers that get an adapter (`target_modules`: a list, a regular expression,
#    `"all-linear"`) and read the error a typo produces;
# 4. switch an adapter off to compare with the base model, and explain what `lora_dropout` does
#    in training and at inference;
# 5. merge and unmerge an adapter, and explain why merged outputs differ in bf16/fp16 and why an
#    unmerged adapter costs extra time;
# 6. save only the adapter, predict its file size, and reload it with `lora_lab` and with PEFT;
# 7. compare the scalings $\alpha/r$ and $\alpha/\sqrt{r}$ (rsLoRA) as $r$ grows, at one fixed
#    learning rate and after a learning-rate sweep.
#
# ## Exercises
#
# Five short exercises sit right after the ideas they practise, each marked ✏️:
#
# 1. predict which factor one Adam step changes (§2.1),
# 2. count the trainable and total parameters of a model with biases (§2.2),
# 3. find out why an optimiser never trains the adapter, and fix it (§2.4),
# 4. write the average output of a layer with dropout, over all dropout masks (§5),
# 5. predict how the best learning rate moves with $r$ under each scaling (§8).
#
# Predictions are answered by replacing `...` with your answer; the other exercises ask for a
# short function. A check cell follows each exercise (for Exercise 5, once the sweep it is about
# has run): it checks your answer and, if something is off, gives a hint that names the likely
# mistake; until you have answered, it says "not yet". Worked solutions are in
# `solutions/03_lora_layer_solutions.ipynb`.
#
# Run the cells from top to bottom. The whole notebook runs in well under a minute on a laptop.

# %%
# %matplotlib inline
import copy
import inspect
import math
import struct
import tempfile
import textwrap
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from IPython.display import display
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.benchmark import Timer

# %%
from lora_lab import (
    LoRALinear,
    apply_lora,
    checks,
    count_parameters,
    disable_adapter,
    load_adapter,
    lora_layers,
    merge_and_unload,
    merge_lora,
    plots,
    save_adapter,
    singular_values,
    truncation_error,
    unmerge_lora,
)
from lora_lab.numpy_lora import lora_backward, lora_forward, mse_loss  # notebook 02's LoRA

# %%
torch.set_num_threads(1)        # one thread: the same float results on every run
_ = torch.manual_seed(0)

# %%
# Hugging Face's PEFT: the library used to fine-tune real models with LoRA
import peft
from peft import LoraConfig, PeftModel, get_peft_model

# %% [markdown]
# ## 1 · From NumPy to PyTorch
#
# ### 1.1 The layer in a few lines
#
# In PyTorch a layer is an `nn.Module`. It keeps its trainable tensors as attributes of type
# `nn.Parameter` (which registers them, so that `model.parameters()` finds them) and computes
# its output in `forward`. PyTorch already uses the row form of notebook 02: `nn.Linear` holds
# a weight of shape (out, in) and computes `x @ W.T + b` for a batch `x` of shape (N, in).
#
# A LoRA layer wraps a pretrained `nn.Linear`, freezes it, and adds the two factors:
#
# * `requires_grad_(False)` **freezes** the base layer: autograd computes no gradient for its
#   weight and bias, so no optimiser can change them;
# * `A` (r, in) starts uniform in $\pm 1/\sqrt{\text{in}}$ (PyTorch's Kaiming-uniform
#   initialisation, as `init_lora` in notebook 02), `B` (out, r) starts at zero;
# * `forward` is notebook 02's row form, `x @ W0.T + s * (x @ A.T) @ B.T`, with the base layer
#   computing the first term.

# %%
class MyLoRALinear(nn.Module):
    """A frozen nn.Linear plus (alpha / r) B A, straight from notebook 02's equations."""

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)                     # W0 (and bias): frozen
        dtype = base.weight.dtype
        self.A = nn.Parameter(torch.empty(r, base.in_features, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, dtype=dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))           # U(±1/sqrt(in))
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # x (..., in) -> (..., out)
        return self.base(x) + self.scaling * (x @ self.A.T) @ self.B.T


# %% [markdown]
# ### 1.2 The same numbers as notebook 02
#
# We take notebook 02's toy sizes (a 6 × 10 layer, $r = 2$, $\alpha = 4$) and draw $W_0$, $A$,
# $B$, a batch of 5 inputs and their targets with NumPy. As in 02 §2, $B$ is random rather than
# zero, so that the LoRA branch visibly does something. Both sides compute in float64, so that
# any difference larger than rounding would be a bug, not noise.

# %%
d_out, d_in, r, alpha = 6, 10, 2, 4.0
rng = np.random.default_rng(0)
W0 = rng.normal(size=(d_out, d_in)) / np.sqrt(d_in)
A, B = rng.normal(size=(r, d_in)), rng.normal(size=(d_out, r))
X, Y = rng.normal(size=(5, d_in)), rng.normal(size=(5, d_out))   # a batch and its targets

base = nn.Linear(d_in, d_out, bias=False, dtype=torch.float64)    # the "pretrained" layer
mine = MyLoRALinear(base, r, alpha)
with torch.no_grad():                                             # copy the NumPy numbers in
    base.weight.copy_(torch.from_numpy(W0))
    mine.A.copy_(torch.from_numpy(A))
    mine.B.copy_(torch.from_numpy(B))

# %% [markdown]
# The comparison: the output, and after `backward()` the gradients autograd found for $A$,
# $B$ and the input $x$, against `lora_forward` and notebook 02's hand-derived `lora_backward`
# with the mean squared error's $G = \partial L/\partial H$ from `mse_loss`. We will run the
# same comparison on two more implementations, so it is a function. It takes the module and
# its two factor tensors, because each implementation stores them under a different name, and
# it clears the module's old gradients first: `backward()` *adds* to `.grad`, so without that a
# second run of the same cell would compare twice the gradient.

# %%
def difference_from_numpy(module: nn.Module, A_param: torch.Tensor,
                          B_param: torch.Tensor) -> float:
    """Largest |difference| between module's output and gradients (A, B, x) on (X, Y)
    and notebook 02's NumPy lora_forward/lora_backward. Why: one number per implementation.
    """
    module.zero_grad(set_to_none=True)                            # backward() accumulates
    x = torch.from_numpy(X).requires_grad_(True)                  # so that x gets a gradient
    out = module(x)
    nn.functional.mse_loss(out, torch.from_numpy(Y)).backward()   # autograd
    H = lora_forward(X, W0, A, B, alpha)
    grads = lora_backward(X, W0, A, B, alpha, mse_loss(H, Y)[1])  # by hand (notebook 02)
    pairs = [(out, H), (A_param.grad, grads.A), (B_param.grad, grads.B), (x.grad, grads.x)]
    return max(float(np.abs(t.detach().numpy() - ref).max()) for t, ref in pairs)


# %%
diff_mine = difference_from_numpy(mine, mine.A, mine.B)
print(f"MyLoRALinear vs NumPy (output, dL/dA, dL/dB, dL/dx): largest difference "
      f"{'below 1e-12' if diff_mine < 1e-12 else diff_mine}")
print(f"gradient of the frozen W0: {base.weight.grad}")
assert diff_mine < 1e-12 and base.weight.grad is None

# %% [markdown]
# A few lines of `nn.Module` reproduce notebook 02 to float64 rounding (differences below
# $10^{-12}$), and autograd finds the gradients we derived by hand. The frozen weight has no
# gradient at all (`None`): nothing was computed for it and nothing is stored.
#
# ### 1.3 The verified layer: `lora_lab.LoRALinear`
#
# The course package's `LoRALinear` is the same layer with what a real one needs on top:
# argument and dtype checks, dropout, merging, rsLoRA. Its factors are called `lora_A` (r, in)
# and `lora_B` (out, r), PEFT's names. It creates its factors in the base's precision, but never
# below float32: float64 here, float32 for a float32, bf16 or fp16 base. The reason is
# training: each step changes an entry by a small amount, and a 16-bit format has too few
# digits to hold a small change — in bf16, $0.5 + 0.001$ rounds back to $0.5$ (asserted below).
# The factors are ordinary parameters, though: `model.half()` or `model.to(torch.bfloat16)`
# *after* `apply_lora` converts them like every other parameter.

# %%
layer = LoRALinear(copy.deepcopy(base), r=r, alpha=alpha)
print(layer)
assert layer.lora_A.dtype == torch.float64 and not layer.lora_B.any()   # B starts at zero
with torch.no_grad():
    layer.lora_A.copy_(mine.A)
    layer.lora_B.copy_(mine.B)
diff_lora_lab = difference_from_numpy(layer, layer.lora_A, layer.lora_B)
print(f"LoRALinear vs NumPy: largest difference "
      f"{'below 1e-12' if diff_lora_lab < 1e-12 else diff_lora_lab}")
assert diff_lora_lab < 1e-12

# %%
assert torch.tensor(0.5, dtype=torch.bfloat16) + 1e-3 == 0.5      # a small step is rounded away
bf16_layer = LoRALinear(nn.Linear(4, 4, dtype=torch.bfloat16))
assert bf16_layer.lora_A.dtype == torch.float32                    # factors: at least float32 ...
assert bf16_layer.half().lora_A.dtype == torch.float16             # ... until you convert them

# %% [markdown]
# ### 1.4 The same layer in PEFT
#
# PEFT adapts layers *inside a model*, chosen by name: a `LoraConfig` says which
# (`target_modules`) with which `r` and `lora_alpha`, and `get_peft_model` replaces each chosen
# `nn.Linear` by PEFT's own `lora.Linear`. So we put our base layer in a one-layer model under
# the name `proj`. PEFT keeps `A` and `B` as two small `nn.Linear` layers in dictionaries keyed
# by an adapter name, `"default"`, because one model can hold several adapters; their weights
# are our $A$ (r, in) and $B$ (out, r).

# %%
class OneLayer(nn.Module):
    """A model holding one Linear layer under the name `proj`."""

    def __init__(self, proj: nn.Linear) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"])

# %%
peft_model = get_peft_model(OneLayer(copy.deepcopy(base)), config)
peft_layer = peft_model.base_model.model.proj                     # PEFT's lora.Linear
peft_a, peft_b = peft_layer.lora_A["default"].weight, peft_layer.lora_B["default"].weight
print(f"PEFT {peft.__version__} trains: "
      f"{[name for name, p in peft_model.named_parameters() if p.requires_grad]}")
assert not peft_b.any() and peft_a.abs().max() <= 1 / math.sqrt(d_in)  # same start as ours
with torch.no_grad():
    peft_a.copy_(mine.A)
    peft_b.copy_(mine.B)
diff_peft = difference_from_numpy(peft_model, peft_a, peft_b)
print(f"PEFT vs NumPy: largest difference {'below 1e-12' if diff_peft < 1e-12 else diff_peft}")
assert diff_peft < 1e-12

# %% [markdown]
# Three implementations, one set of numbers. PEFT's parameter names
# (`base_model.model.proj.lora_A.default.weight`) are what you will see in PEFT's error
# messages and in `named_parameters()`. Its adapter *files* leave the adapter's name out
# (`base_model.model.proj.lora_A.weight`): §7 reads the keys of one.
#
# PEFT starts from the same point as we do: $B = 0$ and a Kaiming-uniform $A$ (its default
# `init_lora_weights=True`). Its *default hyper-parameters* differ, though. From the source
# (`peft/tuners/lora/config.py`) and from `lora_lab`'s signatures:

# %%
ours = inspect.signature(apply_lora).parameters
theirs = LoraConfig()                       # PEFT's defaults
rows = [("r", ours["r"].default, theirs.r), ("alpha", ours["alpha"].default, theirs.lora_alpha),
        ("dropout", ours["dropout"].default, theirs.lora_dropout),
        ("use_rslora", ours["use_rslora"].default, theirs.use_rslora),
        ("target_modules", "(required)", theirs.target_modules)]
print(f"{'setting':<15} {'lora_lab':>10}  {'PEFT':>6}")
for setting, value_ours, value_peft in rows:
    print(f"{setting:<15} {value_ours!s:>10}  {value_peft!s:>6}")
assert (ours["r"].default, ours["alpha"].default) == (8, 16) == (theirs.r, 2 * theirs.lora_alpha)

# %% [markdown]
# Both default to $r = 8$, but `lora_lab` defaults to $\alpha = 16$ (scaling $16/8 = 2$) and PEFT
# to `lora_alpha = 8` (scaling $8/8 = 1$). Saved adapters are safe — the adapter's config file
# stores `lora_alpha` (§7) — but if you *re-create* a configuration by hand, write $\alpha$ out
# rather than rely on a default, or the update comes out twice or half as large. For your own
# models PEFT has no default `target_modules` at all (it knows the layer names of popular
# architectures only), so you always name them, as we did.
#
# ## 2 · Freezing and counting
#
# From here on we work with a small model whose layers carry the names real language models
# use: two transformer-style blocks, each with attention projections `q_proj`, `k_proj`,
# `v_proj`, `o_proj` and an MLP `up_proj`, `down_proj` (the names of Llama-style models), and a
# `head`: 13 `nn.Linear` layers in all. What each block computes does not matter for LoRA —
# only that its weights are `nn.Linear` layers.

# %%
class Block(nn.Module):
    """A transformer-style block: attention (q, k, v, o projections) and an MLP (up, down)."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d) for _ in range(4))
        self.up_proj, self.down_proj = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:           # x (batch, tokens, d)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(x.shape[-1]), dim=-1)
        x = x + self.o_proj(weights @ v)                           # attention
        return x + self.down_proj(torch.relu(self.up_proj(x)))     # MLP


# %%
class TinyModel(nn.Module):
    """Two blocks of width 16 and a head with 4 outputs: 13 Linear layers, all with bias."""

    def __init__(self, d: int = 16, hidden: int = 32, n_out: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, hidden) for _ in range(2)])
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


# %%
def make_model() -> TinyModel:
    """The same "pretrained" model every time (weights drawn from a fixed seed)."""
    torch.manual_seed(0)
    return TinyModel()


# %% [markdown]
# The new task: imitate a *teacher*, the pretrained model with its `q_proj` and `v_proj`
# weights changed by a rank-1 update in each block — a change LoRA on those layers can express.
# The data are 64 sequences of 6 tokens, and the loss is the mean squared error between the
# model's outputs and the teacher's.

# %%
teacher = make_model()
gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    for block in teacher.blocks:
        for proj in (block.q_proj, block.v_proj):
            u, v = torch.randn(16, 1, generator=gen), torch.randn(1, 16, generator=gen)
            proj.weight += 0.5 * (u @ v) / (u.norm() * v.norm())   # rank 1, norm 0.5
X_seq = torch.randn(64, 6, 16, generator=gen)                      # (batch, tokens, d)
Y_seq = teacher(X_seq).detach()
TARGETS = ["q_proj", "v_proj"]


def task_loss(model: nn.Module) -> torch.Tensor:
    """Mean squared error between model's and teacher's outputs on X_seq."""
    return nn.functional.mse_loss(model(X_seq), Y_seq)


# %% [markdown]
# ### 2.1 What `requires_grad` does
#
# `apply_lora(model, target_modules, r, alpha)` replaces the chosen `nn.Linear` layers by
# `LoRALinear` and **freezes every other parameter** of the model (`requires_grad = False`).
# Only the factors will train. Before we look at a backward pass, a prediction.
#
# ### ✏️ Exercise 1 — predict first
#
# A freshly adapted model ($B = 0$, $A$ random) takes **one** step of **Adam**
# (`torch.optim.Adam`; most LoRA training uses Adam or its variant AdamW). Which factors have
# changed afterwards? Work it out from two things you know: notebook 02's gradients,
# $\partial L/\partial A = s\,(GB)^\top X$ and $\partial L/\partial B = s\,G^\top XA^\top$; and
# Adam's update, which keeps a running average $m$ of each entry's gradient and $v$ of its
# square, and moves the entry by $-\text{lr}\cdot\hat m/(\sqrt{\hat v} + \varepsilon)$ ($\hat m$,
# $\hat v$: the averages corrected for starting at zero; $\varepsilon = 10^{-8}$). Answer `True`
# (changed) or `False` (unchanged) for each.

# %% tags=["exercise"]
# ✏️ True if the factor changed in the first Adam step, False if not
a_changes = ...  # ✏️ your answer
b_changes = ...  # ✏️ your answer

# %% [markdown]
# The check runs the experiment on a layer of its own (§2.3 runs it on our model):

# %%
_ = checks.check_first_adam_step(a_changes, b_changes)

# %% [markdown]
# Now one backward pass through the adapted model:

# %%
model = apply_lora(make_model(), TARGETS, r=4, alpha=8)
x_in = X_seq.clone().requires_grad_(True)
nn.functional.mse_loss(model(x_in), Y_seq).backward()
frozen = [p for p in model.parameters() if not p.requires_grad]
print(f"{len(frozen)} frozen tensors; any of them with a gradient: "
      f"{any(p.grad is not None for p in frozen)}")
for name, p in model.named_parameters():
    if p.requires_grad:
        print(f"  trainable {name:<24} {tuple(p.shape)!s:<8} |grad| max {p.grad.abs().max():.2g}")
print(f"the input x still gets a gradient: {x_in.grad is not None and bool(x_in.grad.any())}")

# %%
assert all(p.grad is None for p in frozen) and x_in.grad.abs().max() > 0
assert all((p.grad == 0).all() == name.endswith("lora_A")      # dL/dA = 0 while B = 0
           for name, p in model.named_parameters() if p.requires_grad)

# %% [markdown]
# Three things to read off:
#
# * Frozen parameters get **no gradient** (`None`) — no memory for it, and no optimiser state
#   later. That is where LoRA saves memory.
# * The input still gets a gradient. Backpropagation still passes *through* every frozen layer
#   (multiplying by $W_0^\top$) to reach the layers below; freezing saves the *weight*
#   gradients, not the backward pass.
# * Every `lora_A` has a gradient of exactly zero, every `lora_B` a non-zero one: at the start
#   $B = 0$, so $\partial L/\partial A = s\,(GB)^\top X = 0$ (notebook 02 §4). That is not a bug;
#   §2.3 shows what Adam does with it.
#
# ### 2.2 "The trainable-parameter count looks wrong"
#
# Each adapted layer adds $r\cdot(\text{in} + \text{out})$ trainable numbers: $B$ has
# out × r, $A$ has r × in. `count_parameters` returns `(trainable, total)`, the same two numbers
# as PEFT's `get_nb_trainable_parameters()`. Let's check both against the formula, and PEFT's
# printout on the same model with the same configuration.

# %%
counts = count_parameters(model)
formula = sum(lay.r * (lay.in_features + lay.out_features) for _, lay in lora_layers(model))
base_total = count_parameters(make_model()).total
print(f"adapted layers: {[name for name, _ in lora_layers(model)]}")
print(f"formula: 4 layers × 4 × (16 + 16) = {formula};  count_parameters: {counts}")
assert counts.trainable == formula == 4 * 4 * (16 + 16)
assert counts.total == base_total + formula                       # the total includes A and B

peft_twin = get_peft_model(make_model(), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
peft_twin.print_trainable_parameters()
assert peft_twin.get_nb_trainable_parameters() == tuple(counts)

# %% [markdown]
# The same numbers three ways. When a count looks wrong, it is usually one of these:
#
# * **The total includes the adapter.** "all params" is the base model *plus* $A$ and $B$, so
#   the percentage is trainable / (base + trainable), not trainable / base.
# * **Biases and everything else stay frozen.** Only $A$ and $B$ train (PEFT's default
#   `bias="none"`); the adapted layers' own biases are frozen too.
# * **Other layers were adapted than you thought.** The count grows with every adapted layer;
#   §3 shows how `target_modules` picks them and how to list what was picked.
#
# ### ✏️ Exercise 2 — count a model with biases
#
# A model consists of `nn.Linear` layers **with bias**, of the (out_features, in_features)
# shapes in `shapes`, and every one of them gets a rank-`r` adapter. Write
# `my_parameter_count(shapes, r)` returning the pair `(trainable, total)` that
# `count_parameters` would report after `apply_lora`. Work it out on paper first: what is frozen,
# and what does the total include?

# %% tags=["exercise"]
def my_parameter_count(shapes: list[tuple[int, int]], r: int) -> tuple[int, int]:
    """(trainable, total) parameters of Linear layers with bias of the given
    (out_features, in_features) shapes, each with a rank-r LoRA adapter."""
    # ✏️ your code here
    raise NotImplementedError("exercise: write my_parameter_count")


# %%
_ = checks.check_parameter_count(my_parameter_count)

# %% [markdown]
# ### 2.3 What one optimiser step changes
#
# Exercise 1's experiment on our model: snapshot every tensor of the model (`state_dict`), take
# one Adam step, list the tensors that changed; then a second step.

# %%
def adam_step(model: nn.Module, optimizer: torch.optim.Optimizer,
              before: dict[str, torch.Tensor]) -> list[str]:
    """One Adam step on the teacher task; the names of the tensors changed since `before`."""
    optimizer.zero_grad()
    task_loss(model).backward()
    optimizer.step()
    return [name for name, t in model.state_dict().items() if not torch.equal(t, before[name])]


# %%
model = apply_lora(make_model(), TARGETS, r=4, alpha=8)
optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
before = {name: t.clone() for name, t in model.state_dict().items()}
after_one = adam_step(model, optimizer, before)
after_two = adam_step(model, optimizer, before)
print(f"changed after 1 step:  {after_one}")
print(f"changed after 2 steps: {after_two}")
assert all(name.endswith("lora_B") for name in after_one) and len(after_one) == 4
assert sorted(after_two) == sorted(after_one + [n.replace("_B", "_A") for n in after_one])
assert not any(".base." in name for name in after_two)            # W0 and biases: never

# %% [markdown]
# In the first step only the four `lora_B` matrices change: $A$'s gradient is exactly zero, and
# for a zero gradient Adam's averages $m$ and $v$ stay zero, and so does its step. In the second
# step $B \ne 0$, so $A$ has a gradient and moves too. The base weights and biases never
# change. (With **AdamW**, whose default `weight_decay=0.01` shrinks every parameter by
# $\text{lr}\cdot 0.01$ of itself at each step whatever its gradient, $A$ does change in the
# first step — by that decay, not by learning:)

# %%
decayed = apply_lora(make_model(), TARGETS, r=4, alpha=8)
A_first = [lay.lora_A.detach().clone() for _, lay in lora_layers(decayed)]
adamw = torch.optim.AdamW([p for p in decayed.parameters() if p.requires_grad], lr=1e-2)
adamw.zero_grad()
task_loss(decayed).backward()
adamw.step()
for (_, lay), a0 in zip(lora_layers(decayed), A_first, strict=True):
    torch.testing.assert_close(lay.lora_A.detach(), a0 * (1 - 1e-2 * 0.01))   # decay only
print("AdamW's first step: every A shrank by lr × weight_decay = 0.01 % of itself, nothing else")

# %% [markdown]
# How large is $B$ after that first step? Adam's first step moves every entry by the learning
# rate (notebook 02 §7.3), so $\lVert B_1\rVert_F = \text{lr}\cdot\sqrt{\#\text{entries}}$,
# whatever the gradient's size. Let's follow $\lVert\partial L/\partial A\rVert$, $\lVert B\rVert$
# and how far $A$ has moved over the first 10 steps (norms over all four adapted layers).

# %%
def norm(tensors: Iterable[torch.Tensor]) -> float:
    """Frobenius norm of several tensors taken together, as one long vector."""
    return math.sqrt(sum(t.detach().square().sum().item() for t in tensors))


# %%
model = apply_lora(make_model(), TARGETS, r=4, alpha=8)
factors = [(lay.lora_A, lay.lora_B) for _, lay in lora_layers(model)]
A_start = [a.detach().clone() for a, _ in factors]
optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
history = {}
for step in range(11):
    optimizer.zero_grad()
    task_loss(model).backward()
    history[step] = (norm(a.grad for a, _ in factors), norm(b for _, b in factors),  # |dL/dA|, |B|
                     norm(a - a0 for (a, _), a0 in zip(factors, A_start, strict=True)))
    optimizer.step()

# %%
print("step   |dL/dA|      |B|   |A - A_start|")
for step in (0, 1, 2, 10):
    grad_a, norm_b, moved_a = history[step]
    print(f"{step:>4}   {grad_a:7.2g}   {norm_b:6.3f}   {moved_a:9.2g}")
entries_of_b = sum(b.numel() for _, b in factors)                  # 4 layers × 16 × 4 = 256
assert history[0][:2] == (0.0, 0.0) and history[1][2] == 0.0      # step 0: nothing to move A
np.testing.assert_allclose(history[1][1], 1e-2 * math.sqrt(entries_of_b), rtol=1e-2)
assert history[1][0] > 0 and history[2][2] > 0 and history[10][1] > history[1][1]

# %% [markdown]
# At step 0, $\partial L/\partial A = 0$ and $B = 0$. After one step $\lVert B\rVert$ is
# $0.01\cdot\sqrt{256} = 0.16$ (to within 1 %, asserted: entries whose gradient is tiny move a
# little less, because of Adam's $\varepsilon = 10^{-8}$) and $A$ has a gradient; after two
# steps $A$ has moved.
# So if you inspect a LoRA at step 0 and find that $A$ has no gradient, nothing is wrong.
#
# ### 2.4 "My LoRA isn't learning"
#
# Before the experiments of this section, a trap to find yourself.
#
# ### ✏️ Exercise 3 — find the trap
#
# This function is meant to add LoRA ($r = 4$, $\alpha = 8$) to `q_proj` and `v_proj` and
# return an Adam optimiser that trains it — but training with it never changes the loss:
#
# ```python
# def lora_setup(model, lr):
#     optimizer = torch.optim.Adam(model.parameters(), lr=lr)
#     apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
#     return optimizer
# ```
#
# Why not? (Think about which tensors exist, and which require a gradient, at each line.)
# Write a version that works.

# %% tags=["exercise"]
def lora_setup(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Add LoRA (r=4, alpha=8) to q_proj and v_proj of model; return an Adam optimiser
    with learning rate lr that trains the adapter."""
    # ✏️ your code here
    raise NotImplementedError("exercise: write lora_setup")


# %%
_ = checks.check_lora_setup(lora_setup)

# %% [markdown]
# Now four classic reasons why a LoRA really does not learn, each shown failing beside a
# correct run. Each trains for 30 steps with Adam, and we report the share of the starting loss
# removed (the loss measured once more after the last step). First the training loop:

# %%
def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 30) -> float:
    """Full-batch training on the teacher task; the share of the starting loss removed
    (the loss before the first step vs the loss after the last)."""
    first = task_loss(model).item()
    for _ in range(steps):
        loss = task_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = task_loss(model).item()
    return 1 - last / first


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that require a gradient: after apply_lora, the LoRA factors."""
    return [p for p in model.parameters() if p.requires_grad]


# %%
good = apply_lora(make_model(), TARGETS, r=4, alpha=8)
removed = {"correct: Adam over trainable(model), lr 1e-2": train(
    good, torch.optim.Adam(trainable(good), lr=1e-2))}

early = make_model()
optimizer_early = torch.optim.Adam(early.parameters(), lr=1e-2)   # BEFORE apply_lora
apply_lora(early, TARGETS, r=4, alpha=8)
removed["optimizer created before apply_lora"] = train(early, optimizer_early)

both_zero = apply_lora(make_model(), TARGETS, r=4, alpha=8)
with torch.no_grad():
    for _, lay in lora_layers(both_zero):
        lay.lora_A.zero_()                                        # A = 0 as well as B = 0
removed["A and B both zero"] = train(both_zero, torch.optim.Adam(trainable(both_zero), lr=1e-2))

# %%
tiny_lr = apply_lora(make_model(), TARGETS, r=4, alpha=8)
removed["learning rate 1e-6"] = train(tiny_lr, torch.optim.Adam(trainable(tiny_lr), lr=1e-6))
for case, share in removed.items():
    print(f"{case:<47} loss removed in 30 steps: {share:6.1%}")
correct, *failures = removed.values()
assert correct > 0.5 and failures[0] == 0.0 and failures[1] == 0.0 and 0 < failures[2] < 0.01
moved = max(lay.lora_B.abs().max().item() for _, lay in lora_layers(tiny_lr))   # B started at 0
print(f"learning rate 1e-6: the entry of B that moved most moved {moved:.1e} in 30 steps")
assert 1e-5 < moved < 1e-4

# %% [markdown]
# * **Optimiser created before `apply_lora`.** The optimiser holds the tensors that existed when
#   it was created: the base weights, which `apply_lora` then froze. The new `lora_A` and
#   `lora_B` are not in it, so nothing ever updates them: the loss does not move at all
#   (Exercise 3). The fix is the order: `apply_lora` first, then the optimiser. A quick check
#   you can run in any training script:

# %%
def optimizer_covers(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """True if every parameter of model that requires a gradient is in the optimizer."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return all(id(p) in held for p in trainable(model))


print(f"early optimiser covers the adapter: {optimizer_covers(early, optimizer_early)}")
assert not optimizer_covers(early, optimizer_early)

# %% [markdown]
# * **A and B both zero.** A saddle point with zero gradients (notebook 02 §4): nothing moves,
#   ever. It happens when a custom initialisation zeroes all LoRA parameters; LoRA needs one
#   random factor.
# * **A learning rate far too small.** With Adam each entry moves by about the learning rate per
#   step, so at `1e-6` thirty steps move an entry of $B$ by about $3\cdot10^{-5}$ (the largest
#   move, printed above: asserted between $10^{-5}$ and $10^{-4}$): almost nothing happens.
#   Which learning rate suits depends on the model and the task; notebook 04 tunes it for LoRA
#   and for full fine-tuning on a real task and compares the two.
# * **Training a merged model.** A merged layer computes only $W'x$ with $W' = W_0 + s\,BA$
#   (§6), so no gradient reaches $A$ and $B$. With a trainable head beside them (PEFT's
#   `modules_to_save`, §7) the loss still falls, and the adapter silently does not learn. PEFT
#   0.21 lets that happen:

# %%
peft_merged = get_peft_model(make_model(), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS,
                                                      modules_to_save=["head"]))
peft_merged.merge_adapter()                                       # merged, still in train mode
task_loss(peft_merged).backward()
grads = {name: p.grad for name, p in peft_merged.named_parameters() if p.requires_grad}
to_head = all(g is not None for name, g in grads.items() if "lora_" not in name)
to_lora = any(g is not None for name, g in grads.items() if "lora_" in name)
print(f"PEFT, merged: gradients reach the head: {to_head};  any lora_A or lora_B: {to_lora}")
assert to_head and not to_lora

# %% [markdown]
# `lora_lab` refuses such a forward pass — training mode, gradients on, trainable factors —
# and says why:

# %%
merged_model = merge_lora(apply_lora(make_model(), TARGETS, r=4, alpha=8))
try:
    train(merged_model, torch.optim.Adam(trainable(merged_model), lr=1e-2))
except RuntimeError as error:
    refusal = str(error)
print(textwrap.fill(refusal, 100))
assert "unmerge first" in refusal and not any(lay.lora_B.any() for _, lay in
                                              lora_layers(merged_model))   # nothing trained

# %% [markdown]
# To train again, `unmerge_lora(model)` first; for inference, `model.eval()` or
# `torch.no_grad()`, as this notebook does wherever it runs a merged model.
#
# **$\partial L/\partial A = 0$ at step 0** is not one of the causes: it is how LoRA starts
# (§2.3).
#
# ## 3 · Choosing targets: "Which target_modules should I adapt?"
#
# `target_modules` says which `nn.Linear` layers get an adapter. `lora_lab` follows PEFT's
# matching rules:
#
# * a **list** of names: an entry matches a layer whose path equals it or ends with `.` + it,
#   so `"q_proj"` matches `blocks.0.q_proj` and `blocks.1.q_proj`;
# * a single **string** is a regular expression that must match the *whole* path;
# * `"all-linear"` selects every `nn.Linear`. (On a Hugging Face `transformers` model, PEFT
#   leaves out the output layer, whose name it can look up; on a plain `nn.Module` like ours
#   there is no such layer, and both libraries take the head too.)
#
# Here are the Linear layers of our model, and what three choices select — in `lora_lab` and
# in PEFT, asserted to be the same:

# %%
linear_names = [name for name, m in make_model().named_modules() if isinstance(m, nn.Linear)]
print(f"{len(linear_names)} Linear layers: {linear_names}")


def peft_choice(targets: str | list[str]) -> list[str]:
    """The module paths PEFT adapts in a fresh model for these target_modules."""
    adapted = get_peft_model(make_model(), LoraConfig(target_modules=targets))
    suffix = ".lora_A.default.weight"
    return sorted(name.removeprefix("base_model.model.").removesuffix(suffix)
                  for name, _ in adapted.named_parameters() if name.endswith(suffix))


# %%
choices = {"['q_proj', 'v_proj']": TARGETS, r"'blocks\.1\..*'": r"blocks\.1\..*",
           "'all-linear'": "all-linear"}
for shown, targets in choices.items():
    adapted = apply_lora(make_model(), targets, r=4, alpha=8)
    paths = sorted(name for name, _ in lora_layers(adapted))
    assert paths == peft_choice(targets)                           # PEFT picks the same
    print(f"{shown:<22} {len(paths):>2} layers, {count_parameters(adapted).trainable:>5} "
          f"trainable: {textwrap.shorten(', '.join(paths), 60, placeholder=' ...')}")

# %% [markdown]
# Which layers to choose is an empirical question, and the answer depends on the model and the task.
# Two data points from the literature: the LoRA paper adapted only attention weights and froze the
# MLPs (its §4.2), in most experiments only the query and value projections $W_q$, $W_v$ (§5), and
# found that under a fixed parameter budget, adapting both $W_q$ and $W_v$ at a small rank beat
# adapting $W_q$ alone at a larger rank (§7.1, Table 5); the QLoRA paper (Dettmers et al., 2023)
# reports that LoRA on *all* linear layers of the transformer blocks was needed to match full
# fine-tuning. Notebook 06 compares the two choices on a real transformer. Whatever you choose,
# **look at what was adapted**, as above: `lora_layers(model)` lists it.
#
# ### A typo in `target_modules`
#
# A misspelt entry is a common way to adapt fewer layers than intended. `lora_lab` refuses any
# entry that matches nothing, and its message lists the Linear layers that do exist. Nothing is
# changed when it refuses:

# %%
model = make_model()
try:
    apply_lora(model, ["q_proj", "v_porj"], r=4, alpha=8)
except ValueError as error:
    message = str(error)
print(textwrap.fill(message, 100))
assert "v_porj" in message and all(name in message for name in linear_names)
assert not list(lora_layers(model))                                # all or nothing

# %% [markdown]
# PEFT 0.21 behaves differently here: it raises only when *no* entry matches anything. With
# one good entry beside the typo it adapts what it can, silently:

# %%
print(f"PEFT adapted with ['q_proj', 'v_porj']: {peft_choice(['q_proj', 'v_porj'])}")
assert peft_choice(["q_proj", "v_porj"]) == ["blocks.0.q_proj", "blocks.1.q_proj"]

# %% [markdown]
# Another reason to print what was adapted, and to check the trainable count against the
# formula of §2.2.
#
# ## 4 · Adapter on and off: comparing with the base model
#
# To see what an adapter does, compare the model with and without it. Removing and re-adding
# the adapter is clumsy; PEFT has a context manager instead, `with peft_model.disable_adapter():`,
# and `lora_lab` has the same, `with disable_adapter(model):`. Inside the block every LoRA layer
# computes only its base layer; afterwards the adapter is back. Let's train an adapter on the
# teacher task and compare.

# %%
model = apply_lora(make_model(), TARGETS, r=4, alpha=8)
share_removed = train(model, torch.optim.Adam(trainable(model), lr=1e-2), steps=60)
with torch.no_grad():
    with disable_adapter(model):
        loss_off, out_off = task_loss(model).item(), model(X_seq)
    loss_on = task_loss(model).item()
    pretrained_out = make_model()(X_seq)
print(f"loss without the adapter (the pretrained model's): {loss_off:.2g};  with the adapter: "
      f"below 1 % of that: {loss_on < 0.01 * loss_off}")
assert torch.equal(out_off, pretrained_out)            # disabled: exactly the pretrained model
assert loss_on < 0.01 * loss_off and share_removed > 0.9

# %% [markdown]
# With the adapter disabled, the model's outputs are the pretrained model's, bit for bit;
# with it enabled, the loss on the new task is less than a hundredth of that. PEFT's version
# works the same way. To see it do something, we give `peft_twin` (§2.2, until now untrained:
# $B = 0$) the factors we just trained:

# %%
with torch.no_grad():
    for name, lay in lora_layers(model):
        twin_layer = peft_twin.base_model.model.get_submodule(name)
        twin_layer.lora_A["default"].weight.copy_(lay.lora_A)
        twin_layer.lora_B["default"].weight.copy_(lay.lora_B)
    peft_on, ours_on = peft_twin(X_seq), model(X_seq)
    with peft_twin.disable_adapter():
        peft_off = peft_twin(X_seq)
torch.testing.assert_close(peft_on, ours_on, rtol=1e-5, atol=1e-6)  # enabled: our trained model
assert not torch.allclose(peft_on, pretrained_out, atol=1e-3)        # ... which is not the base
assert torch.equal(peft_off, pretrained_out)                         # disabled: exactly the base
print("PEFT, same trained factors: enabled it computes our adapted model (to float32 rounding), "
      "disabled exactly the pretrained model")

# %% [markdown]
# ## 5 · Dropout: "What does lora_dropout do at inference?"
#
# `dropout=p` (PEFT: `lora_dropout`) applies `nn.Dropout(p)` to the *adapter's input*:
# $h = W_0x + s\,B A\,\text{dropout}(x)$. In training mode, each entry of $x$ is zeroed with
# probability $p$ — a different random **mask** at every call. In evaluation mode
# (`model.eval()`), dropout does nothing.
#
# Let's take a layer with $p = 0.5$ whose $B$ is not zero (as after training) and call it twice
# in each mode.

# %%
torch.manual_seed(0)
layer = LoRALinear(nn.Linear(16, 8), r=4, alpha=8, dropout=0.5)
with torch.no_grad():
    layer.lora_B.normal_()                                         # as if trained
x = torch.randn(3, 16)
with torch.no_grad():
    train_1, train_2 = layer.train()(x), layer(x)
    eval_1, eval_2 = layer.eval()(x), layer(x)
    merged_out = merge_and_unload(copy.deepcopy(layer))(x)        # one plain nn.Linear
print(f"train mode: two calls equal? {torch.equal(train_1, train_2)}   "
      f"eval mode: {torch.equal(eval_1, eval_2)}")
assert not torch.equal(train_1, train_2) and torch.equal(eval_1, eval_2)
torch.testing.assert_close(eval_1, merged_out, rtol=1e-5, atol=1e-6)   # float32 rounding only
print("eval mode equals the merged layer (W0 + ΔW) up to float32 rounding")

# %% [markdown]
# In training, the outputs are random; at inference (eval mode), they are fixed and equal the
# merged model's. Merging has no dropout to deal with, because inference has none. But which
# fixed output *should* inference give? A natural candidate is the training-mode output
# averaged over all masks. Is that the eval-mode output, or something else?
#
# ### ✏️ Exercise 4 — the average over all masks
#
# Write `expected_output(layer, x)`: the output of `layer` (a `LoRALinear` with dropout, in
# **training** mode) averaged over all possible dropout masks — computed exactly, not by
# sampling. Start from what one entry of `dropout(x)` is on average; to see what `nn.Dropout`
# does to the entries it keeps, try `nn.Dropout(0.5)(torch.ones(8))` in a cell of your own.

# %% tags=["exercise"]
def expected_output(layer: LoRALinear, x: torch.Tensor) -> torch.Tensor:
    """Average of layer(x) in training mode over all dropout masks; x (N, in) -> (N, out)."""
    # ✏️ your code here
    raise NotImplementedError("exercise: write expected_output")


# %%
_ = checks.check_expected_output(expected_output)

# %% [markdown]
# **Why no rescaling at inference?** Because `nn.Dropout` rescales during *training*
# ("inverted dropout"): an entry survives with probability $1 - p$ and is then divided by
# $1 - p$, so its expected value is $(1-p)\cdot x/(1-p) = x$. On average over masks, the
# training-mode layer already computes the evaluation-mode output. Let's check with 20,000
# masks at once — 20,000 copies of one input in a single batch:

# %%
torch.manual_seed(1)                                               # the same masks on a re-run
n_masks = 20_000
dropped_ones = nn.Dropout(0.5)(torch.ones(1000))                  # a fresh nn.Dropout trains
print(f"dropout(p = 0.5) of ones takes the values {sorted(set(dropped_ones.tolist()))}")
with torch.no_grad():
    samples = layer.train()(x[:1].expand(n_masks, -1))             # (20000, 8): one per mask
mean, standard_error = samples.mean(0), samples.std(0) / math.sqrt(n_masks)
z = ((mean - eval_1[0]) / standard_error).abs().max().item()
print(f"average over {n_masks:,} masks vs the eval-mode output: every output within "
      f"4.5 standard errors: {z < 4.5}")
assert z < 4.5

# %% [markdown]
# The average over masks agrees with the eval-mode output up to the sampling noise. Had dropout
# not divided by $1 - p$, the average branch would be $(1-p)$ times too small, and inference
# would need a correction; inverted dropout moves that correction into training.
#
# **The base path never sees dropout.** Only the adapter's input is dropped; $W_0x$ is computed
# from the full $x$. With a fresh adapter ($B = 0$), even training-mode outputs are exactly the
# pretrained layer's:

# %%
fresh = LoRALinear(nn.Linear(16, 8), r=4, alpha=8, dropout=0.5).train()   # B = 0
with torch.no_grad():
    assert torch.equal(fresh(x), fresh.base(x))
print("B = 0, training mode, p = 0.5: output identical to the base layer's")

# %% [markdown]
# ## 6 · Merge and unmerge
#
# ### 6.1 Identical outputs, and a round trip back to $W_0$
#
# `merge_lora(model)` folds every adapter into its weight, $W \leftarrow W_0 + s\,BA$, so that
# each layer is one plain matrix multiply (notebook 02 §6); `unmerge_lora(model)` puts $W_0$
# back. We adapt all 13 layers, give each $B$ random values (as if trained), and compare outputs
# in float32 and in float64.

# %%
def merge_round_trip(dtype: torch.dtype) -> tuple[float, bool]:
    """(largest |merged - unmerged| output relative to the largest output, whether unmerge
    restored every W0 bit for bit) for the all-linear adapted model in dtype."""
    model = apply_lora(make_model().to(dtype), "all-linear", r=4, alpha=8).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for _, lay in lora_layers(model):
            lay.lora_B.normal_(std=0.1)                            # as if trained
        W_start = {name: lay.base.weight.clone() for name, lay in lora_layers(model)}
        unmerged = model(X_seq.to(dtype))
        merged = merge_lora(model)(X_seq.to(dtype))
        unmerge_lora(model)
    restored = all(torch.equal(lay.base.weight, W_start[name]) for name, lay in lora_layers(model))
    return ((merged - unmerged).abs().max() / unmerged.abs().max()).item(), restored


# %%
for dtype, tolerance in ((torch.float32, 1e-5), (torch.float64, 1e-13)):
    difference, restored = merge_round_trip(dtype)
    print(f"{dtype!s:<14} merged vs unmerged outputs differ by less than {tolerance:.0e} of "
          f"the largest output: {difference < tolerance};  W0 restored exactly: {restored}")
    assert difference < tolerance and restored

# %% [markdown]
# Merged and unmerged outputs agree to rounding: below $10^{-5}$ of the output's size in float32
# (whose relative precision is about $10^{-7}$, and 13 layers of rounding add up) and below
# $10^{-13}$ in float64. The round trip restores $W_0$ **exactly**, because `unmerge` does not
# compute $W - s\,BA$: `merge` keeps a copy of $W_0$ and `unmerge` puts it back. Subtracting rounds
# a second time, so it is not always exact: notebook 02's Exercise 3 measured it in float32, where
# merging and unmerging by subtraction did not give $W_0$ back exactly (errors of the order of
# $\varepsilon$ times the entries' size). In bfloat16 that shows far more. PEFT 0.21 unmerges by
# subtraction; here is a merge/unmerge round trip of the same bf16 layer in both libraries, with an
# update of about 1 % of $W_0$:

# %%
rng_bf = np.random.default_rng(2)
W_bf16 = torch.from_numpy(rng_bf.normal(size=(256, 256)) / 16).to(torch.bfloat16)
A_bf, B_bf = (torch.from_numpy(rng_bf.normal(size=shape)).float() for shape in [(8, 256), (256, 8)])
B_bf *= 1e-2 * W_bf16.float().norm() / (2 * B_bf @ A_bf).norm()    # |ΔW| = 1 % of |W0|


def bf16_model() -> OneLayer:
    """A one-layer model whose weight is W_bf16, stored in bfloat16."""
    model = OneLayer(nn.Linear(256, 256, bias=False, dtype=torch.bfloat16))
    with torch.no_grad():
        model.proj.weight.copy_(W_bf16)
    return model


# %%
ours_bf16 = apply_lora(bf16_model(), ["proj"], r=8, alpha=16)
peft_bf16 = get_peft_model(bf16_model(), LoraConfig(r=8, lora_alpha=16, target_modules=["proj"]))
peft_proj = peft_bf16.base_model.model.proj
with torch.no_grad():                                             # float32 factors in both
    for A_t, B_t in ((ours_bf16.proj.lora_A, ours_bf16.proj.lora_B),
                     (peft_proj.lora_A["default"].weight, peft_proj.lora_B["default"].weight)):
        A_t.copy_(A_bf)
        B_t.copy_(B_bf)

# %%
unmerge_lora(merge_lora(ours_bf16))
peft_bf16.merge_adapter()
peft_bf16.unmerge_adapter()
share_ours = (ours_bf16.proj.base.weight != W_bf16).float().mean().item()
share_peft = (peft_proj.base_layer.weight != W_bf16).float().mean().item()
print(f"after merge + unmerge in bf16, W0 changed in {share_ours:.0%} of the entries with "
      f"lora_lab and in {share_peft:.0%} with PEFT")
assert share_ours == 0 and share_peft > 0.01

# %% [markdown]
# With PEFT, a couple of percent of the entries of $W_0$ come back changed after one round
# trip. If you switch adapters on a bf16 base by merging and unmerging, the base
# drifts a little with every switch; keeping the adapters unmerged avoids that.
#
# ### 6.2 "Why does the merged model give different outputs?"
#
# In float32 a merge changes outputs only at the rounding level (§6.1). In **bf16** or **fp16**
# — the formats large models are usually run in — the story is different. Rounding moves a
# number to the nearest one the format can hold; near a value $w$ those are about
# $\varepsilon\,|w|$ apart, where $\varepsilon$ is the format's precision (the gap between 1
# and the next number). Two different things get rounded:
#
# * **merged**, the sum $W_0 + \Delta W$ is rounded to bf16/fp16, once, when merging;
# * **unmerged**, `LoRALinear` (and PEFT) compute the branch from float32 factors, but then
#   convert it to the layer's dtype and add it to $W_0x$, already a bf16/fp16 number: the
#   *output* is rounded, at every call.
#
# A fine-tuning update is often small compared with $W_0$ — how does it fare in each? First the
# merged weight. An experiment: a 256 × 256 layer and updates of five sizes,
# $\lVert\Delta W\rVert_F/\lVert W_0\rVert_F = \rho \in \{10^{-5}, \dots, 10^{-1}\}$. For each
# format we merge with `LoRALinear.merge()` and measure the merged weight's error against the
# exact $W_0 + \Delta W$, computed in float64 from the stored $W_0$. (One layer on its own
# merges with its `merge()`; for a model, `merge_lora(model)` merges every LoRA layer and also
# refuses when another module shares a weight — a tied embedding, say — which a single layer
# cannot see.)

# %%
rng_m = np.random.default_rng(3)
W_exact = torch.from_numpy(rng_m.normal(size=(256, 256)) / 16)          # float64
A_m = torch.from_numpy(rng_m.normal(size=(8, 256)))
B_unit = torch.from_numpy(rng_m.normal(size=(256, 8)))
B_unit /= (2.0 * B_unit @ A_m).norm() / W_exact.norm()        # now |2 B A| = |W0|


# %%
def merge_error(dtype: torch.dtype, rho: float) -> float:
    """|merged W - (W0 + ΔW)|_F / |W0|_F for a LoRALinear (r=8, alpha=16, scaling 2) stored
    in dtype, with |ΔW| = rho |W0|."""
    base = nn.Linear(256, 256, bias=False, dtype=dtype)
    layer = LoRALinear(base, r=8, alpha=16)
    with torch.no_grad():
        base.weight.copy_(W_exact)                                     # rounded to dtype
        layer.lora_A.copy_(A_m)
        layer.lora_B.copy_(rho * B_unit)
        exact = base.weight.double() + layer.delta_weight().double()
        layer.merge()
    return ((base.weight.double() - exact).norm() / W_exact.norm()).item()


# %%
formats = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
print("merge error / |W0|      " + "".join(f"{name:>11}" for name in formats))
print("eps of the format       " + "".join(f"{torch.finfo(t).eps:11.1e}" for t in formats.values()))
errors = {}
for rho in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
    errors[rho] = {name: merge_error(t, rho) for name, t in formats.items()}
    print(f"|ΔW| = {rho:.0e} |W0|     " + "".join(f"{e:11.1e}" for e in errors[rho].values()))

# %%
for name in ("bfloat16", "float16"):
    eps = torch.finfo(formats[name]).eps
    large, small = [rho for rho in errors if rho >= 10 * eps], [rho for rho in errors
                                                                  if rho <= eps / 10]
    assert large and small                      # each regime is tested in each format
    for rho in large:                           # a large update: rounding of about eps |W0|
        assert 0.1 * eps < errors[rho][name] < eps, (name, rho)
    for rho in small:                           # a small update: almost all of it lost
        assert 0.5 * rho < errors[rho][name] <= rho, (name, rho)
assert all(row["float32"] < 1e-7 for row in errors.values())
assert errors[1e-3]["bfloat16"] > 0.5e-3 and errors[1e-4]["float16"] > 0.5e-4   # in between

# %% [markdown]
# Read the table by rows. In float32 the error stays below $10^{-7}$ of $\lVert W_0\rVert$:
# nothing. In bf16 and fp16 there are two regimes, each asserted above in both formats:
#
# * **A large update** ($\rho$ at least ten times $\varepsilon$) is merged with a rounding error
#   of a fixed fraction of $\varepsilon\,\lVert W_0\rVert$ — between 0.1 and 1 times here.
# * **A small update** ($\rho$ at most a tenth of $\varepsilon$) is mostly *lost*: the error
#   is almost $\rho$ itself. $W_0$ already sits on the format's grid of representable numbers,
#   and adding an entry smaller than half the grid spacing rounds straight back to $W_0$.
#
# In between, the merge still loses most of an update: in bf16 ($\varepsilon = 2^{-7} \approx
# 0.008$) one of $10^{-3}\lVert W_0\rVert$, in fp16 ($\varepsilon \approx 0.001$) one of
# $10^{-4}\lVert W_0\rVert$ (asserted: the error is more than half of $\rho$).
#
# Does the unmerged layer keep what the merge loses? Its output is rounded too. We compare the
# outputs on 64 inputs with the exact output $(W_0 + \Delta W)x$, computed in float64 from the
# stored $W_0$, for two of the sizes the merge mostly lost — and once more with the whole layer
# converted to float32 (`.float()`, which is exact for bf16/fp16 weights):

# %%
def output_errors(dtype: torch.dtype, rho: float) -> dict[str, float]:
    """|output - exact output|_F / |exact effect of ΔW on the output|_F on 64 inputs, unmerged,
    merged and in float32, for merge_error's layer; "gap": |merged - unmerged|_F on the same
    scale; "same": the share of unmerged outputs equal to base(x)."""
    layer = LoRALinear(nn.Linear(256, 256, bias=False, dtype=dtype), r=8, alpha=16).eval()
    with torch.no_grad():
        layer.base.weight.copy_(W_exact)
        layer.lora_A.copy_(A_m)
        layer.lora_B.copy_(rho * B_unit)
        x = torch.from_numpy(np.random.default_rng(4).normal(size=(64, 256))).to(dtype)
        W0 = layer.base.weight.double()
        exact = x.double() @ (W0 + layer.delta_weight().double()).T
        effect = (exact - x.double() @ W0.T).norm()
        outputs = {"unmerged": layer(x), "float32": copy.deepcopy(layer).float()(x.float())}
        same = (outputs["unmerged"] == layer.base(x)).float().mean().item()
        layer.merge()
        outputs["merged"] = layer(x)
    result = {key: ((out.double() - exact).norm() / effect).item() for key, out in outputs.items()}
    gap = ((outputs["merged"].double() - outputs["unmerged"].double()).norm() / effect).item()
    return result | {"gap": gap, "same": same}


# %%
print(" " * 27 + "error vs the exact output, as a multiple of the update's effect")
print(" " * 27 + "unmerged   merged   float32     unmerged outputs = base(x)")
out_errors = {}
for name, rho in (("bfloat16", 1e-4), ("bfloat16", 1e-3), ("float16", 1e-4), ("float16", 1e-3)):
    e = out_errors[name, rho] = output_errors(formats[name], rho)
    print(f"{name:<8} |ΔW| = {rho:.0e} |W0| {e['unmerged']:9.2g} {e['merged']:8.2g}   "
          f"{'< 0.01' if e['float32'] < 0.01 else e['float32']:>7}     {e['same']:10.0%}")
assert all(abs(e["unmerged"] / e["merged"] - 1) < 0.05 and e["float32"] < 0.01
           for e in out_errors.values())
small_bf16 = out_errors["bfloat16", 1e-4]
assert small_bf16["unmerged"] > 10 and small_bf16["gap"] > 1 and small_bf16["same"] > 0.9

# %% [markdown]
# In every row the unmerged and the merged outputs are equally far from the exact output
# (within 5 % of each other, asserted). For an update of $10^{-4}\lVert W_0\rVert$ in bf16 both
# miss it by more than ten times its whole effect (asserted), and most unmerged outputs are
# bit for bit `base(x)`'s (more than 90 %, asserted): a branch smaller than half a bf16 step
# of the output rounds away, just as the update did in the merge. The float32 layer keeps the
# update (its error is below 1 % of the update's effect, asserted). So:
#
# * merged and unmerged outputs differ in bf16/fp16 because they round in different places (the
#   weight once, the output at every call) — for the small bf16 update by more than its whole
#   effect (asserted) — and neither of them is the exact output;
# * compare them with a tolerance that matches the format ($\approx\varepsilon$ relative, not
#   $10^{-6}$);
# * compute $\lVert\Delta W\rVert/\lVert W_0\rVert$ for your own adapter (`delta_weight()`
#   gives $\Delta W$) and compare it with $\varepsilon$: an update far below
#   $\varepsilon\lVert W_0\rVert$ hardly shows in 16-bit outputs, merged or not;
# * to keep such an update, the computation must run in higher precision: convert the model
#   (or its adapted layers) to float32 — exact for bf16/fp16 weights — and use the adapter
#   there, merged into the float32 weights or not. Keeping it unmerged in bf16 does not help.
#
# ### 6.3 "Is inference slower with an unmerged adapter?"
#
# Merged, a LoRA layer is one matrix multiply with a weight of the usual shape: it costs what
# `nn.Linear` costs. Unmerged, it also computes the branch, $r\cdot(\text{in} + \text{out})$
# extra multiply-adds per input (notebook 02 §6). For a 1024 × 1024 layer with $r = 16$:

# %%
d_big, r_big = 1024, 16
extra = r_big * (d_big + d_big) / (d_big * d_big)
print(f"extra multiply-adds unmerged: {extra:.1%} of the layer's {d_big * d_big:,}")
assert abs(extra - 2 * r_big / d_big) < 1e-12

# %% [markdown]
# Time is not the same as arithmetic, though: the branch is two extra small matrix products
# and an addition, each with its own overhead and memory traffic, and small products use a CPU
# less efficiently than one large one. Here is a measurement with `torch.utils.benchmark` on a
# batch of 32 inputs (the fastest of several runs of each layer). The ratios depend on $r$, on
# the batch size, on the CPU and on what else the machine is doing, so this cell's output is
# not checked by the regression tests (it is marked `NBVAL_IGNORE_OUTPUT`) and nothing about it
# is asserted.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
plain = nn.Linear(d_big, d_big)
unmerged_layer = LoRALinear(copy.deepcopy(plain), r=r_big, alpha=32).eval()
merged_layer = merge_lora(nn.Sequential(copy.deepcopy(unmerged_layer)))[0]
x_big = torch.randn(32, d_big)
layers = {"nn.Linear": plain, "LoRALinear merged": merged_layer,
          "LoRALinear unmerged": unmerged_layer}
seconds = dict.fromkeys(layers, math.inf)
with torch.no_grad():
    for _ in range(3):                      # interleaved rounds; the fastest is least disturbed
        for name, lay in layers.items():
            run = Timer("lay(x)", globals={"lay": lay, "x": x_big}).blocked_autorange(
                min_run_time=0.05)
            seconds[name] = min(seconds[name], *run.times)
for name, t in seconds.items():
    print(f"{name:<20} {t * 1e6:8.0f} µs   {t / seconds['nn.Linear']:.2f} × nn.Linear")

# %% [markdown]
# Run it a few times and on your own shapes if it matters: the merged layer does exactly the
# work of `nn.Linear`, and whatever the unmerged layer costs beyond that is the price of the
# branch. During training the adapter must stay unmerged (only $A$
# and $B$ are trained); for deployment with one adapter, merge it (`merge_and_unload`, in PEFT
# and in `lora_lab`) — keeping §6.2's precision in mind.
#
# ## 7 · Saving only the adapter: "Why is my adapter file this size?"
#
# `save_adapter(model, directory)` writes only the adapter, in PEFT's layout: a file
# `adapter_model.safetensors` with every $A$ and $B$, and `adapter_config.json` with $r$,
# $\alpha$, the target modules and the other settings. So the file size can be predicted from
# the shapes: a **safetensors** file is an 8-byte number giving the length of a JSON header
# (names, dtypes, shapes and positions of the tensors), that header, and then the raw numbers,
# in the factors' dtype — 4 bytes each in float32, 8 in float64.
#
# We save an adapter on `q_proj` and `v_proj` with $r = 8$ into a temporary directory, which is
# deleted when the kernel stops.

# %%
model = apply_lora(make_model(), TARGETS, r=8, alpha=16)
torch.manual_seed(2)
with torch.no_grad():
    for _, lay in lora_layers(model):
        lay.lora_B.normal_(std=0.1)                                 # as if trained
folder = tempfile.TemporaryDirectory()                             # deleted when the kernel stops
adapter_dir = save_adapter(model, Path(folder.name) / "my_adapter")
print(sorted(path.name for path in adapter_dir.iterdir()))

# %%
n_numbers = sum(lay.r * (lay.in_features + lay.out_features) for _, lay in lora_layers(model))
weights_file = adapter_dir / "adapter_model.safetensors"
with weights_file.open("rb") as f:
    header_bytes = struct.unpack("<Q", f.read(8))[0]               # little-endian uint64
predicted = 8 + header_bytes + 4 * n_numbers
print(f"{n_numbers:,} numbers × 4 bytes = {4 * n_numbers:,} bytes, + 8 + {header_bytes} bytes "
      f"of header = {predicted:,} bytes;  on disk: {weights_file.stat().st_size:,} bytes")
assert weights_file.stat().st_size == predicted and n_numbers == 4 * 8 * (16 + 16)
file64 = save_adapter(copy.deepcopy(model).double(), Path(folder.name) / "adapter64")
file64 = file64 / "adapter_model.safetensors"                       # the same adapter, float64
with file64.open("rb") as f:
    header64 = struct.unpack("<Q", f.read(8))[0]
print(f"the same adapter with float64 factors: 8 + {header64} + 8 × {n_numbers:,} = "
      f"{file64.stat().st_size:,} bytes")
assert file64.stat().st_size == 8 + header64 + 8 * n_numbers

# %% [markdown]
# As predicted, given the header's length (which we read from the file's first 8 bytes). For
# this tiny model the header is a sizeable share of the file; for a real adapter it is
# negligible. Compared with the whole model, saved the same way:

# %%
save_file(make_model().state_dict(), Path(folder.name) / "full_model.safetensors")
full_bytes = (Path(folder.name) / "full_model.safetensors").stat().st_size
print(f"adapter {weights_file.stat().st_size / 1024:.1f} KB vs full model "
      f"{full_bytes / 1024:.1f} KB ({weights_file.stat().st_size / full_bytes:.0%})")
assert weights_file.stat().st_size < 0.4 * full_bytes and base_total == 4_388

# %% [markdown]
# On our toy the adapter is still about a quarter of the model's size, because the model
# itself is tiny: 1,024 adapter numbers against the model's 4,388. The ratio follows the
# parameter counts, and it shrinks as models grow. With the counts of notebook 02,
# RoBERTa-base's $W_q$/$W_v$ adapter at $r = 8$ has 294,912 numbers, and a Llama-style model
# with 32 layers of width 4096 has $32\cdot 2\cdot 8\cdot 8192$ with the same choice:

# %%
for name, numbers, model_params in (("RoBERTa-base, r = 8 on W_q, W_v", 294_912, 125e6),
                                    ("32 layers × 4096, r = 8 on q, v", 32 * 2 * 8 * 8192, 6.7e9)):
    print(f"{name:<33} adapter {4 * numbers / 2**20:5.1f} MiB in float32   "
          f"model {2 * model_params / 2**30:5.1f} GiB in bf16")
assert 32 * 2 * 8 * 8192 == 4_194_304

# %% [markdown]
# (The model sizes are the published parameter counts — 125M for RoBERTa-base, 6.7B for a
# Llama-7B-like model — at 2 bytes each; 1 MiB = $2^{20}$ bytes, 1 GiB = $2^{30}$.) So when an
# adapter file is larger than expected, the cause is in this arithmetic: more adapted layers
# (`"all-linear"` instead of `q_proj`, `v_proj`), a larger $r$, 4-byte float32 factors where you
# expected 2-byte bf16, or whole modules saved beside the adapter (PEFT's `modules_to_save`, e.g. a
# new head or the embeddings, saved in full — notebook 04 uses one).
#
# **Reloading.** `load_adapter(model, directory)` puts the adapter into a fresh copy of the
# pretrained model; PEFT's `PeftModel.from_pretrained(model, directory)` reads the same folder.
# Both must reproduce the outputs of the model we saved:

# %%
with torch.no_grad():
    original = model(X_seq)
    reloaded = load_adapter(make_model(), adapter_dir)(X_seq)
    peft_loaded = PeftModel.from_pretrained(make_model(), adapter_dir)
    peft_out = peft_loaded(X_seq)
print(f"lora_lab reload: identical outputs: {torch.equal(reloaded, original)}")
print(f"PEFT reload: same outputs up to float32 rounding: "
      f"{torch.allclose(peft_out, original, rtol=1e-5, atol=1e-6)}")
assert torch.equal(reloaded, original)
torch.testing.assert_close(peft_out, original, rtol=1e-5, atol=1e-6)

# %% [markdown]
# `lora_lab` reproduces the outputs bit for bit (the same code on the same numbers); PEFT agrees
# to float32 rounding, because it multiplies in a different order ($B(Ax)$ then the scaling,
# where `LoRALinear` scales the thin intermediate). The factors themselves are loaded exactly:

# %%
loaded = dict(peft_loaded.named_parameters())
for name, lay in lora_layers(model):
    prefix = f"base_model.model.{name}"
    assert torch.equal(loaded[f"{prefix}.lora_A.default.weight"], lay.lora_A)
    assert torch.equal(loaded[f"{prefix}.lora_B.default.weight"], lay.lora_B)
print("PEFT loaded every A and B exactly")

# %% [markdown]
# In memory, PEFT names the factors with the adapter's name (`…lora_A.default.weight`). Its
# files leave the name out — in the file `save_adapter` wrote, and in the one PEFT writes itself
# with `save_pretrained`:

# %%
peft_loaded.save_pretrained(Path(folder.name) / "saved_by_peft")
file_keys = {}
for who, directory in (("lora_lab", adapter_dir), ("PEFT", Path(folder.name) / "saved_by_peft")):
    with safe_open(directory / "adapter_model.safetensors", framework="pt") as f:
        file_keys[who] = sorted(f.keys())
print(f"keys in the file: {file_keys['PEFT'][:2]} ...")
assert file_keys["lora_lab"] == file_keys["PEFT"]
assert not any(".default." in key for key in file_keys["PEFT"])

# %% [markdown]
# ## 8 · Scaling: "How do I pick r and alpha?" (α/r or α/√r)
#
# Notebook 02 §7.3 looked at Adam's *first* step: with $s = \alpha/r$ the first step's
# *progress* (how much it lowers the loss, to first order) is the same at every rank, while its
# *size* $\lVert\Delta W_1\rVert$ shrinks roughly like $1/\sqrt r$; with **rsLoRA**'s
# $s = \alpha/\sqrt r$ (rank-stabilised LoRA, Kalajdzievski 2023, arXiv:2312.03732; PEFT's
# `use_rslora=True`, `lora_lab`'s too) the size stays roughly constant instead, and the
# progress grows roughly like $\sqrt r$. Which matters over a whole run?
# The rsLoRA paper reports that with $\alpha/r$ large ranks learn no better than small ones when
# the learning rate is kept fixed, and that $\alpha/\sqrt r$ fixes that. Let's see what happens
# in a small experiment of our own, at a fixed learning rate and after a learning-rate sweep.
#
# **The task.** A frozen 64 × 64 layer must learn a hidden update $\Delta W_\text{true}$ with
# singular values $0.5/i$ for $i = 1, \dots, 64$: a few strong directions and a long weak tail,
# so a larger rank can always get a little closer. The 64 inputs are whitened, as in notebook 02
# §4, so the lowest loss a rank-$r$ adapter can reach is known exactly: by Eckart–Young,
# $\sum_{i>r}\sigma_i^2/\text{out}$ (02 §5.2). Everything runs in float64, so that rounding
# differences between CPUs stay far below the printed digits.

# %%
gen = torch.Generator().manual_seed(3)
n, d = 64, 64
Q, R = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
X_w = math.sqrt(n) * Q * torch.sign(torch.diagonal(R))             # whitened: X^T X / n = I
W_frozen = torch.randn(d, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
U, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
V, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
sigma = 0.5 / torch.arange(1, d + 1, dtype=torch.float64)
delta_true = (U * sigma) @ V.T
Y_w = X_w @ (W_frozen + delta_true).T
loss_untouched = (sigma**2).sum().item() / d                        # |ΔW_true|_F^2 / out
torch.testing.assert_close(X_w.T @ X_w / n, torch.eye(d, dtype=torch.float64))
np.testing.assert_allclose(singular_values(delta_true.numpy()), sigma.numpy(), rtol=1e-10)
np.testing.assert_allclose(nn.functional.mse_loss(X_w @ W_frozen.T, Y_w).item(), loss_untouched)

# %% [markdown]
# **The training run.** `LoRALinear` with `use_rslora=False` ($\alpha/r$) or `True`
# ($\alpha/\sqrt r$), $\alpha = 16$ fixed, Adam, full batch, 100 steps, the factors started from
# the same random $A$ for both scalings. At $r = 1$ the two scalings are identical. The loss
# is recorded before each step and once more after the last: 101 values $L_0, \dots, L_{100}$.
#
# **What we measure.** A loss that sits at the rank-$r$ floor cannot go lower, so we measure
# each run against *its own* floor, with the **excess** $(L_t - L_\text{floor})/(L_0 -
# L_\text{floor})$: 1 at the start, 0 at the floor. Two summaries of a run, lower is better:
#
# * the **mean excess**, its average over the 101 values — how fast the run gets most of the
#   way (a run that never moves scores 1);
# * the **final excess**, its value after the last step — how close the run ends to the floor.

# %%
def scaling_run(r: int, rslora: bool, lr: float, steps: int = 100,
                lr_B: float | None = None) -> list[float]:
    """Adam (learning rate lr; lr_B for B if given) on a LoRALinear (alpha = 16) over the
    frozen W_frozen; the loss before each step and after the last (steps + 1 values)."""
    torch.manual_seed(r)                                           # the same A for both scalings
    layer = LoRALinear(nn.Linear(d, d, bias=False, dtype=torch.float64), r=r, alpha=16,
                       use_rslora=rslora)
    with torch.no_grad():
        layer.base.weight.copy_(W_frozen)
    optimizer = torch.optim.Adam([{"params": [layer.lora_A]},
                                  {"params": [layer.lora_B], "lr": lr_B or lr}], lr=lr)
    losses = []
    for step in range(steps + 1):
        loss = nn.functional.mse_loss(layer(X_w), Y_w)
        losses.append(loss.item())
        if step < steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return losses


# %%
def floor(r: int) -> float:
    """Lowest loss a rank-r update can reach: Eckart–Young with whitened inputs."""
    return truncation_error(sigma.numpy(), r) ** 2 / d


def excess(losses: list[float], r: int) -> np.ndarray:
    """(L_t - floor) / (L_0 - floor) for every step of a run: 1 at the start, 0 at the floor."""
    return (np.array(losses) - floor(r)) / (losses[0] - floor(r))


# %% [markdown]
# **The sweep.** Ranks $r \in \{1, 4, 16, 64\}$, both scalings, and five learning rates a
# factor 2 apart, from 0.002 to 0.032: 35 runs of 100 steps (at $r = 1$ the scalings coincide,
# so those runs are shared). This is the notebook's longest cell, about two seconds.
#
# ### ✏️ Exercise 5 — predict where the best learning rate goes
#
# Suppose the learning rate has been tuned at $r = 1$, where both scalings coincide. At
# $r = 64$, will the best learning rate be `"higher"`, `"lower"` or `"the same"` — under
# $\alpha/r$, and under $\alpha/\sqrt r$? Notebook 02 §7.3 (recalled at the start of this
# section) offers two guides, and they disagree: pick the learning rate that keeps Adam's first
# step making the same *progress* as at $r = 1$, or the one that keeps it the same *size*.
# First work out what each guide predicts under each scaling. Then decide what you expect of
# whole runs of 100 steps, in which $A$ moves too — they need not follow either guide. The
# check compares your answer with what the sweep finds, on its grid of learning rates a
# factor 2 apart.

# %% tags=["exercise"]
# ✏️ "higher", "lower" or "the same": the best learning rate at r = 64 compared with r = 1
best_lr_alpha_r = ...  # ✏️ your answer
best_lr_rslora = ...  # ✏️ your answer

# %%
ranks, lrs = (1, 4, 16, 64), (0.002, 0.004, 0.008, 0.016, 0.032)
SCALINGS = {"alpha/r": False, "alpha/sqrt(r)": True}
runs = {}
for label, rslora in SCALINGS.items():
    for rr in ranks:
        for lr in lrs:
            shared = rr == 1 and rslora
            runs[label, rr, lr] = runs["alpha/r", 1, lr] if shared else scaling_run(rr, rslora, lr)
mean_excess = {key: float(excess(losses, key[1]).mean()) for key, losses in runs.items()}
final_excess = {key: float(excess(losses, key[1])[-1]) for key, losses in runs.items()}
assert all(np.isfinite(losses).all() for losses in runs.values())

# %% [markdown]
# At each rank, the best learning rate under each scaling — "best" meaning the lowest mean
# excess — and how fast each scaling is at its own best:

# %%
best = {(label, rr): min(lrs, key=lambda lr, key=(label, rr): mean_excess[(*key, lr)])
        for label in SCALINGS for rr in ranks}
at_best = {key: mean_excess[(*key, best[key])] for key in best}
print(" r   best learning rate:  alpha/r   alpha/sqrt(r)    mean excess at the best:  "
      "alpha/r   alpha/sqrt(r)")
for rr in ranks:
    print(f"{rr:>2}   {best['alpha/r', rr]:28}   {best['alpha/sqrt(r)', rr]:13}    "
          f"{at_best['alpha/r', rr]:24.3f}   {at_best['alpha/sqrt(r)', rr]:13.3f}")
assert [best["alpha/r", rr] for rr in ranks] == [0.008, 0.016, 0.016, 0.016]        # up ×2
assert [best["alpha/sqrt(r)", rr] for rr in ranks] == [0.008, 0.008, 0.008, 0.004]  # down ×2
assert all(at_best["alpha/r", rr] < 0.8 * at_best["alpha/sqrt(r)", rr] for rr in (4, 16))
assert abs(at_best["alpha/r", 64] / at_best["alpha/sqrt(r)", 64] - 1) < 0.1

# %%
_ = checks.check_best_lr_shift(best_lr_alpha_r, best_lr_rslora, best)

# %% [markdown]
# On this grid the best learning rate moved with $r$ under both scalings, in opposite
# directions: under $\alpha/r$ from 0.008 at $r = 1$ to 0.016, under $\alpha/\sqrt r$ from 0.008
# to 0.004 (asserted) — one grid step each. Both lie between notebook 02's two guides: under
# $\alpha/r$ the progress guide predicts no change and the size guide a rise by
# $\sqrt{64} = 8$; under $\alpha/\sqrt r$ the size guide predicts no change and the progress
# guide a fall by 8. The whole runs followed neither guide. How far the best learning rate
# really moved, this sweep cannot say: its grid steps are a factor 2, so a smaller or a
# somewhat larger shift shows as the same one step (and $\alpha/r$'s "0.016 from $r = 4$ to
# 64" may hide a drift within a step); and it is one run per setting, on one task.
#
# Each at its best, $\alpha/r$ is faster at $r = 4$ and $16$ (by more than 20 %, asserted) and
# within 10 % at $r = 64$. A different learning rate does not make up for a different scaling,
# because under Adam a scaling is not a learning rate: a constant factor $c$ in front of $BA$
# acts like multiplying **$B$'s learning rate alone** by $c$ (02 §7.3; $B$ starts at zero and
# Adam ignores a gradient's scale). At $r = 4$, $\alpha/\sqrt r$ is $\alpha/r$ times $c = 2$:
# its run at learning rate 0.008 is $\alpha/r$'s run with 0.016 for $B$ and 0.008 for $A$. The
# run of $\alpha/r$ at 0.016 for both has the same first step — in step 1 only $B$ moves — but
# from the second step on its $A$ moves twice as far per step:

# %%
same_first = runs["alpha/r", 4, 0.016], runs["alpha/sqrt(r)", 4, 0.008]
as_b_lr = scaling_run(4, rslora=False, lr=0.008, lr_B=0.016)        # alpha/r, B's lr × 2
gap = max(abs(a - b) / b for a, b in zip(as_b_lr, same_first[1], strict=True))
print(f"r = 4: alpha/sqrt(r) at 0.008 = alpha/r with B at 0.016, A at 0.008 (losses within "
      f"1e-3 of each other): {gap < 1e-3};  alpha/r at 0.016 for both: the same loss after "
      f"step 1: {math.isclose(same_first[0][1], same_first[1][1], rel_tol=1e-4)}, mean excess "
      f"{mean_excess['alpha/r', 4, 0.016]:.3f} vs {mean_excess['alpha/sqrt(r)', 4, 0.008]:.3f}")
assert gap < 1e-3                                        # not 0: Adam's eps = 1e-8 is not scaled
assert math.isclose(same_first[0][1], same_first[1][1], rel_tol=1e-4)
assert mean_excess["alpha/r", 4, 0.016] < mean_excess["alpha/sqrt(r)", 4, 0.008]

# %% [markdown]
# The figure shows every rank's sweep; filled markers are the best learning rates:

# %%
sweeps = {label: {f"r = {rr}": {lr: mean_excess[label, rr, lr] for lr in lrs} for rr in ranks}
          for label in SCALINGS}
fig = plots.scaling_sweep_figure(
    {"α/r": sweeps["alpha/r"], "α/√r (rsLoRA)": sweeps["alpha/sqrt(r)"]},
    ylabel="mean excess (lower is faster)",
    suptitle="each rank's learning-rate sweep, Adam, α = 16, 100 steps")
display(fig)
too_big = [rr for rr in ranks[1:]
           if mean_excess["alpha/sqrt(r)", rr, 0.032] > mean_excess["alpha/sqrt(r)", rr, 0.002]]
print(f"alpha/sqrt(r) at learning rate 0.032 slower than at 0.002, at r = {too_big}")
assert too_big == [4, 16, 64]
assert all(mean_excess["alpha/r", rr, 0.032] < mean_excess["alpha/r", rr, 0.002]
           for rr in ranks[1:])

# %% [markdown]
# The right panel also shows the price of $\alpha/\sqrt r$'s larger steps at large ranks: at
# the largest learning rate, 0.032, its runs at every $r \ge 4$ are *slower* than at the
# smallest, 0.002 — the steps overshoot — while $\alpha/r$ at $r \ge 4$ is still faster at
# 0.032 than at 0.002 (both asserted).
#
# Now the question as the rsLoRA paper poses it: the learning rate **fixed**, at the value that
# is best at $r = 1$ — as if you had tuned it at one rank and then changed the rank without
# re-tuning. Both summaries of each run:

# %%
lr_fixed = best["alpha/r", 1]
print(f"learning rate fixed at {lr_fixed} (best at r = 1)\n"
      " r   floor / untouched   mean excess: alpha/r  alpha/sqrt(r)   final excess: alpha/r  "
      "alpha/sqrt(r)")
row = {(m, lab): [table[lab, rr, lr_fixed] for rr in ranks]
       for m, table in (("mean", mean_excess), ("final", final_excess)) for lab in SCALINGS}
for i, rr in enumerate(ranks):
    print(f"{rr:>2}   {floor(rr) / loss_untouched:17.3f}   "
          f"{row['mean', 'alpha/r'][i]:20.3f}  {row['mean', 'alpha/sqrt(r)'][i]:13.3f}   "
          f"{row['final', 'alpha/r'][i]:21.1e}  {row['final', 'alpha/sqrt(r)'][i]:13.1e}")
m_ours, m_rs = row["mean", "alpha/r"], row["mean", "alpha/sqrt(r)"]
assert lr_fixed == 0.008 and all(np.diff(m_ours) < 0) and all(np.diff(m_rs) < 0)  # r up: faster
assert m_ours[1] < 0.9 * m_rs[1] and m_ours[2] < 0.9 * m_rs[2]               # r = 4, 16
assert abs(m_ours[3] / m_rs[3] - 1) < 0.1                                       # r = 64
f_ours, f_rs = row["final", "alpha/r"], row["final", "alpha/sqrt(r)"]
assert f_rs[3] < 0.2 * f_ours[3]                                   # r = 64, at the end
assert all(1 / 2.5 < f_ours[i] / f_rs[i] < 2.5 for i in (1, 2))      # r = 4, 16: no ranking

# %% [markdown]
# At this fixed learning rate, larger ranks learn faster under *both* scalings (the mean excess
# falls with every rank, asserted): the stalling of large ranks under $\alpha/r$ that the
# rsLoRA paper reports for large language models, at ranks into the thousands, does **not**
# show up in this small problem at $r \le 64$. Which scaling is ahead depends on what you
# measure. Averaged over the run, $\alpha/r$: faster at $r = 4$ and $16$ (by more than 10 % in
# this run, asserted), within 10 % at $r = 64$. At the end of the run, at $r = 64$, $\alpha/\sqrt
# r$ is more than five times closer to its floor (asserted): there its larger steps pay off
# late. (At $r = 4$ and $16$ the final excesses are within a factor 2.5 of each other,
# asserted; unlike the tenfold gap at $r = 64$, we do not read a ranking into a difference of
# that size in a single run.)
#
# The excess curves themselves, with both scalings overlaid at each rank (the legend gives each
# run's mean excess; the dashed line is the start, excess 1):

# %%
panels = {}
for rr in ranks:
    panels[f"r = {rr}"] = {}
    for label, shown in (("alpha/r", "α/r"), ("alpha/sqrt(r)", "α/√r (rsLoRA)")):
        shown = "α/r = α/√r" if rr == 1 else shown                  # one run at r = 1
        panels[f"r = {rr}"][f"{shown} (mean {mean_excess[label, rr, lr_fixed]:.3f})"] = excess(
            runs[label, rr, lr_fixed], rr)
fig = plots.loss_curves_figure(
    panels, floors={title: (1.0, "start") for title in panels},
    ylabel="excess (L_t − floor) / (L_0 − floor)",
    suptitle=f"Adam, α = 16, learning rate {lr_fixed} for every rank")
display(fig)

# %%
curve = {(lab, rr): excess(runs[lab, rr, lr_fixed], rr) for lab in SCALINGS for rr in ranks}
lower = {rr: curve["alpha/r", rr] < curve["alpha/sqrt(r)", rr] for rr in ranks[1:]}
print("steps at which the alpha/r curve is the lower one: "
      + ", ".join(f"r = {rr}: {np.mean(below):.0%}" for rr, below in lower.items()))
assert all(curve["alpha/r", rr][:11].mean() < curve["alpha/sqrt(r)", rr][:11].mean()
           for rr in ranks[1:])                                      # steps 0-10: alpha/r
assert np.mean(lower[4]) < 0.5 and np.mean(lower[64]) < 0.5 < 0.9 < np.mean(lower[16])
gap_64 = curve["alpha/sqrt(r)", 64][40::10] / curve["alpha/r", 64][40::10]   # steps 40, ..., 100
assert np.all(np.diff(gap_64) < 0)                                  # alpha/sqrt(r) pulls away
rose = sorted(key for key, values in curve.items() if values[1] > 1)
print(f"excess above 1 after the first step: {rose}")
assert rose == [("alpha/r", 1), ("alpha/r", 4)] + [("alpha/sqrt(r)", rr) for rr in ranks]

# %% [markdown]
# The curves show why the two summaries disagree. The mean excess weighs the first steps most,
# where the excess is largest, and there $\alpha/r$ is lower at every rank (its average over
# $L_0, \dots, L_{10}$ is lower, asserted). Later the order can change: in this run
# $\alpha/\sqrt r$ is the lower curve for most of the steps at $r = 4$ and $64$ (asserted:
# $\alpha/r$ for fewer than half), and at $r = 64$ it pulls further ahead every ten steps from
# step 40 on (asserted), while at $r = 16$ $\alpha/r$ stays lower almost throughout (more than
# 90 % of the steps, asserted).
#
# And several runs start by going *up*: after the first step the excess is above 1 at $r = 1$
# and $4$ under $\alpha/r$ and at every rank under $\alpha/\sqrt r$ (asserted). Adam's first
# step moves every entry of $B$ by the full learning rate whatever its gradient (§2.3), and the
# loss then falls by the step's first-order progress *minus* a cost that grows with the square
# of the step's size (02 §7.3). In those runs the cost won: under $\alpha/\sqrt r$ the first
# step is as large at every rank as at $r = 1$, while under $\alpha/r$ it shrinks as $r$ grows,
# and from $r = 16$ on it went downhill at once.

# %% [markdown]
# **What this experiment shows, and what it does not.** On this problem — one linear layer,
# Adam, $\alpha = 16$, 100 full-batch steps, $r \le 64$ —
#
# * larger ranks trained faster under both scalings;
# * on a grid of factor-2 steps, the best learning rate moved one step between $r = 1$ and
#   $64$, up under $\alpha/r$ and down under $\alpha/\sqrt r$ — in between notebook 02's two
#   first-step guides, and at a resolution that cannot say by how much;
# * at a learning rate tuned at $r = 1$ and kept, neither scaling was better on every measure:
#   $\alpha/r$ got most of the way faster, $\alpha/\sqrt r$ ended much closer at $r = 64$, and
#   $\alpha/\sqrt r$ overshot at a lower learning rate;
# * each at its own best learning rate, $\alpha/r$ was as fast as or faster than
#   $\alpha/\sqrt r$ on average over the run.
#
# It does not show what happens in a deep network, at ranks in the hundreds or thousands, or
# over long training — the setting of the rsLoRA paper, which reports that there $\alpha/\sqrt r$
# lets larger ranks help. A toy cannot settle that; it can show that neither "α/√r is better"
# nor "α/r is better" is a law. The advice that holds either way: **pick a scaling, then tune
# the learning rate at the rank you will use**, and re-tune it (at least coarsely) when you
# change $r$ by a large factor. Keep $\alpha$ fixed while you vary $r$, so that the scaling does
# its job, and tune the learning rate rather than $\alpha$: under Adam, $\alpha$ acts as a
# multiplier on $B$'s learning rate only (02 §7.3; checked above at $r = 4$), which no single
# learning rate for both factors can imitate. Notebook 04 tunes the learning rate of each
# method separately for exactly these reasons.

# %% [markdown]
# ## Summary
#
# * **From NumPy to PyTorch.** A LoRA layer is a frozen `nn.Linear` plus two `nn.Parameter`s and
#   one line of `forward`; autograd reproduces notebook 02's hand-derived gradients (to float64
#   rounding). The same layer is `lora_lab.LoRALinear` (`lora_A`, `lora_B`) and PEFT's
#   `lora.Linear` (`lora_A["default"].weight`, …); PEFT's defaults are $r = 8$,
#   `lora_alpha = 8`, ours $r = 8$, $\alpha = 16$.
# * **Freezing and counting.** Frozen parameters get no gradient; backpropagation still passes
#   through them. Trainable = $\sum r(\text{in} + \text{out})$ over the adapted layers; the total
#   includes the adapter; biases stay frozen.
# * **Not learning?** At step 0, $\partial L/\partial A = 0$ is normal (after one Adam step only
#   $B$ has changed, $\lVert B\rVert = \text{lr}\sqrt{\#B}$; with AdamW's weight decay $A$
#   also shrinks a little, which is not learning). Real causes: an optimiser created before
#   `apply_lora`, both factors zero, a learning rate far too small, training a merged model
#   (which `lora_lab` refuses).
# * **Targets.** A list matches names or dotted suffixes, a string is a full regex,
#   `"all-linear"` takes every Linear; a typo raises in `lora_lab`, and PEFT ignores it when
#   another entry matches — print what was adapted.
# * **On and off.** `with disable_adapter(model):` gives the pretrained model exactly (PEFT's
#   `disable_adapter()` too).
# * **Dropout** only touches the adapter's input, only in training; inverted dropout makes the
#   average over masks equal the eval-mode output, which equals the merged model's.
# * **Merging** is exact up to rounding in float32, and `unmerge` restores $W_0$ bit for bit;
#   in bf16/fp16 the merge rounds $W_0 + \Delta W$ to the format's grid, which can swallow most
#   of a small update ($\lVert\Delta W\rVert$ well below $\varepsilon\lVert W_0\rVert$) — and
#   an unmerged layer rounds its *output* to the same format, which swallows the same update
#   just as much. Merged and unmerged outputs differ because they round in different places;
#   to keep a small update, compute in float32. Unmerged layers cost $r(\text{in} +
#   \text{out})$ extra multiply-adds per input, and some extra time.
# * **Saving.** The adapter file is 8 bytes + a JSON header + every number of every $A$ and $B$
#   at the bytes of the factors' dtype (4 in float32, 8 in float64); its keys leave PEFT's
#   adapter name out; `load_adapter` and PEFT's `PeftModel.from_pretrained` both reload it.
# * **Scaling.** In our small experiment larger ranks trained faster under both $\alpha/r$ and
#   $\alpha/\sqrt r$; on a coarse grid (one run per setting) the best learning rate moved one
#   factor-2 step over $r = 1 \dots 64$, up under $\alpha/r$ and down under $\alpha/\sqrt r$ —
#   between notebook 02's two first-step guides; at a fixed learning rate which one was ahead
#   depended on the measure, and each at its best, $\alpha/r$ was as fast or faster. Not a law:
#   tune the learning rate at the rank you use, and keep $\alpha$ fixed.
#
# **Next:** notebook 04 (`04_finetune_toy_task.ipynb`) fine-tunes a real pretrained model on
# real handwritten digits with a shifted domain, and compares LoRA at several ranks with
# full fine-tuning and with training only the head.
