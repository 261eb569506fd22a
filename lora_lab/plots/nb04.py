"""Figures for notebook 04 (fine-tuning on handwritten digits)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .._validate import as_array

__all__ = [
    "accuracy_vs_parameters_figure",
    "domains_figure",
    "lr_sweep_figure",
]


def _pictures(images: Any, name: str) -> np.ndarray:
    """``images`` (n, 64) or (n, side, side), array or tensor, as float (n, side, side)."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().double().numpy()
    array = as_array(images, name, ndim=(2, 3))
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise ValueError(f"{name} must have a square number of pixels per row, got "
                             f"{array.shape[1]}")
        array = array.reshape(len(array), side, side)
    return array


def domains_figure(rows: Mapping[str, Any], labels: Sequence[int]) -> Figure:
    """The same few digits in each domain: one row of pictures per ``rows`` entry.

    ``rows`` maps a row title (e.g. ``"upright (pretraining)"``) to images (n, 64) or
    (n, 8, 8), as arrays or tensors, values drawn from white (0) to black (max);
    ``labels`` (n,) are printed under the pictures of the first row. Raises
    ``TypeError``/``ValueError`` naming what cannot be drawn. Why: a learner should *see*
    the shift before measuring what it does to a model.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError("rows must map at least one title to images")
    pictures = {title: _pictures(images, f"rows[{title!r}]") for title, images in rows.items()}
    labels = as_array(labels, "labels", ndim=1)
    n = len(labels)
    if any(len(p) != n for p in pictures.values()):
        raise ValueError(f"every row must hold len(labels) = {n} images, got "
                         f"{[len(p) for p in pictures.values()]}")
    fig = Figure(figsize=(0.85 * n + 1.6, 1.15 * len(pictures) + 0.2))
    axes = fig.subplots(len(pictures), n, squeeze=False)
    fig.subplots_adjust(left=1.5 / (0.85 * n + 1.6), right=0.99, top=0.92, bottom=0.1,
                        wspace=0.08, hspace=0.35)
    for row, (title, images) in zip(axes, pictures.items(), strict=True):
        for j, (ax, picture) in enumerate(zip(row, images, strict=True)):
            ax.imshow(picture, cmap="gray_r", vmin=0.0, vmax=float(images.max()) or 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    for ax, label in zip(axes[0], labels, strict=True):
        ax.set_title(f"{int(label)}", fontsize=10)
    return fig


def accuracy_vs_parameters_figure(trainable: Mapping[str, int],
                                  accuracy: Mapping[str, Sequence[float]], *,
                                  baseline: tuple[str, float] | None = None) -> Figure:
    """Accuracy against trainable parameters (log scale), one point per variant.

    ``trainable`` maps each variant's name to its number of trainable parameters (>= 1);
    ``accuracy`` maps the same names to the accuracies in [0, 1] of its runs (one per seed):
    the point is drawn at the mean with a bar from the worst to the best run, so a spread
    over seeds is visible; the legend names the points. ``baseline`` ``(label, accuracy)``
    draws a dashed horizontal line (e.g. the frozen model, which has no trainable parameter
    to place on a log axis). Raises
    ``ValueError`` naming the variant that cannot be drawn.
    """
    if not isinstance(trainable, Mapping) or not trainable:
        raise ValueError("trainable must map at least one variant name to a count")
    if not isinstance(accuracy, Mapping) or set(accuracy) != set(trainable):
        raise ValueError("accuracy must have exactly the variants of trainable, got "
                         f"{sorted(accuracy) if isinstance(accuracy, Mapping) else accuracy}")
    fig = Figure(figsize=(7.2, 4.2))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.95)
    for i, (name, count) in enumerate(trainable.items()):
        runs = as_array(accuracy[name], f"accuracy[{name!r}]", ndim=1)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"trainable[{name!r}] must be an int >= 1, got {count!r}")
        if np.any((runs < 0) | (runs > 1)):
            raise ValueError(f"accuracy[{name!r}] must hold fractions in [0, 1]")
        low, mid, high = 100 * runs.min(), 100 * runs.mean(), 100 * runs.max()
        ax.errorbar([count], [mid], yerr=[[mid - low], [high - mid]], fmt="o", capsize=4,
                    color=f"C{i % 10}", label=name)
    if baseline is not None:
        label, value = baseline
        ax.axhline(100 * float(value), color="gray", linestyle="--", label=label)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test accuracy (%): mean, bar from worst to best seed")
    ax.grid(alpha=0.3, which="both")
    return fig


def lr_sweep_figure(curves: Mapping[str, Mapping[float, Sequence[float]]], *,
                    ylabel: str = "validation accuracy (%)") -> Figure:
    """Accuracy against learning rate (log scale), one curve per variant.

    ``curves`` maps a variant's name to ``{learning rate: accuracies in [0, 1] of its
    runs}``; each curve goes through the worst run at each learning rate (the measure the
    sweep chooses by) and a band shows worst to best. A star marks each curve's best
    learning rate (best worst run; ties: the smaller rate). Raises ``ValueError`` naming
    what cannot be drawn.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must map at least one variant name to {lr: accuracies}")
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.95)
    for i, (name, by_lr) in enumerate(curves.items()):
        if not isinstance(by_lr, Mapping) or not by_lr:
            raise ValueError(f"curves[{name!r}] must map learning rates to accuracies")
        lrs = as_array(sorted(by_lr), f"learning rates of {name!r}", ndim=1)
        if np.any(lrs <= 0):
            raise ValueError(f"learning rates of {name!r} must be > 0")
        runs = [as_array(by_lr[lr], f"curves[{name!r}][{lr}]", ndim=1) for lr in sorted(by_lr)]
        worst = np.array([100 * r.min() for r in runs])
        best = np.array([100 * r.max() for r in runs])
        color = f"C{i % 10}"
        ax.plot(lrs, worst, "o-", color=color, label=name)
        ax.fill_between(lrs, worst, best, color=color, alpha=0.15)
        top = int(np.argmax(worst))  # first maximum: the smaller learning rate on ties
        ax.plot([lrs[top]], [worst[top]], "*", color=color, markersize=16,
                markeredgecolor="black")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return fig
