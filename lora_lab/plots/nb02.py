"""Figures for notebook 02 (ΔW = B·A by hand)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._validate import as_array

__all__ = [
    "loss_curves_figure",
    "singular_values_figure",
]

_NB02_MARKERS = ("o", "x", "+", "s", "^", "v", "D")


def _nb02_curve(values: Sequence[float], name: str, logy: bool) -> np.ndarray:
    """``values`` as a finite 1-D array; positive too when it goes on a log axis."""
    y = as_array(values, f"curve {name!r}", ndim=1)  # numbers, 1-D, non-empty, finite
    if logy and np.any(y <= 0):
        raise ValueError(f"curve {name!r} has values <= 0, which a log axis cannot show; "
                         "pass logy=False")
    return y


def loss_curves_figure(panels: Mapping[str, Mapping[str, Sequence[float]]], *,
                       floors: Mapping[str, tuple[float, str]] | None = None,
                       logy: bool = True, sharey: bool = True, xlabel: str = "step",
                       ylabel: str = "MSE loss", suptitle: str | None = None) -> Figure:
    """Loss curves side by side: one panel per ``panels`` entry ``title -> {label: losses}``.

    Each curve is a 1-D sequence (one loss per step, plotted against its index).
    ``floors`` maps a panel title to ``(value, label)`` for a dashed horizontal line,
    e.g. the lowest loss any rank-r update can reach. Panels share their y axis unless
    ``sharey=False`` (for panels whose losses live on very different scales); then
    every panel gets its own y label, since its scale is its own.
    Raises ``TypeError``/``ValueError`` naming what cannot be drawn.
    Why: training runs are compared by their curves; a shared (log) axis keeps the
    comparison honest.
    """
    floors = _nb02_check_panels(panels, floors)
    width, height = 4.6 * len(panels), 3.4 + (0.3 if suptitle else 0.0)
    fig = Figure(figsize=(width, height))
    # fixed margins in inches: constrained layout would triple the drawing time
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - (0.7 if suptitle else 0.35) / height,
                        wspace=0.08 if sharey else 0.3)   # room for each panel's own labels
    axes = fig.subplots(1, len(panels), sharey=sharey, squeeze=False)[0]
    for i, (ax, (title, curves)) in enumerate(zip(axes, panels.items(), strict=True)):
        _nb02_draw_panel(ax, title, curves, floors.get(title), logy)
        ax.set_xlabel(xlabel)
        if i == 0 or not sharey:
            ax.set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _nb02_check_panels(panels: Mapping[str, Mapping[str, Sequence[float]]],
                       floors: Mapping[str, tuple[float, str]] | None
                       ) -> dict[str, tuple[float, str]]:
    """Check the arguments of :func:`loss_curves_figure`; return ``floors`` as a dict."""
    if not isinstance(panels, Mapping) or not all(isinstance(c, Mapping)
                                                     for c in panels.values()):
        raise TypeError("panels must map each panel title to a dict {label: losses}")
    if not panels:
        raise ValueError("panels must hold at least one panel")
    floors = dict(floors or {})
    unknown = set(floors) - set(panels)
    if unknown:
        raise ValueError(f"floors names panels that do not exist: {sorted(unknown)}")
    return floors


def _nb02_draw_panel(ax: Axes, title: str, curves: Mapping[str, Sequence[float]],
                     floor: tuple[float, str] | None, logy: bool) -> None:
    """One panel of :func:`loss_curves_figure`: its curves, its floor line, title and legend."""
    if not curves:
        raise ValueError(f"panel {title!r} has no curves")
    for label, values in curves.items():
        y = _nb02_curve(values, label, logy)
        ax.plot(np.arange(y.size), y, label=label, linewidth=1.6)
    if floor is not None:
        value, label = floor
        if logy and value <= 0:
            raise ValueError(f"floor of panel {title!r} must be > 0 on a log axis")
        ax.axhline(value, color="black", linestyle="--", linewidth=1.0, label=label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if logy:
        ax.set_yscale("log")


def singular_values_figure(spectra: Mapping[str, Sequence[float]], *,
                           title: str = "singular values",
                           ylabel: str = "singular value") -> Figure:
    """Singular values of several matrices on one axis: ``label -> values`` (largest first).

    Value ``i`` is drawn at position ``i + 1`` with its own marker, so matching
    spectra sit on top of each other. Why: "did the update learn the right
    directions, with the right strengths?" is read off this plot.
    """
    if not isinstance(spectra, Mapping):
        raise TypeError("spectra must map each label to its singular values")
    if not spectra:
        raise ValueError("spectra must hold at least one entry")
    fig = Figure(figsize=(5.0, 3.4))
    fig.subplots_adjust(left=0.8 / 5.0, right=1 - 0.15 / 5.0, bottom=0.55 / 3.4,
                        top=1 - 0.35 / 3.4)
    ax = fig.subplots()
    longest = 0
    for i, (label, values) in enumerate(spectra.items()):
        s = _nb02_curve(values, label, logy=False)
        longest = max(longest, s.size)
        ax.plot(np.arange(1, s.size + 1), s, linestyle="none", markersize=8, label=label,
                marker=_NB02_MARKERS[i % len(_NB02_MARKERS)], markerfacecolor="none")
    ax.set_xticks(np.arange(1, longest + 1))
    ax.set_xlabel("index i")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig
