"""The shifted-digits task of notebooks 04 and 05: a pretrained MLP meets digits it was not
made for.

The pretrained MLP (``lora_lab.data.load_digits_mlp``) reads 8 x 8 digits scanned upright.
Here the same kind of digits arrive *shifted*, and a few hundred labelled examples are all
we get to adapt it:

- ``"rotate"``: the scanner was turned, every digit arrives rotated by 90 degrees
  (:func:`rotate`). The input changed; what a digit means did not.
- ``"relabel"``: the images are as before, but the labels moved on by one, y -> (y + 1) mod 10
  (:func:`relabel`). Only the meaning of the output changed.
- ``"none"``: no shift (a sanity check: the pretrained model is already right).

:func:`make_task` draws, from the images the MLP never saw (``heldout``), a fixed stratified
*adaptation* set (``ADAPT_PER_CLASS`` images per digit, 300 in all) and keeps the remaining
497 images as the *test* set. :func:`tuning_split` carves a validation set out of the
adaptation set, so that learning rates -- and any other choice -- are made without looking
at the test images (:func:`load_lr_sweep`, :func:`validation_accuracies`).
:func:`build_variant` prepares the pretrained model for one way of adapting it (frozen, head
only, full fine-tuning, LoRA, or the "low-rank correction of the logits" from popular
write-ups, :class:`LogitsCorrection`); :func:`run_variant` builds, trains and evaluates one.

Why here and not in a notebook: notebooks 04 and 05 (and the sweep in
``tools/sweep_digits_lr.py``) must adapt the *same* model to the *same* task in the same
way, so the recipe lives once, in code that is tested.
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ._validate import check_bool, check_int, check_real
from .adapters import apply_lora, count_parameters, lora_layers
from .data import DATA_DIR, DIGITS_SIDE, load_digits, load_digits_mlp
from .layers import LoRALinear
from .lowrank import truncated_svd
from .train import History, accuracy, predict, train

SHIFTS = ("rotate", "relabel", "none")
"""The shifts :func:`make_task` knows."""
METHODS = ("frozen", "head", "full", "lora", "logits")
"""The ways :func:`build_variant` prepares the pretrained model."""
ALL_LAYERS = ("0", "2", "4")
"""Paths of the MLP's three Linear layers: 64 -> 256, 256 -> 256, 256 -> 10 (the head)."""
HEAD = "4"
"""Path of the MLP's output layer (the classification head)."""
NUM_CLASSES = 10
ADAPT_PER_CLASS = 30
"""Labelled images per digit for adapting (300 in all); the rest of ``heldout`` is the test set."""
SPLIT_SEED = 0
"""Seed of the fixed adapt/test split (NumPy ``default_rng``), part of the task's definition."""
EPOCHS = 30
"""Passes over the 300 adaptation images in every run of notebooks 04 and 05."""
BATCH_SIZE = 50
"""Images per Adam step: 6 steps per epoch, 180 steps per run."""
VALIDATION_PER_CLASS = 10
"""Images per digit that :func:`tuning_split` holds back for validation (100 in all)."""
TUNING_EPOCHS = EPOCHS * ADAPT_PER_CLASS // (ADAPT_PER_CLASS - VALIDATION_PER_CLASS)
"""Passes over the 200 images of :func:`tuning_split` in a run of the learning-rate sweep:
45, so that a sweep run takes the same 180 Adam steps, with the same learning-rate schedule,
as a run on the 300 adaptation images (``EPOCHS`` passes)."""
ALPHA = 16.0
"""LoRA's alpha in every run (lora_lab's default), so the scaling is alpha / r."""
DTYPE = torch.float64
"""Every run of the task computes in float64. Adam amplifies rounding differences step by
step, and in float32 two CPUs (or BLAS kernels) can end the same seeded run a few test images
apart -- occasionally one run diverges and the other does not. In float64 the rounding is
2**29 (about 5 * 10**8) times smaller (the ratio of the two machine epsilons, 2**-23 and
2**-52), and the runs the notebooks make end with the same predictions on the CPUs and BLAS
kernels we checked, so the numbers a notebook prints hold on the learner's machine too. (Not
every run: at learning rates where training falls apart, a float64 run too can end an image
apart on another kernel, e.g. LoRA r=8 at lr 0.05 in the sweep; notebooks keep their live
runs away from there.) A model must compute in the dtype of the images:
``load_digits_mlp().to(DTYPE)``."""
LR_SWEEP_FILE = DATA_DIR / "sweeps" / "digits_lr.csv"
"""The learning-rate sweep that ``tools/sweep_digits_lr.py`` writes."""


# --------------------------------------------------------------------------- the shifts

def rotate(images: torch.Tensor, quarter_turns: int = 1) -> torch.Tensor:
    """Digits rotated counter-clockwise by ``quarter_turns`` x 90 degrees.

    ``images``: float tensor (N, 64), each row an 8 x 8 picture flattened row by row (as
    ``load_digits().images``); returns a new tensor of the same shape. A rotation only moves
    pixels around: it is a fixed permutation of the 64 inputs.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a float torch.Tensor (N, 64), got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 2 or images.shape[1] != DIGITS_SIDE**2:
        raise ValueError(f"images must have shape (N, 64), got {tuple(images.shape)}")
    quarter_turns = check_int(quarter_turns, "quarter_turns", minimum=0, maximum=3)
    square = images.reshape(-1, DIGITS_SIDE, DIGITS_SIDE)
    return square.rot90(quarter_turns, dims=(1, 2)).reshape(-1, DIGITS_SIDE**2).contiguous()


def relabel(labels: torch.Tensor, offset: int = 1) -> torch.Tensor:
    """Labels moved on by ``offset``: y -> (y + offset) mod 10, an int64 tensor like ``labels``."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        raise TypeError(f"labels must be an int64 torch.Tensor (N,), got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.ndim != 1 or (len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES)):
        raise ValueError(f"labels must be 1-D with values in 0..{NUM_CLASSES - 1}")
    offset = check_int(offset, "offset", minimum=0, maximum=NUM_CLASSES - 1)
    return (labels + offset) % NUM_CLASSES


# --------------------------------------------------------------------------- the task

def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


class DigitsTask(NamedTuple):
    """Adaptation and test data of one shift.

    Images have the dtype given to :func:`make_task` (:data:`DTYPE`, float64, by default).

    Attributes:
        shift: one of :data:`SHIFTS`.
        adapt_images: (300, 64) and adapt_labels: int64 (300,): the labelled examples to
            adapt with (``ADAPT_PER_CLASS`` per digit).
        test_images: (497, 64) and test_labels: int64 (497,): everything else the
            pretrained model never saw.
        original_test_images: (497, 64): the test images before the shift (the same
            pictures upright), to show both domains and to measure forgetting.
        original_test_labels: int64 (497,): their labels before the shift.
    """

    shift: str
    adapt_images: torch.Tensor
    adapt_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    original_test_images: torch.Tensor
    original_test_labels: torch.Tensor


def stratified_split(labels: torch.Tensor, per_class: int,
                     seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions 0..N-1 into ``per_class`` per class and the rest.

    For each class c in 0..9, the first ``per_class`` positions of a random permutation
    (``numpy.random.default_rng(seed)``, classes in turn) of the positions with label c are
    chosen. Returns two sorted int64 tensors ``(chosen, rest)``. Raises ``ValueError`` if a
    class has fewer than ``per_class + 1`` examples (the rest would lack that class).
    """
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        raise TypeError("labels must be a 1-D int64 torch.Tensor")
    per_class = check_int(per_class, "per_class", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    values = labels.numpy()
    chosen: list[np.ndarray] = []
    for c in range(NUM_CLASSES):
        rows = np.flatnonzero(values == c)
        if len(rows) <= per_class:
            raise ValueError(f"per_class must be below the size of every class; class {c} has "
                             f"{len(rows)} examples, per_class={per_class}")
        chosen.append(rng.permutation(rows)[:per_class])
    picked = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(values)), picked)
    return torch.from_numpy(picked).long(), torch.from_numpy(rest).long()


def make_task(shift: str = "rotate", per_class: int = ADAPT_PER_CLASS,
              dtype: torch.dtype = DTYPE) -> DigitsTask:
    """The adaptation and test sets of ``shift`` (see :data:`SHIFTS`), from the held-out digits.

    Every shift uses the same pictures: ``per_class`` per digit of ``load_digits().heldout``
    for adapting (a fixed stratified choice, :func:`stratified_split`), the rest for testing.
    Images have ``dtype`` (a floating-point torch dtype; see :data:`DTYPE`).
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
    _check_dtype(dtype)
    digits = load_digits()
    images = digits.images[digits.heldout].to(dtype)
    labels = digits.labels[digits.heldout]
    adapt, test = stratified_split(labels, per_class)
    new_images = rotate(images) if shift == "rotate" else images
    new_labels = relabel(labels) if shift == "relabel" else labels
    return DigitsTask(shift, new_images[adapt], new_labels[adapt], new_images[test],
                      new_labels[test], images[test], labels[test])


def tuning_split(task: DigitsTask, per_class: int = VALIDATION_PER_CLASS) -> DigitsTask:
    """``task`` with its test set replaced by ``per_class`` images per digit of its adaptation set.

    The returned task adapts on the other adaptation images and tests on those held back
    (the *validation* images), so a learning rate can be chosen without ever looking at
    ``task``'s test images. Train ``TUNING_EPOCHS`` epochs on it to take as many steps as
    a run on ``task``.
    """
    if not isinstance(task, DigitsTask):
        raise TypeError(f"task must be a DigitsTask (from make_task), got {type(task).__name__}")
    validation, rest = stratified_split(task.adapt_labels, per_class)
    return task._replace(adapt_images=task.adapt_images[rest],
                         adapt_labels=task.adapt_labels[rest],
                         test_images=task.adapt_images[validation],
                         test_labels=task.adapt_labels[validation],
                         original_test_images=task.adapt_images[validation][:0],
                         original_test_labels=task.adapt_labels[validation][:0])


# --------------------------------------------------------------------------- the variants

class LogitsCorrection(nn.Module):
    """The mistake from popular write-ups: a low-rank update of the model's *output*.

    ``forward(x) = z + scaling * B A z`` with ``z = base(x)`` the frozen model's logits
    (N, classes), ``A`` (r, classes) random and ``B`` (classes, r) zero at the start, as in
    LoRA. It looks like LoRA, but it can only re-mix the ``classes`` numbers the frozen model
    already computed: whatever the base model lost about the input is lost for good.
    Real LoRA changes a *weight*, ``W0 + scaling * B A``, so it acts on the layer's input.
    """

    def __init__(self, base: nn.Module, num_classes: int = NUM_CLASSES, r: int = 8,
                 alpha: float = ALPHA) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise TypeError(f"base must be a torch.nn.Module, got {type(base).__name__}")
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        self.r = check_int(r, "r", minimum=1)
        self.scaling = check_real(alpha, "alpha", positive=True) / self.r
        self.base = base.requires_grad_(False)
        dtype = next(base.parameters(), torch.empty(0)).dtype  # the base's, as LoRALinear
        self.lora_A = nn.Parameter(torch.empty(self.r, num_classes, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(num_classes, self.r, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, ...) -> corrected logits (N, classes)."""
        z = self.base(x)
        return z + self.scaling * (z @ self.lora_A.T) @ self.lora_B.T


def replace_head(model: nn.Sequential, seed: int = 0) -> nn.Sequential:
    """Put a new, randomly initialised head (256 -> 10) at :data:`HEAD`; return ``model``.

    The new ``nn.Linear`` gets PyTorch's default initialisation from
    ``torch.Generator().manual_seed(seed)`` draws (the global RNG is not touched). This is
    what happens when a pretrained body gets a task-specific head, as in Hugging Face's
    ``AutoModelForSequenceClassification``: the head starts random and must be trained.
    """
    if not isinstance(model, nn.Sequential) or not isinstance(getattr(model, HEAD, None),
                                                               nn.Linear):
        raise TypeError("model must be the digits MLP (nn.Sequential with an nn.Linear at "
                        f"'{HEAD}'), from lora_lab.data.load_digits_mlp()")
    seed = check_int(seed, "seed", minimum=0)
    old = getattr(model, HEAD)
    head = nn.Linear(old.in_features, old.out_features, dtype=old.weight.dtype)
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(old.in_features)  # nn.Linear's default: U(+-1/sqrt(in))
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    setattr(model, HEAD, head.train(old.training))
    return model


def _check_paths(value: Any, name: str) -> tuple[str, ...]:
    """A non-empty sequence of layer paths (strings), never a single string."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value \
            or not all(isinstance(path, str) for path in value):
        hint = (f" (a string is not a list of paths: {value!r} would be read as "
                f"{list(value)!r})" if isinstance(value, str) else "")
        raise TypeError(f"{name} must be a non-empty tuple of layer paths such as ('0',) or "
                        f"{ALL_LAYERS}, got {value!r}{hint}")
    return tuple(value)


def _check_variant_args(method: str, r: int | None, alpha: float | None,
                        target_modules: Sequence[str] | None,
                        modules_to_save: Sequence[str] | None,
                        new_head: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check what does not need the model; return ``(target_modules, modules_to_save)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, value, methods in (("r", r, ("lora", "logits")), ("alpha", alpha, ("lora", "logits")),
                                 ("target_modules", target_modules, ("lora",)),
                                 ("modules_to_save", modules_to_save, ("lora",))):
        if value is not None and method not in methods:
            raise ValueError(f"{name} applies to method={' or '.join(map(repr, methods))} only "
                             f"(method={method!r} would ignore it), got {name}={value!r}")
    targets = ALL_LAYERS if target_modules is None else _check_paths(target_modules,
                                                                     "target_modules")
    keep = () if modules_to_save is None else _check_paths(modules_to_save, "modules_to_save")
    both = sorted(set(targets) & set(keep))
    if both:
        raise ValueError(f"modules_to_save {keep} and target_modules {targets} both name "
                         f"{both}: a layer is either adapted by LoRA or trained whole, not both")
    if check_bool(new_head, "new_head") and not (method in ("head", "full") or HEAD in keep):
        raise ValueError(f"new_head=True needs the new head trained: method 'head' or 'full', or "
                         f"'lora' with modules_to_save=('{HEAD}',); with method={method!r} and "
                         f"modules_to_save={modules_to_save!r} the random head would stay frozen")
    return targets, keep


def _check_rank(model: nn.Module, method: str, r: int, targets: tuple[str, ...]) -> int:
    """``r`` in 1..the largest rank an update can have (see :func:`build_variant`)."""
    if method == "logits":
        return check_int(r, "r", minimum=1, maximum=NUM_CLASSES)
    sizes = [min(layer.in_features, layer.out_features) for path in targets
             if isinstance(layer := dict(model.named_modules()).get(path), nn.Linear)]
    return check_int(r, "r", minimum=1, maximum=max(sizes, default=None))


def build_variant(method: str, *, r: int | None = None, alpha: float | None = None,
                  target_modules: Sequence[str] | None = None,
                  modules_to_save: Sequence[str] | None = None, new_head: bool = False,
                  seed: int = 0, dtype: torch.dtype = DTYPE) -> nn.Module:
    """The pretrained digits MLP, prepared for one way of adapting it (see :data:`METHODS`).

    - ``"frozen"``: nothing trains. ``"head"``: only the head (layer ``"4"``) trains.
      ``"full"``: every parameter trains.
    - ``"lora"``: ``apply_lora(model, target_modules, r, alpha, modules_to_save=...)``;
      only the adapters (and the ``modules_to_save``) train. ``target_modules``
      (default: all three Linear layers, :data:`ALL_LAYERS`) and ``modules_to_save`` are
      tuples of layer paths -- never one string -- and no layer may be in both.
    - ``"logits"``: :class:`LogitsCorrection` of rank ``r`` on the frozen model.

    ``r`` (default 8) and ``alpha`` (default :data:`ALPHA`) apply to ``"lora"`` and
    ``"logits"`` only; the other methods raise if they are given. For ``"lora"``, ``r`` is
    at most the largest ``min(in, out)`` of the adapted layers (64 for layer 0, 256 for
    layer 2, 10 for the head): beyond that, no layer's update ``B A`` could gain rank from
    it. (A layer with ``min(in, out) < r``, such as the head at r = 16, still trains all of
    its ``r (in + out)`` numbers, but its update has rank at most ``min(in, out)``.) For
    ``"logits"``, ``r`` is at most 10.

    ``new_head`` first replaces the head by a random one (:func:`replace_head`); it is
    allowed only where that head then trains (``"head"``, ``"full"``, or ``"lora"`` with
    the head in ``modules_to_save``). ``seed`` (int >= 0) seeds the global torch RNG
    before the adapters are created, so the random factor A is reproducible. The model
    computes in ``dtype`` (see :data:`DTYPE`). Returns the model in eval mode. Raises
    ``TypeError``/``ValueError`` naming the argument, before building anything.
    """
    targets, keep = _check_variant_args(method, r, alpha, target_modules, modules_to_save,
                                        new_head)
    seed = check_int(seed, "seed", minimum=0)
    model = load_digits_mlp().to(_check_dtype(dtype))
    r = 8 if r is None else _check_rank(model, method, r, targets)
    alpha = ALPHA if alpha is None else alpha
    if new_head:
        replace_head(model, seed)
    torch.manual_seed(seed)
    if method == "lora":
        extra = {"modules_to_save": list(keep)} if keep else {}
        apply_lora(model, list(targets), r=r, alpha=alpha, **extra)
    elif method == "logits":
        model = LogitsCorrection(model, r=r, alpha=alpha)
    else:
        for name, p in model.named_parameters():
            p.requires_grad_(method == "full" or (method == "head"
                                                   and name.startswith(HEAD + ".")))
    return model.eval()


VARIANTS: dict[str, dict[str, Any]] = {
    "frozen": {"method": "frozen"},
    "head only": {"method": "head"},
    "full fine-tuning": {"method": "full"},
    **{f"LoRA r={r}": {"method": "lora", "r": r} for r in (1, 2, 4, 8, 16, 64)},
    "logits correction r=8": {"method": "logits", "r": 8},
    **{f"LoRA r=8 on layer {layer}": {"method": "lora", "r": 8, "target_modules": (layer,)}
       for layer in ALL_LAYERS},
    **{f"LoRA r=8 alpha={alpha}": {"method": "lora", "r": 8, "alpha": float(alpha)}
       for alpha in (4, 64)},
    "LoRA r=8 + new head": {"method": "lora", "r": 8, "target_modules": ("0", "2"),
                            "modules_to_save": (HEAD,), "new_head": True},
}
"""Named variants: ``run_variant(task, **VARIANTS[name], lr=..., seed=...)``. Every LoRA
variant adapts all three layers with alpha = 16 unless its name says otherwise. ("LoRA r=64"
is there for notebook 05; notebook 04 compares r = 1 to 16.)"""


class Run(NamedTuple):
    """One adaptation run: the trained model and what it reached.

    Attributes:
        accuracy: fraction of the task's test images classified right, in [0, 1].
        correct: how many test images that is (an exact count, stable across machines).
        trainable: number of trainable parameters.
        history: the :class:`~lora_lab.train.History` of the run (``None`` for ``"frozen"``).
        model: the trained model, in eval mode.
    """

    accuracy: float
    correct: int
    trainable: int
    history: History | None
    model: nn.Module


DEFAULT_LR = 1e-2
"""The learning rate :func:`run_variant` uses when none is given (the notebooks always give
the one the sweep chose, :func:`best_lr`)."""


def run_variant(task: DigitsTask, method: str, *, lr: float | None = None, seed: int = 0,
                epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, progress: bool = False,
                **variant: Any) -> Run:
    """Build a variant (:func:`build_variant`), adapt it to ``task`` and test it.

    ``variant`` holds further arguments of :func:`build_variant` (``r``, ``alpha``,
    ``target_modules``, ``modules_to_save``, ``new_head``); ``seed`` seeds both the adapter's
    initialisation and the training order; ``lr`` (default :data:`DEFAULT_LR`), ``epochs``,
    ``batch_size`` and ``progress`` go to :func:`lora_lab.train.train` (Adam). The
    ``"frozen"`` method trains nothing and is only tested: giving it an ``lr`` raises
    ``ValueError`` (it would be ignored). Every argument is checked before anything is
    built or trained.
    """
    if not isinstance(task, DigitsTask):
        raise TypeError(f"task must be a DigitsTask (from make_task), got {type(task).__name__}")
    if method == "frozen" and lr is not None:
        raise ValueError(f"lr applies to methods that train; method='frozen' trains nothing, "
                         f"got lr={lr!r}")
    lr = check_real(DEFAULT_LR if lr is None else lr, "lr", positive=True)
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=len(task.adapt_labels))
    progress = check_bool(progress, "progress")
    model = build_variant(method, seed=seed, **variant)
    history = None
    if method != "frozen":
        history = train(model, task.adapt_images, task.adapt_labels, lr=lr, epochs=epochs,
                        batch_size=batch_size, seed=seed, progress=progress,
                        desc=f"{method} lr={lr:g}")
    acc = accuracy(model, task.test_images, task.test_labels)
    return Run(acc, round(acc * len(task.test_labels)), count_parameters(model).trainable,
               history, model)


# --------------------------------------------------------------------------- rank

def truncate_lora(model: nn.Module, rank: int, layers: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` in which the LoRA updates of ``layers`` are cut down to rank ``rank``.

    ``layers``: paths of LoRA layers of ``model`` (default: every LoRA layer); the other
    LoRA layers are copied as they are. Each chosen layer's ``delta_weight()`` (out, in) is
    replaced by its best rank-k approximation, k = min(rank, the layer's r, out, in)
    (Eckart-Young, notebook 01; computed with :func:`lora_lab.lowrank.truncated_svd` in
    float64), stored as a new rank-k ``LoRALinear`` with ``alpha = k`` (scaling 1):
    ``lora_B = U_k S_k``, ``lora_A = Vt_k``. Where k equals the layer's r the update is kept
    as it is (up to rounding). ``model`` itself is not changed. Raises ``ValueError`` if
    ``model`` has no LoRA layers or is merged, if ``layers`` names something that is not one
    of its LoRA layers, if an update to cut is not finite, or if ``rank`` is outside
    1..(largest r of the layers cut); ``TypeError`` if ``layers`` is a string.
    """
    found = dict(lora_layers(model))
    if not found:
        raise ValueError("model has no LoRA layers to truncate")
    if any(layer.merged for layer in found.values()):
        raise ValueError("model is merged: unmerge_lora(model) first, so that each base "
                         "weight is W0 again")
    names = list(found) if layers is None else list(_check_paths(layers, "layers"))
    unknown = [name for name in names if name not in found]
    if unknown:
        raise ValueError(f"layers {unknown} are not LoRA layers of model; it has {list(found)}")
    rank = check_int(rank, "rank", minimum=1, maximum=max(found[name].r for name in names))
    copied = copy.deepcopy(model)
    copies = dict(lora_layers(copied))
    for name in names:
        layer = copies[name]
        delta = layer.delta_weight().detach().double()
        if not torch.isfinite(delta).all():
            raise ValueError(f"the update of layer {name!r} contains NaN or inf: nothing to cut")
        k = min(rank, layer.r, layer.out_features, layer.in_features)
        with torch.no_grad():
            U, S, Vt = truncated_svd(delta.numpy(), k)
            short = LoRALinear(layer.base, r=k, alpha=k)
            short.lora_B.copy_(torch.from_numpy(U * S))
            short.lora_A.copy_(torch.from_numpy(Vt))
        parent, _, child = name.rpartition(".")
        setattr(copied.get_submodule(parent) if parent else copied, child,
                short.train(layer.training))
    return copied


# --------------------------------------------------------------------------- the sweep

class SweepRow(NamedTuple):
    """One line of the shipped learning-rate sweep (``data/sweeps/digits_lr.csv``)."""

    shift: str
    variant: str
    lr: float
    seed: int
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


def load_lr_sweep(path: str | Path = LR_SWEEP_FILE) -> list[SweepRow]:
    """Read the learning-rate sweep written by ``tools/sweep_digits_lr.py``.

    Each row: a shift, a variant name, a learning rate, a seed, and how many of the 100
    *validation* images (:func:`tuning_split`) that run classified right, after
    ``TUNING_EPOCHS`` epochs on the other 200 (the same 180 steps as a run on all 300).
    """
    with Path(path).open(newline="") as file:
        return [SweepRow(row["shift"], row["variant"], float(row["lr"]), int(row["seed"]),
                         int(row["correct"]), int(row["total"]))
                for row in csv.DictReader(file)]


def _sweep_counts(rows: Sequence[SweepRow], shift: str, variant: str) -> dict[float, list[int]]:
    """``{lr: [correct of each seed]}`` of one variant, or ``ValueError`` if it has no rows."""
    counts: dict[float, list[int]] = {}
    for row in rows:
        if row.shift == shift and row.variant == variant:
            counts.setdefault(row.lr, []).append(row.correct)
    if not counts:
        raise ValueError(f"the sweep has no rows for shift={shift!r}, variant={variant!r}")
    return counts


def best_lr(rows: Sequence[SweepRow], shift: str, variant: str) -> float:
    """The learning rate whose *worst* seed did best (ties: the smaller learning rate).

    Choosing by the worst seed, not the mean or the best, prefers a learning rate that
    works every time over one that is brilliant once and diverges the next. (The shipped
    sweep's grid brackets every choice: ``tests/test_digits_task.py`` checks that no
    variant's choice is the smallest or largest rate tried.)
    """
    worst = {lr: min(counts) for lr, counts in _sweep_counts(rows, shift, variant).items()}
    return max(sorted(worst), key=lambda lr: worst[lr])


def validation_accuracies(rows: Sequence[SweepRow], shift: str, variant: str,
                          lr: float | None = None) -> list[float]:
    """Validation accuracies in [0, 1] of every seed of ``variant`` at ``lr``, in seed order.

    ``lr`` defaults to :func:`best_lr`'s choice. These are what choices (of a rank, of a
    layer) should be made from: the test images stay for reporting. Raises ``ValueError``
    if the sweep has no rows for the variant or the learning rate.
    """
    _sweep_counts(rows, shift, variant)
    lr = best_lr(rows, shift, variant) if lr is None else check_real(lr, "lr", positive=True)
    found = sorted((row.seed, row.accuracy) for row in rows
                   if (row.shift, row.variant, row.lr) == (shift, variant, lr))
    if not found:
        raise ValueError(f"the sweep has no rows for {variant!r} ({shift}) at lr={lr:g}")
    return [acc for _, acc in found]


# --------------------------------------------------------------------------- the rank explorer

class RankStudy(NamedTuple):
    """What adapters of several ranks did on one task: the data of ``widgets.RankExplorer``.

    Attributes (NumPy, so the widget needs no torch):
        ranks: int (k,), increasing. trainable: int (k,), trainable parameters of each.
        accuracy: float (k,), test accuracy of the adapter shown at each rank (the first
            model given for it, e.g. seed 0).
        truncated_accuracy: float (k,), test accuracy of the largest-rank adapter shown
            with the update of ``layer`` alone cut down to each rank (:func:`truncate_lora`;
            its other layers keep their updates).
        spectra: float (k, ranks[-1]), the largest singular values of the update ΔW of
            ``layer`` for each adapter shown (zero beyond its rank, up to rounding).
        layer: the module path whose ΔW the spectra describe (and which is cut).
        images: float (n, 8, 8) and labels: int (n,), a few test images and their labels.
        predictions: int (k, n), each adapter's predicted digit for each shown image.
        test_size: number of test images the accuracies are measured on.
        seed_accuracy: float (k, s), test accuracy of every model given at each rank (one
            per seed, s >= 1; column 0 is ``accuracy``), so that the spread over seeds shows.
    """

    ranks: np.ndarray
    trainable: np.ndarray
    accuracy: np.ndarray
    truncated_accuracy: np.ndarray
    spectra: np.ndarray
    layer: str
    images: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    test_size: int
    seed_accuracy: np.ndarray | None = None


def _shown_images(predictions: torch.Tensor, labels: torch.Tensor, shown: int) -> torch.Tensor:
    """Positions of ``shown`` test images: first those the lowest rank gets wrong and the
    highest gets right (where rank makes a difference), then the others, in test order."""
    helped = (predictions[0] != labels) & (predictions[-1] == labels)
    order = torch.cat([torch.nonzero(helped).flatten(), torch.nonzero(~helped).flatten()])
    return order[:shown].sort().values


def _study_models(models: Any) -> dict[int, list[nn.Module]]:
    """``{rank: [models]}`` from ``{rank: model or list of models}``, each checked."""
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict {rank: LoRA model, or a list of them}")
    table = {}
    for key, value in models.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"the keys of models must be ranks (int), got {key!r}")
        group = list(value) if isinstance(value, (list, tuple)) else [value]
        if not group or not all(isinstance(m, nn.Module) for m in group):
            raise TypeError(f"models[{key!r}] must be a LoRA model or a non-empty list of them")
        for model in group:
            ranks = {layer.r for _, layer in lora_layers(model)}
            if max(ranks, default=None) != key:
                raise ValueError(f"models[{key!r}] must be a LoRA model of rank {key} (the "
                                 f"largest r of its LoRA layers); it has LoRA layers of rank "
                                 f"{sorted(ranks) or 'none'}")
        table[int(key)] = group
    if len({len(group) for group in table.values()}) != 1:
        raise ValueError("every rank needs the same number of models (one per seed), got "
                         f"{ {r: len(g) for r, g in table.items()} }")
    return table


def _spectra(shown: list[nn.Module], ranks: list[int], layer: str) -> np.ndarray:
    """Singular values of ``layer``'s ΔW for each model, (k, largest rank), zero-padded."""
    top = ranks[-1]
    spectra = np.zeros((len(ranks), top))
    for i, (r, model) in enumerate(zip(ranks, shown, strict=True)):
        found = dict(lora_layers(model)).get(layer)
        if found is None:
            raise ValueError(f"layer must name a LoRA layer of every model, got {layer!r}")
        delta = found.delta_weight().detach().double()
        if not torch.isfinite(delta).all():
            raise ValueError(f"the update of layer {layer!r} of the rank-{r} model contains "
                             "NaN or inf")
        values = torch.linalg.svdvals(delta).numpy()
        spectra[i, :min(top, len(values))] = values[:top]
    return spectra


def rank_study(models: dict[int, Any], task: DigitsTask, layer: str = "0",
               shown: int = 8) -> RankStudy:
    """Measure LoRA models trained at several ranks on ``task``'s test set.

    ``models`` maps each rank r (an int, equal to the model's rank: the largest r of its
    LoRA layers) to a LoRA model trained at that rank, or to a list of them (one per seed,
    the same number for every rank). The first model of each rank is the one *shown*: its
    spectrum of ``layer``'s update, its predictions, and (for the largest rank) the update
    of ``layer`` alone cut down to each rank (:func:`truncate_lora`); every model's test
    accuracy goes into ``seed_accuracy``. ``shown`` (1..test size) test images are kept
    with every shown model's predictions: first those the lowest-rank model misreads and
    the highest-rank model reads right. Raises ``TypeError``/``ValueError`` naming what is
    wrong (a key that is not the model's rank, a layer without LoRA, a non-finite update).
    """
    table = _study_models(models)
    if not isinstance(task, DigitsTask):
        raise TypeError(f"task must be a DigitsTask (from make_task), got {type(task).__name__}")
    shown = check_int(shown, "shown", minimum=1, maximum=len(task.test_labels))
    ranks = sorted(table)
    first = [table[r][0] for r in ranks]
    spectra = _spectra(first, ranks, layer)
    x, y = task.test_images, task.test_labels
    predictions = torch.stack([predict(model, x) for model in first])
    picked = _shown_images(predictions, y, shown)
    seed_accuracy = np.array([[accuracy(m, x, y) for m in table[r]] for r in ranks])
    return RankStudy(
        ranks=np.array(ranks), spectra=spectra, layer=layer,
        trainable=np.array([count_parameters(model).trainable for model in first]),
        accuracy=seed_accuracy[:, 0].copy(),
        truncated_accuracy=np.array([accuracy(truncate_lora(first[-1], r, [layer]), x, y)
                                     for r in ranks]),
        images=x[picked].double().numpy().reshape(-1, DIGITS_SIDE, DIGITS_SIDE),
        labels=y[picked].numpy(), predictions=predictions[:, picked].numpy(),
        test_size=len(y), seed_accuracy=seed_accuracy)
