"""Figures for notebook 06 (LoRA in a transformer, and PEFT)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .._validate import as_array

__all__ = [
    "learning_forgetting_figure",
    "target_comparison_figure",
    "training_curves_figure",
]


def _runs_of(table: object, name: str) -> dict[str, list[np.ndarray]]:
    """``{variant: [1-D arrays]}`` from ``{variant: sequence of runs}``, checked."""
    if not isinstance(table, Mapping) or not table:
        raise ValueError(f"{name} must map at least one variant name to its runs")
    runs = {}
    for variant, values in table.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{name}[{variant!r}] must be a non-empty list of runs")
        runs[str(variant)] = [as_array(v, f"{name}[{variant!r}]", ndim=1) for v in values]
    return runs


def _losses_of(table: object, name: str) -> dict[str, np.ndarray]:
    """``{variant: 1-D array of losses, one per run}``, checked."""
    if not isinstance(table, Mapping) or not table:
        raise ValueError(f"{name} must map at least one variant name to its runs' losses")
    return {str(variant): as_array(values, f"{name}[{variant!r}]", ndim=1)
            for variant, values in table.items()}


def training_curves_figure(curves: Mapping[str, Sequence[Sequence[float]]], *,
                           title: str | None = None) -> Figure:
    """Training loss against step, one colour per variant and one line per run (seed).

    ``curves`` maps a variant's name to its runs, each a sequence of the training loss at
    every step (e.g. ``History.loss``), finite. The y axis is linear (losses in nats per
    character). Raises ``ValueError`` naming the variant that cannot be drawn.
    """
    runs = _runs_of(curves, "curves")
    fig = Figure(figsize=(7.2, 3.8))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.9 if title else 0.96)
    for i, (variant, losses) in enumerate(runs.items()):
        for j, loss in enumerate(losses):
            ax.plot(np.arange(1, len(loss) + 1), loss, color=f"C{i % 10}", alpha=0.85,
                    linewidth=1.3, label=variant if j == 0 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def target_comparison_figure(new_text: Mapping[str, Sequence[float]],
                             old_text: Mapping[str, Sequence[float]], *,
                             base: tuple[float, float],
                             titles: tuple[str, str] = ("new text", "original text")) -> Figure:
    """Held-out losses after fine-tuning, side by side: the new text (left), the old (right).

    ``new_text`` and ``old_text`` map each variant (same names, same order) to its runs'
    held-out losses (one per seed, finite); each run is a dot, at the variant's position.
    ``base`` ``(new, old)``: the base model's losses, drawn as dashed lines (or, when one
    lies far from the dots, written as a note, so that the dots keep a readable scale).
    Lower is better on the left; on the right, higher means more forgotten. Raises
    ``ValueError`` if the two mappings name different variants.
    """
    new, old = _losses_of(new_text, "new_text"), _losses_of(old_text, "old_text")
    if list(new) != list(old):
        raise ValueError(f"new_text and old_text must name the same variants in the same "
                         f"order, got {list(new)} and {list(old)}")
    if len(base) != 2 or not all(np.isfinite(float(b)) for b in base):
        raise ValueError(f"base must be two finite losses (new, old), got {base!r}")
    fig = Figure(figsize=(8.4, 3.6))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.88, wspace=0.3)
    for ax, table, level, title in zip(axes, (new, old), base, titles, strict=True):
        for i, values in enumerate(table.values()):
            ax.plot(np.full(len(values), i), values, "o", color=f"C{i % 10}", markersize=7,
                    alpha=0.8)
        _base_level(ax, table, float(level))
        ax.set_xticks(range(len(table)), list(table))
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("held-out loss (nats per character)")
        ax.grid(alpha=0.3, axis="y")
    return fig


def _base_level(ax: object, table: dict[str, np.ndarray], level: float) -> None:
    """Draw the base model's loss as a dashed line, or, when it lies far outside the dots
    (more than twice their spread away), name it in a note so the dots keep their scale."""
    values = np.concatenate(list(table.values()))
    low, high = float(values.min()), float(values.max())
    spread = max(high - low, 0.1)
    if low - 2 * spread <= level <= high + 2 * spread:
        ax.axhline(level, color="gray", linestyle="--", label="base model")
        ax.legend(fontsize=8)
        return
    ax.set_ylim(low - 0.3 * spread, high + 0.3 * spread)
    where = "above" if level > high else "below"
    ax.text(0.98, 0.97 if level > high else 0.03, f"base model: {level:.2f} ({where} the chart)",
            transform=ax.transAxes, ha="right", va="top" if level > high else "bottom",
            fontsize=8, color="gray")


def _sweep_points(points: object) -> dict[str, dict[float, np.ndarray]]:
    """``{variant: {lr: array (seeds, 2)}}`` from the mapping, checked (finite, lr > 0)."""
    if not isinstance(points, Mapping) or not points:
        raise ValueError("points must map at least one variant name to {lr: [(new, old), ...]}")
    table: dict[str, dict[float, np.ndarray]] = {}
    for variant, by_lr in points.items():
        if not isinstance(by_lr, Mapping) or not by_lr:
            raise ValueError(f"points[{variant!r}] must map learning rates to runs")
        table[str(variant)] = {}
        for lr, runs in by_lr.items():
            if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
                raise ValueError(f"points[{variant!r}] has learning rate {lr!r}; must be > 0")
            pairs = as_array(runs, f"points[{variant!r}][{lr!r}]", ndim=2)
            if pairs.shape[1] != 2 or len(pairs) == 0:
                raise ValueError(f"points[{variant!r}][{lr!r}] must be runs of (new, old) "
                                 f"losses, shape (seeds, 2), got {pairs.shape}")
            table[str(variant)][float(lr)] = pairs
    return table


def learning_forgetting_figure(points: Mapping[str, Mapping[float, Sequence[Sequence[float]]]],
                               *, chosen: Mapping[str, float] | None = None,
                               labels: tuple[str, str] = ("new text", "original text")
                               ) -> Figure:
    """Learning against forgetting over a learning-rate grid, one curve per variant.

    ``points``: ``{variant: {lr: [(new, old) for each seed]}}``, held-out losses on the new
    text (x) and on the original text (y), finite. Each run is a small dot; each variant's
    mean over the seeds at each rate is a larger dot, joined in order of the rate, with the
    lowest and highest rate written beside their dots;
    ``chosen`` (``{variant: lr}``, optional) rings the rate each variant was run at. Lower
    left is better on both: a point below and to the left of another learned more and
    forgot less. ``labels``: the two texts, for the axes. Raises ``ValueError`` for
    malformed points or a chosen rate that is not in the grid.
    """
    table = _sweep_points(points)
    chosen = dict(chosen or {})
    for variant, lr in chosen.items():
        if variant not in table or float(lr) not in table[variant]:
            raise ValueError(f"chosen[{variant!r}] = {lr!r} is not a rate of points[{variant!r}]")
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.95)
    for i, (variant, by_lr) in enumerate(table.items()):
        colour = f"C{i % 10}"
        rates = sorted(by_lr)
        means = np.array([by_lr[lr].mean(axis=0) for lr in rates])
        runs = np.concatenate([by_lr[lr] for lr in rates])
        ax.plot(runs[:, 0], runs[:, 1], ".", color=colour, alpha=0.4, markersize=5)
        ax.plot(means[:, 0], means[:, 1], "o-", color=colour, markersize=5, linewidth=1.2,
                label=variant)
        for end in (0, -1):                                # the grid's ends, labelled
            ax.annotate(f"{rates[end]:g}", means[end], textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=colour)
        if variant in chosen:
            x, y = by_lr[float(chosen[variant])].mean(axis=0)
            ax.plot([x], [y], "o", markersize=13, markerfacecolor="none", color=colour)
    ax.set_xlabel(f"held-out loss on {labels[0]} (nats per character)")
    ax.set_ylabel(f"held-out loss on {labels[1]} (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig
