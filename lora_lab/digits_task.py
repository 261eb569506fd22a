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
adaptation set, so that learning rates are chosen without looking at the test images.
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

from ._validate import check_int, check_real
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
ALPHA = 16.0
"""LoRA's alpha in every run (lora_lab's default), so the scaling is alpha / r."""
DTYPE = torch.float64
"""Every run of the task computes in float64. Adam amplifies rounding differences step by
step, and in float32 two CPUs (or BLAS kernels) can end the same seeded run a few test images
apart -- occasionally one run diverges and the other does not. In float64 the rounding is
a billion times smaller and every run ends with the same predictions everywhere, so the
numbers a notebook prints hold on the learner's machine too."""
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

    Attributes:
        shift: one of :data:`SHIFTS`.
        adapt_images: float32 (300, 64) and adapt_labels: int64 (300,): the labelled
            examples to adapt with (``ADAPT_PER_CLASS`` per digit).
        test_images: float32 (497, 64) and test_labels: int64 (497,): everything else the
            pretrained model never saw.
        original_test_images: float32 (497, 64): the test images before the shift (the
            same pictures upright), to show both domains and to measure forgetting.
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


def tuning_split(task: DigitsTask, per_class: int = 10) -> DigitsTask:
    """``task`` with its test set replaced by ``per_class`` images per digit of its adaptation set.

    The returned task adapts on the other adaptation images and tests on those held back,
    so a learning rate can be chosen without ever looking at ``task``'s test images.
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


def _check_variant_args(method: str, r: int, target_modules: Sequence[str],
                        modules_to_save: Sequence[str] | None) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_int(r, "r", minimum=1)
    if method != "lora" and (tuple(target_modules) != ALL_LAYERS or modules_to_save):
        raise ValueError(f"target_modules and modules_to_save apply to method='lora' only, "
                         f"got method={method!r}")


def build_variant(method: str, *, r: int = 8, alpha: float = ALPHA,
                  target_modules: Sequence[str] = ALL_LAYERS,
                  modules_to_save: Sequence[str] | None = None, new_head: bool = False,
                  seed: int = 0, dtype: torch.dtype = DTYPE) -> nn.Module:
    """The pretrained digits MLP, prepared for one way of adapting it (see :data:`METHODS`).

    - ``"frozen"``: nothing trains. ``"head"``: only the head (layer ``"4"``) trains.
      ``"full"``: every parameter trains.
    - ``"lora"``: ``apply_lora(model, target_modules, r, alpha, modules_to_save=...)``;
      only the adapters (and the ``modules_to_save``) train.
    - ``"logits"``: :class:`LogitsCorrection` of rank ``r`` on the frozen model.

    ``new_head`` first replaces the head by a random one (:func:`replace_head`), and makes
    it trainable for ``"head"``/``"full"``. ``seed`` (int >= 0) seeds the global torch RNG
    before the adapters are created, so the random factor A is reproducible. The model
    computes in ``dtype`` (see :data:`DTYPE`). Returns the model in eval mode.
    """
    _check_variant_args(method, r, target_modules, modules_to_save)
    seed = check_int(seed, "seed", minimum=0)
    model = load_digits_mlp().to(_check_dtype(dtype))
    if new_head:
        replace_head(model, seed)
    torch.manual_seed(seed)
    if method == "lora":
        extra = {"modules_to_save": list(modules_to_save)} if modules_to_save else {}
        apply_lora(model, list(target_modules), r=r, alpha=alpha, **extra)
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
    **{f"LoRA r={r}": {"method": "lora", "r": r} for r in (1, 2, 4, 8, 16)},
    "logits correction r=8": {"method": "logits", "r": 8},
    **{f"LoRA r=8 on layer {layer}": {"method": "lora", "r": 8, "target_modules": (layer,)}
       for layer in ALL_LAYERS},
    **{f"LoRA r=8 alpha={alpha}": {"method": "lora", "r": 8, "alpha": float(alpha)}
       for alpha in (4, 64)},
    "LoRA r=8 + new head": {"method": "lora", "r": 8, "target_modules": ("0", "2"),
                            "modules_to_save": (HEAD,), "new_head": True},
}
"""Named variants: ``run_variant(task, **VARIANTS[name], lr=..., seed=...)``. Every LoRA
variant adapts all three layers with alpha = 16 unless its name says otherwise."""


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


def run_variant(task: DigitsTask, method: str, *, lr: float = 1e-2, seed: int = 0,
                epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, progress: bool = False,
                **variant: Any) -> Run:
    """Build a variant (:func:`build_variant`), adapt it to ``task`` and test it.

    ``variant`` holds further arguments of :func:`build_variant` (``r``, ``alpha``,
    ``target_modules``, ``modules_to_save``, ``new_head``); ``seed`` seeds both the adapter's
    initialisation and the training order; ``lr``, ``epochs``, ``batch_size`` and
    ``progress`` go to :func:`lora_lab.train.train` (Adam). The ``"frozen"`` method is only
    tested.
    """
    if not isinstance(task, DigitsTask):
        raise TypeError(f"task must be a DigitsTask (from make_task), got {type(task).__name__}")
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

def truncate_lora(model: nn.Module, rank: int) -> nn.Module:
    """A copy of ``model`` in which every LoRA update is cut down to rank ``rank``.

    Each layer's ``delta_weight()`` (out, in) is replaced by its best rank-k approximation,
    k = min(rank, the layer's r, out, in) (Eckart-Young, notebook 01; computed with
    :func:`lora_lab.lowrank.truncated_svd` in float64), stored as a new rank-k
    ``LoRALinear`` with ``alpha = k`` (scaling 1): ``lora_B = U_k S_k``, ``lora_A = Vt_k``.
    Where k equals the layer's r the update is kept as it is (up to rounding). ``model``
    itself is not changed. Raises ``ValueError`` if ``model`` has no LoRA layers or ``rank``
    is outside 1..(largest r of its layers).
    """
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("model has no LoRA layers to truncate")
    if any(layer.merged for _, layer in layers):
        raise ValueError("model is merged: unmerge_lora(model) first, so that each base "
                         "weight is W0 again")
    rank = check_int(rank, "rank", minimum=1, maximum=max(layer.r for _, layer in layers))
    copied = copy.deepcopy(model)
    for name, layer in list(lora_layers(copied)):
        k = min(rank, layer.r, layer.out_features, layer.in_features)
        with torch.no_grad():
            U, S, Vt = truncated_svd(layer.delta_weight().detach().double().numpy(), k)
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

    Each row: a shift, a variant name, a learning rate, a seed, and how many of the
    *validation* images (:func:`tuning_split`) that run classified right.
    """
    with Path(path).open(newline="") as file:
        return [SweepRow(row["shift"], row["variant"], float(row["lr"]), int(row["seed"]),
                         int(row["correct"]), int(row["total"]))
                for row in csv.DictReader(file)]


def best_lr(rows: Sequence[SweepRow], shift: str, variant: str) -> float:
    """The learning rate whose *worst* seed did best (ties: the smaller learning rate).

    Choosing by the worst seed, not the mean or the best, prefers a learning rate that
    works every time over one that is brilliant once and diverges the next.
    """
    worst: dict[float, int] = {}
    for row in rows:
        if row.shift == shift and row.variant == variant:
            worst[row.lr] = min(worst.get(row.lr, row.correct), row.correct)
    if not worst:
        raise ValueError(f"the sweep has no rows for shift={shift!r}, variant={variant!r}")
    return max(sorted(worst), key=lambda lr: worst[lr])


# --------------------------------------------------------------------------- the rank explorer

class RankStudy(NamedTuple):
    """What adapters of several ranks did on one task: the data of ``widgets.RankExplorer``.

    Attributes (NumPy, so the widget needs no torch):
        ranks: int (k,), increasing. trainable: int (k,), trainable parameters of each.
        accuracy: float (k,), test accuracy of the adapter trained at each rank.
        truncated_accuracy: float (k,), test accuracy of the largest-rank adapter with every
            update cut down to each rank (:func:`truncate_lora`).
        spectra: float (k, ranks[-1]), the largest singular values of the update ΔW of
            ``layer`` for each adapter (zero beyond its rank, up to rounding).
        layer: the module path whose ΔW the spectra describe.
        images: float (n, 8, 8) and labels: int (n,), a few test images and their labels.
        predictions: int (k, n), each adapter's predicted digit for each shown image.
        test_size: number of test images the accuracies are measured on.
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


def _shown_images(predictions: torch.Tensor, labels: torch.Tensor, shown: int) -> torch.Tensor:
    """Positions of ``shown`` test images: first those the lowest rank gets wrong and the
    highest gets right (where rank makes a difference), then the others, in test order."""
    helped = (predictions[0] != labels) & (predictions[-1] == labels)
    order = torch.cat([torch.nonzero(helped).flatten(), torch.nonzero(~helped).flatten()])
    return order[:shown].sort().values


def rank_study(models: dict[int, nn.Module], task: DigitsTask, layer: str = "0",
               shown: int = 8) -> RankStudy:
    """Measure LoRA models trained at several ranks (``{r: model}``) on ``task``'s test set.

    Every model must have a LoRA layer at ``layer``; the one of largest rank is also cut
    down to each of the ranks (:func:`truncate_lora`). ``shown`` (1..test size) test images
    are kept with every model's predictions: first those the lowest-rank model misreads
    and the highest-rank model reads right.
    """
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict {rank: LoRA model}")
    if not isinstance(task, DigitsTask):
        raise TypeError(f"task must be a DigitsTask (from make_task), got {type(task).__name__}")
    shown = check_int(shown, "shown", minimum=1, maximum=len(task.test_labels))
    ranks = sorted(models)
    layers = [dict(lora_layers(models[r])).get(layer) for r in ranks]
    if any(found is None for found in layers):
        raise ValueError(f"layer must name a LoRA layer of every model, got {layer!r}")
    top = ranks[-1]
    with torch.no_grad():
        spectra = np.zeros((len(ranks), top))
        for i, found in enumerate(layers):
            values = torch.linalg.svdvals(found.delta_weight().double()).numpy()
            spectra[i, :min(top, len(values))] = values[:top]
    x, y = task.test_images, task.test_labels
    predictions = torch.stack([predict(models[r], x) for r in ranks])
    picked = _shown_images(predictions, y, shown)
    return RankStudy(
        ranks=np.array(ranks), spectra=spectra, layer=layer,
        trainable=np.array([count_parameters(models[r]).trainable for r in ranks]),
        accuracy=np.array([accuracy(models[r], x, y) for r in ranks]),
        truncated_accuracy=np.array([accuracy(truncate_lora(models[top], r), x, y)
                                     for r in ranks]),
        images=x[picked].double().numpy().reshape(-1, DIGITS_SIDE, DIGITS_SIDE),
        labels=y[picked].numpy(), predictions=predictions[:, picked].numpy(),
        test_size=len(y))
