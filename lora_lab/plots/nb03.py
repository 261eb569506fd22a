"""Figures for notebook 03 (a LoRA layer in PyTorch)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

__all__ = [
    "scaling_sweep_figure",
]

_NB03_MARKERS = ("o", "s", "^", "D", "v", "x", "+")


def _nb03_sweep(curve: Mapping[float, float], name: str) -> tuple[np.ndarray, np.ndarray]:
    """``{lr: value}`` as two sorted arrays; both must be finite and > 0 (log-log axes)."""
    if not isinstance(curve, Mapping) or not curve:
        raise ValueError(f"curve {name!r} must be a non-empty dict {{learning rate: value}}")
    try:
        lrs = np.array([float(lr) for lr in curve], dtype=float)
        values = np.array([float(v) for v in curve.values()], dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"curve {name!r} must map numbers to numbers") from None
    if not (np.all(np.isfinite(lrs)) and np.all(lrs > 0)):
        raise ValueError(f"curve {name!r}: learning rates must be finite and > 0")
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"curve {name!r}: values must be finite and > 0 on a log axis")
    order = np.argsort(lrs)
    return lrs[order], values[order]


def _nb03_sparse_label(value: float, _position: object = None) -> str:
    """``"0.05"``-style label for log-axis ticks whose leading digit is 1, 2, 3 or 5, else ``""``.

    Why: plain numbers read faster than 10^x, and labelling every minor tick crowds the axis.
    """
    if not np.isfinite(value) or value <= 0:
        return ""
    mantissa = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:g}" if mantissa in (1.0, 2.0, 3.0, 5.0) else ""


def scaling_sweep_figure(panels: Mapping[str, Mapping[str, Mapping[float, float]]], *,
                    ylabel: str = "loss", xlabel: str = "learning rate",
                    suptitle: str | None = None) -> Figure:
    """Learning-rate sweeps side by side: one panel per ``panels`` entry
    ``title -> {curve label -> {learning rate: value}}``, lower is better.

    Both axes are logarithmic, with plain tick labels (a tick at every learning rate swept),
    and the panels share their y axis. Each curve's
    lowest value (its best learning rate) is drawn as a filled marker, the
    other points as open ones. Raises ``TypeError`` for a ``panels`` that is
    not a nested mapping of numbers, ``ValueError`` for an empty panel or a
    value that a log axis cannot show (<= 0, NaN, inf). Why: "which learning
    rate is best at each rank, under each scaling?" is read off this plot.
    """
    if not isinstance(panels, Mapping) or not all(isinstance(c, Mapping)
                                                     for c in panels.values()):
        raise TypeError("panels must map each panel title to a dict {label: {lr: value}}")
    if not panels:
        raise ValueError("panels must hold at least one panel")
    width, height = 4.6 * len(panels), 3.4 + (0.3 if suptitle else 0.0)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - (0.7 if suptitle else 0.35) / height, wspace=0.08)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax, (title, curves) in zip(axes, panels.items(), strict=True):
        if not curves:
            raise ValueError(f"panel {title!r} has no curves")
        swept: set[float] = set()
        for i, (label, curve) in enumerate(curves.items()):
            lrs, values = _nb03_sweep(curve, label)
            swept.update(lrs.tolist())
            marker = _NB03_MARKERS[i % len(_NB03_MARKERS)]
            (line,) = ax.plot(lrs, values, marker=marker, markerfacecolor="none", label=label,
                              linewidth=1.4)
            best = int(np.argmin(values))
            ax.plot([lrs[best]], [values[best]], marker=marker, linestyle="none",
                    color=line.get_color(), markersize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted(swept)))   # a tick at every swept rate
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(FuncFormatter(_nb03_sparse_label))
        ax.yaxis.set_minor_formatter(FuncFormatter(_nb03_sparse_label))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(suptitle)
    return fig
