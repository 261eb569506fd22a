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
# 1. count the trainable and total parameters of a model with biases (§2.2),
# 2. predict which factor one Adam step changes (§2.3),
# 3. fix an optimiser that never trains the adapter (§2.4),
# 4. write the average output of a layer with dropout, over all dropout masks (§5),
# 5. predict how the best learning rate moves with $r$ under each scaling (§8).
#
# Predictions are answered by replacing `...` with your answer; the other exercises ask for a
# short function. The cell after each one checks your answer and, if something is off, gives a
# hint that names the likely mistake; until you have answered, it says "not yet". Worked
# solutions are in `solutions/03_lora_layer_solutions.ipynb`.
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
# its two factor tensors, because each implementation stores them under a different name.

# %%
def difference_from_numpy(module: nn.Module, A_param: torch.Tensor,
                          B_param: torch.Tensor) -> float:
    """Largest |difference| between module's output and gradients (A, B, x) on (X, Y)
    and notebook 02's NumPy lora_forward/lora_backward. Why: one number per implementation.
    """
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
# A few lines of `nn.Module` reproduce notebook 02 exactly, and autograd finds the gradients we
# derived by hand. The frozen weight has no gradient at all (`None`): nothing was computed for
# it and nothing is stored.
#
# ### 1.3 The verified layer: `lora_lab.LoRALinear`
#
# The course package's `LoRALinear` is the same layer with what a real one needs on top:
# argument and dtype checks, dropout, merging, rsLoRA. Its factors are called `lora_A` (r, in)
# and `lora_B` (out, r), PEFT's names. It creates its factors in the base's precision, but never
# below float32: float64 here, float32 for a float32, bf16 or fp16 base (§6.2 explains why).

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
peft_model = get_peft_model(OneLayer(copy.deepcopy(base)), config)
peft_layer = peft_model.base_model.model.proj                     # PEFT's lora.Linear
peft_a, peft_b = peft_layer.lora_A["default"].weight, peft_layer.lora_B["default"].weight

# %%
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
# messages and in its adapter files (§7).
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
# Let's look at one backward pass.

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
#   §2.3 shows what happens next.
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
# ### ✏️ Exercise 1 — count a model with biases
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
# We train with **Adam** (`torch.optim.Adam`; most LoRA training uses Adam or its variant
# AdamW). Recall from notebook 02 §7.3 how its first step works: each entry moves by the
# learning rate, against the sign of its gradient — and an entry whose gradient is zero does
# not move at all.
#
# ### ✏️ Exercise 2 — predict first
#
# A freshly adapted model ($B = 0$, $A$ random) takes **one** Adam step. Which factors have
# changed afterwards? Answer `True` (changed) or `False` (unchanged) for each, *before* running
# the experiment below.

# %% tags=["exercise"]
# ✏️ True if the factor changed in the first Adam step, False if not
a_changes = ...  # ✏️ your answer
b_changes = ...  # ✏️ your answer

# %% [markdown]
# Now the experiment: snapshot every tensor of the model (`state_dict`), take one Adam step,
# list the tensors that changed; then a second step.

# %%
model = apply_lora(make_model(), TARGETS, r=4, alpha=8)
optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
before = {name: t.clone() for name, t in model.state_dict().items()}


def adam_step() -> list[str]:
    """One Adam step on the teacher task; return the names of the tensors changed so far."""
    optimizer.zero_grad()
    task_loss(model).backward()
    optimizer.step()
    return [name for name, t in model.state_dict().items() if not torch.equal(t, before[name])]


# %%
after_one, after_two = adam_step(), adam_step()
print(f"changed after 1 step:  {after_one}")
print(f"changed after 2 steps: {after_two}")
assert all(name.endswith("lora_B") for name in after_one) and len(after_one) == 4
assert sorted(after_two) == sorted(after_one + [n.replace("_B", "_A") for n in after_one])
assert not any(".base." in name for name in after_two)            # W0 and biases: never

# %% [markdown]
# Was your prediction right? The check runs the same experiment on a layer of its own:

# %%
_ = checks.check_first_adam_step(a_changes, b_changes)

# %% [markdown]
# In the first step only the four `lora_B` matrices change: $A$'s gradient is exactly zero, and
# Adam's step for a zero gradient is zero. In the second step $B \ne 0$, so $A$ has a gradient
# and moves too. The base weights and biases never change.
#
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
# Here are three classic reasons why a LoRA really does not learn, each shown failing beside a
# correct run. Each trains for 30 steps with Adam, and we report the share of the starting loss
# removed. First the training loop:

# %%
def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 30) -> float:
    """Full-batch training on the teacher task; returns the share of the first loss removed."""
    losses = []
    for _ in range(steps):
        loss = task_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return 1 - losses[-1] / losses[0]


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

# %% [markdown]
# * **Optimiser created before `apply_lora`.** The optimiser holds the tensors that existed when
#   it was created: the base weights, which `apply_lora` then froze. The new `lora_A` and
#   `lora_B` are not in it, so nothing ever updates them: the loss does not move at all. The
#   fix is the order: `apply_lora` first, then the optimiser. A quick check you can run in any
#   training script:

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
#   step, so at `1e-6` thirty steps move $B$ by at most $3\cdot10^{-5}$ per entry: almost
#   nothing happens. Which learning rate suits depends on the model and the task; notebook 04
#   tunes it for LoRA and for full fine-tuning on a real task and compares the two.
# * **$\partial L/\partial A = 0$ at step 0** is not one of the causes: it is how LoRA starts
#   (§2.3).
#
# ### ✏️ Exercise 3 — fix the trap
#
# This function is meant to add LoRA ($r = 4$, $\alpha = 8$) to `q_proj` and `v_proj` and
# return an Adam optimiser that trains it — but it returns an optimiser that never will:
#
# ```python
# def lora_setup(model, lr):
#     optimizer = torch.optim.Adam(model.parameters(), lr=lr)
#     apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
#     return optimizer
# ```
#
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
# Which layers to choose is an empirical question, and the answer depends on the model and the
# task. Two data points from the literature: the LoRA paper adapted only the attention's query
# and value projections (their §4.2), and found that under a fixed parameter budget, adapting
# both $W_q$ and $W_v$ at a small rank beat adapting $W_q$ alone at a larger rank (their
# §7.1); the QLoRA paper (Dettmers et al., 2023) reports that LoRA on *all* linear layers of the
# transformer blocks was needed to match full fine-tuning. Notebook 06 compares the two choices
# on a real transformer. Whatever you choose, **look at what was adapted**, as above:
# `lora_layers(model)` lists it.
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
# with it enabled, the loss on the new task is less than a hundredth of that. PEFT's version on
# `peft_twin` from §2.2 works the same way:

# %%
with torch.no_grad(), peft_twin.disable_adapter():
    peft_off = peft_twin(X_seq)
assert torch.equal(peft_off, pretrained_out)
print("PEFT with its adapter disabled computes exactly the pretrained model, too")

# %% [markdown]
# ## 5 · Dropout: "What does lora_dropout do at inference?"
#
# `dropout=p` (PEFT: `lora_dropout`) applies `nn.Dropout(p)` to the *adapter's input*:
# $h = W_0x + s\,B A\,\text{dropout}(x)$. In training mode, each entry of $x$ is zeroed with
# probability $p$ — a different random **mask** at every call — and the entries kept are
# divided by $1 - p$. In evaluation mode (`model.eval()`), dropout does nothing.
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
# merged model's. Merging has no dropout to deal with, because inference has none. But is the
# eval-mode output the right one? Training saw the random outputs; inference should give their
# *average*.
#
# ### ✏️ Exercise 4 — the average over all masks
#
# Write `expected_output(layer, x)`: the output of `layer` (a `LoRALinear` with dropout, in
# **training** mode) averaged over all possible dropout masks — computed exactly, not by
# sampling. Start from what one entry of `dropout(x)` is on average: zeroed with probability
# $p$, divided by $1 - p$ otherwise.

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
# compute $W - s\,BA$: `merge` keeps a copy of $W_0$ and `unmerge` puts it back. Subtracting
# rounds a second time, so it is not always exact: notebook 02 saw that at the $10^{-12}$ level
# in float64. In bfloat16 it shows in the weights themselves. PEFT 0.21 unmerges by
# subtraction; here is a merge/unmerge round trip of the same bf16 layer in both libraries,
# with an update of about 1 % of $W_0$:

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
# — the formats large models are usually run in — the story is different. Unmerged, the layer
# computes $W_0x$ from the stored low-precision $W_0$ and adds the adapter's branch, which
# `LoRALinear` (and PEFT) compute from float32 factors. Merged, the sum $W_0 + \Delta W$ must be
# *rounded* to bf16/fp16 once. Rounding moves each entry to the nearest number the format can
# hold; near a value $w$ those are about $\varepsilon\,|w|$ apart, where $\varepsilon$ is the
# format's precision (the gap between 1 and the next number). A fine-tuning update is often
# small compared with $W_0$ — how does it fare?
#
# An experiment: a 256 × 256 layer and updates of four sizes,
# $\lVert\Delta W\rVert_F/\lVert W_0\rVert_F = \rho \in \{10^{-4}, 10^{-3}, 10^{-2},
# 10^{-1}\}$. For each format we merge with `LoRALinear.merge()` and measure the merged
# weight's error against the exact $W_0 + \Delta W$, computed in float64 from the stored $W_0$.

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
for rho in (1e-4, 1e-3, 1e-2, 1e-1):
    errors[rho] = {name: merge_error(t, rho) for name, t in formats.items()}
    print(f"|ΔW| = {rho:.0e} |W0|     " + "".join(f"{e:11.1e}" for e in errors[rho].values()))

# %%
for name, dtype in formats.items():
    eps = torch.finfo(dtype).eps
    for rho, row in errors.items():
        if rho >= 10 * eps:                     # a large update: rounding of about eps |W0|
            assert 0.1 * eps < row[name] < eps, (name, rho)
        if rho <= eps / 10:                     # a small update: almost all of it lost
            assert 0.5 * rho < row[name] <= rho, (name, rho)
assert all(row["float32"] < 1e-7 for row in errors.values())
assert errors[1e-3]["bfloat16"] > 0.5e-3                        # bf16 loses most of 1e-3 |W0|

# %% [markdown]
# Read the table by rows. In float32 the error stays below $10^{-7}$ of $\lVert W_0\rVert$:
# nothing. In bf16 and fp16 there are two regimes (asserted above):
#
# * **A large update** ($\rho$ at least ten times $\varepsilon$) is merged with a rounding error
#   of a fixed fraction of $\varepsilon\,\lVert W_0\rVert$ — between 0.1 and 1 times here.
# * **A small update** ($\rho$ at most a tenth of $\varepsilon$) is mostly *lost*: the error
#   is almost $\rho$ itself. $W_0$ already sits on the format's grid of representable numbers,
#   and adding an entry smaller than half the grid spacing rounds straight back to $W_0$. In
#   bf16 ($\varepsilon = 2^{-7} \approx 0.008$) even an update of $10^{-3}\lVert W_0\rVert$
#   loses most of itself in the merge (asserted: the error is more than half of $\rho$).
#
# Unmerged, nothing is rounded away: the branch is computed from float32 factors and added to
# the output. So the merged model's outputs differ from the unmerged one's, by up to the whole
# effect of a small update. What to do about it:
#
# * compare merged and unmerged outputs with a tolerance that matches the format
#   ($\approx\varepsilon$ relative, not $10^{-6}$);
# * compute $\lVert\Delta W\rVert/\lVert W_0\rVert$ for your own adapter (`delta_weight()`
#   gives $\Delta W$) and compare it with $\varepsilon$;
# * if the update is small on that scale, keep the adapter unmerged, or merge into a float32
#   copy of the weights.
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
# (names, dtypes, shapes and positions of the tensors), that header, and then the raw numbers —
# 4 bytes each in float32.
#
# We save an adapter on `q_proj` and `v_proj` with $r = 8$ into a temporary directory, which is
# deleted at the end of this section.

# %%
model = apply_lora(make_model(), TARGETS, r=8, alpha=16)
torch.manual_seed(2)
with torch.no_grad():
    for _, lay in lora_layers(model):
        lay.lora_B.normal_(std=0.1)                                 # as if trained
folder = tempfile.TemporaryDirectory()                             # removed in §7's last cell
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

# %% [markdown]
# Exactly as predicted. For this tiny model the header is a sizeable share of the file; for a
# real adapter it is negligible. Compared with the whole model, saved the same way:

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
    print(f"{name:<33} adapter {4 * numbers / 2**20:5.1f} MB in float32   "
          f"model {2 * model_params / 2**30:5.1f} GB in bf16")
assert 32 * 2 * 8 * 8192 == 4_194_304

# %% [markdown]
# (The model sizes are the published parameter counts — 125M for RoBERTa-base, 6.7B for a
# Llama-7B-like model — at 2 bytes each.) So when an adapter file is larger than expected, the
# cause is in this arithmetic: more adapted layers (`"all-linear"` instead of `q_proj`,
# `v_proj`), a larger $r$, 4-byte float32 factors where you expected 2-byte bf16, or whole
# modules saved beside the adapter (PEFT's `modules_to_save`, e.g. a new head or the
# embeddings, saved in full — notebook 04 uses one).
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
folder.cleanup()                                                   # delete the temporary files
assert not Path(folder.name).exists()
print("PEFT loaded every A and B exactly; temporary folder removed")

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
# $\sum_{i>r}\sigma_i^2/\text{out}$ (02 §5.2). Everything runs in float64, so that the printed
# digits are the same on every CPU.

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
# the same random $A$ for both scalings. At $r = 1$ the two scalings are identical.
#
# **What we measure.** A loss that sits at the rank-$r$ floor cannot go lower, so we measure
# each run against *its own* floor, with the **excess** $(L_t - L_\text{floor})/(L_0 -
# L_\text{floor})$: 1 at the start, 0 at the floor. Two summaries of a run, lower is better:
#
# * the **mean excess**, its average over the 100 steps — how fast the run gets most of the
#   way (a run that never moves scores 1);
# * the **final excess**, its value after the last step — how close the run ends to the floor.

# %%
def scaling_run(r: int, rslora: bool, lr: float, steps: int = 100) -> list[float]:
    """Adam on a LoRALinear (alpha = 16) over the frozen W_frozen; the loss before each step."""
    torch.manual_seed(r)                                           # the same A for both scalings
    base = nn.Linear(d, d, bias=False, dtype=torch.float64)
    layer = LoRALinear(base, r=r, alpha=16, use_rslora=rslora)
    with torch.no_grad():
        base.weight.copy_(W_frozen)
    optimizer = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(layer(X_w), Y_w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
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
# $\alpha/r$, and under $\alpha/\sqrt r$? Use notebook 02 §7.3 (recalled at the start of this
# section): what happens to Adam's first step under each scaling as $r$ grows, and how would
# you compensate with the learning rate? Predict before running the sweep; the check compares
# your answer with what the sweep finds.

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
# The best learning rate moves with $r$ under both scalings, in opposite directions: under
# $\alpha/r$ it rises from 0.008 to 0.016, under $\alpha/\sqrt r$ it falls from 0.008 to 0.004
# (asserted). That is the direction notebook 02's first step predicts — $\alpha/r$ makes Adam's
# steps smaller as $r$ grows, so a larger learning rate compensates; $\alpha/\sqrt r$ makes
# their progress larger, so a smaller one does — but the shift is only a factor 2 over a
# 64-fold range of ranks, less than the first step's $\sqrt{64} = 8$. Neither scaling keeps the
# best learning rate fixed here, and neither drifts far.
#
# Each at its best, $\alpha/r$ is faster at $r = 4$ and $16$ (by more than 20 %, asserted) and
# within 10 % at $r = 64$. A different learning rate does not make up for a different scaling,
# because with Adam the two are not interchangeable. At $r = 4$, $\alpha/r$ with learning rate
# 0.016 and $\alpha/\sqrt r$ with 0.008 have the same product $s\cdot\text{lr} = 0.064$, so
# their first steps are the same (02 §7.3; up to Adam's tiny $\varepsilon$, the losses after
# one step agree to $10^{-4}$) — but from the second step on, $A$ moves too, by about the
# learning rate per entry: twice as far per step under $\alpha/r$ here.

# %%
same_first = runs["alpha/r", 4, 0.016], runs["alpha/sqrt(r)", 4, 0.008]
print(f"r = 4, s·lr = 0.064 both: losses after step 1 agree to 1e-4: "
      f"{math.isclose(same_first[0][1], same_first[1][1], rel_tol=1e-4)};  mean excess "
      f"{mean_excess['alpha/r', 4, 0.016]:.3f} (alpha/r) vs "
      f"{mean_excess['alpha/sqrt(r)', 4, 0.008]:.3f}")
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
assert f_rs[1] < f_ours[1] and f_ours[2] < f_rs[2] and f_rs[3] < 0.2 * f_ours[3]  # at the end

# %% [markdown]
# At this fixed learning rate, larger ranks learn faster under *both* scalings (the mean excess
# falls with every rank, asserted): the stalling of large ranks under $\alpha/r$ that the
# rsLoRA paper reports for large language models, at ranks into the thousands, does **not**
# show up in this small problem at $r \le 64$. Which scaling is ahead depends on what you
# measure. Averaged over the run, $\alpha/r$: faster at $r = 4$ and $16$ (by more than 10 %,
# asserted), within 10 % at $r = 64$. At the end of the run, $\alpha/\sqrt r$ is closer to
# its floor at $r = 4$ and $64$ — more than five times closer at $r = 64$ — and $\alpha/r$ at
# $r = 16$ (all asserted): at $r = 64$ the larger steps pay off late in the run. The loss curves
# show both:

# %%
curves = {label: {f"r = {rr}": runs[label, rr, lr_fixed] for rr in ranks} for label in SCALINGS}
fig = plots.loss_curves_figure(
    {"α/r": curves["alpha/r"], "α/√r (rsLoRA)": curves["alpha/sqrt(r)"]},
    suptitle=f"Adam, α = 16, learning rate {lr_fixed} for every rank")
display(fig)

# %% [markdown]
# **What this experiment shows, and what it does not.** On this problem — one linear layer,
# Adam, $\alpha = 16$, 100 full-batch steps, $r \le 64$ —
#
# * larger ranks trained faster under both scalings;
# * the best learning rate moved with $r$ in the direction the first-step analysis of notebook
#   02 predicts — up under $\alpha/r$, down under $\alpha/\sqrt r$ — but only by a factor 2;
# * at a learning rate tuned at $r = 1$ and kept, neither scaling was better on every measure:
#   $\alpha/r$ got most of the way faster, $\alpha/\sqrt r$ ended closer at $r = 4$ and $64$,
#   and $\alpha/\sqrt r$ overshot at a lower learning rate;
# * each at its own best learning rate, $\alpha/r$ was as fast as or faster than
#   $\alpha/\sqrt r$ on average over the run.
#
# It does not show what happens in a deep network, at ranks in the hundreds or thousands, or
# over long training — the setting of the rsLoRA paper, which reports that there $\alpha/\sqrt r$
# lets larger ranks help. A toy cannot settle that; it can show that neither "α/√r is better"
# nor "α/r is better" is a law. The advice that holds either way: **pick a scaling, then tune
# the learning rate at the rank you will use**, and re-check it (at least coarsely) when you
# change $r$ by a large factor — in the direction this section found. Keep $\alpha$ fixed while
# you vary $r$, so that the scaling does its job; with the $1/r$ (or $1/\sqrt r$) built in,
# $\alpha$ is just a constant that trades off against the learning rate. Notebook 04 tunes the
# learning rate of each method separately for exactly these reasons.

# %% [markdown]
# ## Summary
#
# * **From NumPy to PyTorch.** A LoRA layer is a frozen `nn.Linear` plus two `nn.Parameter`s and
#   one line of `forward`; autograd reproduces notebook 02's hand-derived gradients exactly. The
#   same layer is `lora_lab.LoRALinear` (`lora_A`, `lora_B`) and PEFT's `lora.Linear`
#   (`lora_A["default"].weight`, …); PEFT's defaults are $r = 8$, `lora_alpha = 8`, ours
#   $r = 8$, $\alpha = 16$.
# * **Freezing and counting.** Frozen parameters get no gradient; backpropagation still passes
#   through them. Trainable = $\sum r(\text{in} + \text{out})$ over the adapted layers; the total
#   includes the adapter; biases stay frozen.
# * **Not learning?** At step 0, $\partial L/\partial A = 0$ is normal (after one Adam step only
#   $B$ has changed, $\lVert B\rVert = \text{lr}\sqrt{\#B}$). Real causes: an optimiser created
#   before `apply_lora`, both factors zero, a learning rate far too small.
# * **Targets.** A list matches names or dotted suffixes, a string is a full regex,
#   `"all-linear"` takes every Linear; a typo raises in `lora_lab`, and PEFT ignores it when
#   another entry matches — print what was adapted.
# * **On and off.** `with disable_adapter(model):` gives the pretrained model exactly.
# * **Dropout** only touches the adapter's input, only in training; inverted dropout makes the
#   average over masks equal the eval-mode output, which equals the merged model's.
# * **Merging** is exact up to rounding in float32, and `unmerge` restores $W_0$ bit for bit;
#   in bf16/fp16 the merge rounds $W_0 + \Delta W$ to the format's grid, which can swallow most
#   of a small update ($\lVert\Delta W\rVert$ well below $\varepsilon\lVert W_0\rVert$), so
#   merged outputs differ. Unmerged layers cost $r(\text{in} + \text{out})$ extra
#   multiply-adds per input, and some extra time.
# * **Saving.** The adapter file is 8 bytes + a JSON header + 4 bytes per number of every $A$
#   and $B$; `load_adapter` and PEFT's `PeftModel.from_pretrained` both reload it.
# * **Scaling.** In our small experiment larger ranks trained faster under both $\alpha/r$ and
#   $\alpha/\sqrt r$; the best learning rate moved by a factor 2 over $r = 1 \dots 64$, up
#   under $\alpha/r$ and down under $\alpha/\sqrt r$, as notebook 02's first step predicts; at
#   a fixed learning rate which one was ahead depended on the measure, and each at its best,
#   $\alpha/r$ was as fast or faster. Not a law: tune the learning rate at the rank you use.
#
# **Next:** notebook 04 (`04_finetune_toy_task.ipynb`) fine-tunes a real pretrained model on
# real handwritten digits with a shifted domain, and compares LoRA at several ranks with
# full fine-tuning and with training only the head.
