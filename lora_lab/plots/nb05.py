"""Figures for notebook 05 (what LoRA learns: the LoRA paper's §7 at toy scale).

The spectrum of an update against reference matrices (:func:`update_spectrum_figure`), the
accuracy of an update cut down to rank k (:func:`truncated_update_figure`), and the subspace
similarity heat maps with their random baseline (:func:`subspace_similarity_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .._validate import as_array, as_matrix, check_int, check_real
from ..lowrank import energy_curve
from ..update_analysis import energy_rank, random_similarity_grid

__all__ = [
    "subspace_similarity_figure",
    "truncated_update_figure",
    "update_spectrum_figure",
]


RATIO_SPAN = 10.0
"""The bottom row's colours span chance / 10 to 10 x chance; beyond, they saturate."""


def _nb05_fraction(value: float, name: str) -> float:
    value = check_real(value, name)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be an accuracy in [0, 1], got {value}")
    return value


def update_spectrum_figure(spectra: Mapping[str, np.ndarray], *, shown: int = 64,
                           fractions: Sequence[float] = (0.5, 0.9, 0.99),
                           mark: float = 0.9) -> Figure:
    """Singular values (left) and energy curves (right) of several matrices, e.g. ΔW, W, random.

    ``spectra`` maps a label to singular values (p,), largest first. Left: the first
    ``shown`` of each, divided by its largest (log scale). Right: the energy kept by the top k,
    ``E(k) = (s_1² + ... + s_k²) / sum(s²)``, over every k (log x axis), with a dashed line at
    each of ``fractions`` and, on each curve, a dot at the smallest k that keeps ``mark``
    (:func:`lora_lab.update_analysis.energy_rank`). Why: "how many directions does the update
    use?" is the k at which its curve crosses the line, compared with the references'.
    """
    if not isinstance(spectra, Mapping) or not spectra:
        raise ValueError("spectra must map at least one label to singular values")
    shown = check_int(shown, "shown", minimum=1)
    mark = check_real(mark, "mark")
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    ax_s, ax_e = fig.subplots(1, 2)
    for index, (label, values) in enumerate(spectra.items()):
        s = as_array(values, f"spectra[{label!r}]", ndim=1)
        energy = energy_curve(s)                        # checks: non-negative, largest first
        k = energy_rank(s, mark)                        # checks: 0 < mark < 1, s not zero
        head = s[:shown] / s[0]
        (line,) = ax_s.plot(np.arange(1, head.size + 1), head, label=label)
        ax_e.plot(np.arange(1, s.size + 1), energy, color=line.get_color(), label=label)
        ax_e.plot([k], [energy[k - 1]], "o", color=line.get_color())
        ax_e.annotate(f"k = {k}", (k, energy[k - 1]), textcoords="offset points",
                      xytext=(5, -12 - 10 * index), fontsize=8, color=line.get_color())
    for q in fractions:
        ax_e.axhline(check_real(q, "fractions"), color="grey", linestyle="--", linewidth=0.8)
        ax_e.text(0.01, q, f"{q:.0%}", transform=ax_e.get_yaxis_transform(), fontsize=7,
                  color="grey", va="bottom")
    ax_s.set_yscale("log")
    ax_s.set_title(f"the {shown} largest singular values, divided by the largest", fontsize=10)
    ax_s.set_xlabel(r"index $i$ ($\sigma_1$ is the largest)")
    ax_s.set_ylabel(r"$\sigma_i / \sigma_1$ (log scale)")
    ax_e.set_title(f"energy kept by the top k (dots: {mark:.0%})", fontsize=10)
    ax_e.set_xscale("log")
    ax_e.xaxis.set_major_formatter("{x:g}")
    ax_e.set_xlabel("k (log scale)")
    ax_e.set_ylabel("energy kept E(k)")
    ax_e.set_ylim(0, 1.03)
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3)
    ax_e.legend(fontsize="small", loc="lower right")
    return fig


def truncated_update_figure(ranks: Sequence[int], accuracy: Sequence[float], *,
                            references: Mapping[str, float] | None = None,
                            trained: Mapping[int, float] | None = None) -> Figure:
    """Test accuracy of a model whose update is cut down to rank k, against k.

    ``ranks`` (n,): increasing ints >= 1; ``accuracy`` (n,): fractions in [0, 1], one per
    rank; ``references`` maps a label (e.g. ``"full fine-tuning"``, ``"frozen"``) to an
    accuracy drawn as a dashed horizontal line; ``trained`` maps a rank r (int >= 1) to the
    accuracy of LoRA *trained* at that rank, drawn as separate markers (the paper's Table 6
    trains at each rank rather than cutting a full update down). The x axis is logarithmic
    (base 2) with a tick at every rank, the y axis in percent. Why: "which rank is enough?"
    is where the curve meets the untruncated update's line, and training at a rank is a
    different answer from cutting down to it.
    """
    k = np.array([check_int(r, "ranks", minimum=1) for r in ranks])
    acc = as_array(accuracy, "accuracy", ndim=1)
    if k.size == 0 or k.size != acc.size:
        raise ValueError(f"ranks and accuracy must have the same length >= 1, got {k.size} "
                         f"and {acc.size}")
    if np.any(np.diff(k) <= 0):
        raise ValueError(f"ranks must increase, got {k.tolist()}")
    for value in acc:
        _nb05_fraction(float(value), "accuracy")
    fig = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(k, 100 * acc, "o-", label="update truncated to rank k")
    if trained is not None and not isinstance(trained, Mapping):
        raise TypeError(f"trained must map a rank to an accuracy, got {type(trained).__name__}")
    if trained:
        r_trained = [check_int(r, "trained (rank)", minimum=1) for r in trained]
        values = [_nb05_fraction(v, f"trained[{r}]") for r, v in trained.items()]
        ax.plot(r_trained, [100 * v for v in values], "s", color="C3", markersize=7,
                label="LoRA trained at rank r")
    styles = iter(["--", ":", "-."] * 4)
    for label, value in (references or {}).items():
        ax.axhline(100 * _nb05_fraction(value, f"references[{label!r}]"), color="grey",
                   linestyle=next(styles), label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(k)
    ax.xaxis.set_major_formatter("{x:g}")
    ax.set_xlabel("rank k of the update (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title("the update cut down to its best rank-k approximation", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


def _nb05_grids(grids: Mapping[str, np.ndarray], d: int) -> dict[str, np.ndarray]:
    """``grids`` checked: non-empty, each a (r1, r2) array of phi values in [0, 1], r1, r2 <= d."""
    if not isinstance(grids, Mapping) or not grids:
        raise ValueError("grids must map at least one title to a similarity grid")
    checked = {}
    for title, grid in grids.items():
        g = as_matrix(grid, f"grids[{title!r}]")
        if np.any(g < 0) or np.any(g > 1):
            raise ValueError(f"grids[{title!r}] must hold similarities in [0, 1]")
        if max(g.shape) > d:
            raise ValueError(f"grids[{title!r}] has shape {g.shape}, more directions than "
                             f"d = {d} dimensions")
        checked[str(title)] = g
    return checked


def _nb05_heatmap(ax: Axes, values: np.ndarray, **style: object) -> object:
    """``values`` (r1, r2) as a heat map whose cell (i, j) is centred on the integers i, j."""
    r1, r2 = values.shape
    return ax.imshow(values, aspect="auto", interpolation="nearest",
                     extent=(0.5, r2 + 0.5, r1 + 0.5, 0.5), **style)


def _nb05_chance_lines(ax: Axes, chance: np.ndarray) -> None:
    """Dashed iso-lines of the random baseline, labelled with their level."""
    levels = [v for v in (0.01, 0.05, 0.1, 0.25, 0.5) if chance.min() < v < chance.max()]
    if not levels or min(chance.shape) < 2:
        return
    r1, r2 = chance.shape
    lines = ax.contour(np.arange(1, r2 + 1), np.arange(1, r1 + 1), chance, levels=levels,
                       colors="white", linestyles="--", linewidths=0.8)
    ax.clabel(lines, fmt=lambda v: f"chance {v:g}", fontsize=7)


def subspace_similarity_figure(grids: Mapping[str, np.ndarray], d: int) -> Figure:
    """Heat maps of phi(i, j) (top row) and of phi divided by its random baseline (bottom row).

    ``grids`` maps a panel title to a (r1, r2) grid of similarities in [0, 1], as
    :func:`lora_lab.update_analysis.similarity_grid` returns (row i: the first factor's top-i
    directions, column j: the second's top-j); ``d`` is the dimension they live in. Every
    panel carries the random baseline ``max(i, j) / d``
    (:func:`lora_lab.update_analysis.random_similarity_grid`): as dashed iso-lines on the
    top row, and as the divisor of the bottom row, whose colour scale is logarithmic and
    white at 1 (chance), red above it, blue below, saturated beyond a factor
    :data:`RATIO_SPAN` either way. Why: a similarity of 0.25 is a strong
    signal between two single directions and pure chance between two 64-dimensional
    subspaces of R^256; only the ratio tells which.
    """
    d = check_int(d, "d", minimum=1)
    checked = _nb05_grids(grids, d)
    fig = Figure(figsize=(4.0 * len(checked) + 1.2, 6.2), layout="constrained")
    axes = fig.subplots(2, len(checked), squeeze=False)
    ratio_norm = LogNorm(vmin=1 / RATIO_SPAN, vmax=RATIO_SPAN)
    for (top, bottom), (title, grid) in zip(axes.T, checked.items(), strict=True):
        chance = random_similarity_grid(*grid.shape, d)
        phi_image = _nb05_heatmap(top, grid, cmap="viridis", vmin=0.0, vmax=1.0)
        _nb05_chance_lines(top, chance)
        top.set_title(title, fontsize=10)
        ratio = np.maximum(grid, 1e-12) / chance
        ratio_image = _nb05_heatmap(bottom, ratio, cmap="RdBu_r", norm=ratio_norm)
        bottom.set_title(f"φ ÷ chance, chance = max(i, j)/{d}", fontsize=9)
        for ax in (top, bottom):
            ax.set_xlabel("j (top-j directions of the second)")
            ax.set_ylabel("i (top-i of the first)")
    fig.colorbar(phi_image, ax=list(axes[0]), label="φ(i, j)", shrink=0.9)
    fig.colorbar(ratio_image, ax=list(axes[1]), label="φ ÷ chance (1 = chance)", shrink=0.9,
                 extend="both")
    return fig
