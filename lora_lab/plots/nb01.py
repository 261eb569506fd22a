"""Figures for notebook 01 (rank and the SVD), and the LoRA layer diagram of notebook 00.

Axis conventions: a singular value's position in the sorted list is its *index*
``i`` (counted from 1, as in sigma_1 >= sigma_2 >= ...); the *rank* ``k`` of an
approximation is how many of them it keeps. Every axis carries a label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Polygon

from .._validate import as_array, as_matrix, check_int
from ..lowrank import break_even_rank, energy_curve, storage_cost

__all__ = [
    "eckart_young_figure",
    "lora_layer_figure",
    "outer_products_figure",
    "reconstructions_figure",
    "spectrum_figure",
    "storage_figure",
]


def _nb01_ranks(ranks: Sequence[int], name: str, maximum: int) -> list[int]:
    """``ranks`` as a non-empty list of ints in [1, maximum]."""
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a sequence of ints, got {type(ranks).__name__}")
    if len(ranks) == 0:
        raise ValueError(f"{name} must hold at least one rank")
    return [check_int(k, name, minimum=1, maximum=maximum) for k in ranks]


def outer_products_figure(terms: Sequence[np.ndarray], *,
                          titles: Sequence[str] | None = None) -> Figure:
    """Heat maps of matrices and their sum: ``terms[0] + terms[1] + ... = total``.

    ``terms`` holds matrices of one shape (m, n), e.g. rank-1 outer products
    ``np.outer(u, v)``; ``titles`` labels them (default "piece 1", ...). All
    panels share one colour scale (red positive, blue negative), shown by the
    colour bar on the right.
    Why: seeing a matrix assembled from striped rank-1 pieces makes
    "a matrix is a sum of rank-1 pieces" concrete.
    """
    if isinstance(terms, np.ndarray) or not isinstance(terms, Sequence) or not terms:
        raise TypeError("terms must be a non-empty list of matrices")
    mats = [as_matrix(t, f"terms[{i}]") for i, t in enumerate(terms)]
    if any(t.shape != mats[0].shape for t in mats):
        raise ValueError(f"terms must share one shape, got {[t.shape for t in mats]}")
    titles = [f"piece {i + 1}" for i in range(len(mats))] if titles is None else list(titles)
    if len(titles) != len(mats):
        raise ValueError(f"titles must have one entry per term ({len(mats)}), got {len(titles)}")
    total = np.sum(mats, axis=0)
    panels = [*mats, total]
    limit = max(float(np.max(np.abs(p))) for p in panels) or 1.0
    fig = Figure(figsize=(2.1 * len(panels), 2.4), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for i, (ax, mat) in enumerate(zip(axes, panels, strict=True)):
        image = ax.imshow(mat, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("sum" if i == len(mats) else titles[i], fontsize=10)
        if i > 0:
            sign = "=" if i == len(mats) else "+"
            ax.text(-0.12, 0.5, sign, transform=ax.transAxes, fontsize=18,
                    ha="center", va="center")
    fig.colorbar(image, ax=list(axes), shrink=0.85, label="entry value")
    return fig


def reconstructions_figure(image: np.ndarray, ranks: Sequence[int]) -> Figure:
    """The (m, n) ``image`` next to its best rank-k approximation for each k in ``ranks``.

    Each panel's title gives k and the relative error ``||M - M_k||_F / ||M||_F``.
    The SVD is computed once. Why: the eye judges a compression faster than a number.
    """
    M = as_matrix(image, "image")
    ranks = _nb01_ranks(ranks, "ranks", min(M.shape))
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    norm = float(np.linalg.norm(M)) or 1.0
    low, high = float(M.min()), float(M.max())
    fig = Figure(figsize=(2.3 * (len(ranks) + 1), 3.0), dpi=80, layout="constrained")
    axes = fig.subplots(1, len(ranks) + 1)
    axes[0].imshow(M, cmap="gray", vmin=low, vmax=high)
    axes[0].set_title(f"original\n{M.shape[0]} x {M.shape[1]}", fontsize=10)
    for ax, k in zip(axes[1:], ranks, strict=True):
        approx = (U[:, :k] * S[:k]) @ Vt[:k]
        error = float(np.linalg.norm(M - approx)) / norm
        ax.imshow(approx, cmap="gray", vmin=low, vmax=high)
        ax.set_title(f"rank {k}\nrel. error {error:.1%}", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    return fig


def spectrum_figure(spectra: np.ndarray | Mapping[str, np.ndarray], *,
                    mark_ranks: Sequence[int] = (), normalize: bool = False) -> Figure:
    """Singular values against their index (left, log scale), energy kept against rank (right).

    ``spectra`` is one array of singular values (p,), largest first, or a mapping
    ``label -> values`` to compare several matrices. ``normalize=True`` divides
    each spectrum by its largest value, so matrices of different scale compare.
    ``mark_ranks`` puts a dot on each energy curve at those ranks. The left
    panel's x axis is the index i of sigma_i (1 = largest); the right panel's is
    the rank k of an approximation, whose energy E(k) sums the first k squares.
    Why: how fast the spectrum decays decides how small a rank can be.
    """
    named = {"singular values": spectra} if not isinstance(spectra, Mapping) else spectra
    if not named:
        raise ValueError("spectra must hold at least one spectrum")
    fig = Figure(figsize=(9.0, 3.3), layout="constrained")
    ax_s, ax_e = fig.subplots(1, 2)
    for label, values in named.items():
        s = as_array(values, f"spectra[{label!r}]", ndim=1)
        energy = energy_curve(s)  # also checks: non-negative, largest first
        ranks = np.arange(1, s.size + 1)  # also the indices i = 1 .. p of sigma_i
        shown = s / s[0] if normalize and s[0] > 0 else s
        ax_s.plot(ranks, np.maximum(shown, np.finfo(float).tiny), label=label)
        (line,) = ax_e.plot(ranks, energy, label=label)
        marks = _nb01_ranks(mark_ranks, "mark_ranks", s.size) if len(mark_ranks) else []
        for k in marks:
            ax_e.plot([k], [energy[k - 1]], "o", color=line.get_color())
            # below the dot, unless that would run into the x axis
            offset = (6, -12) if energy[k - 1] > 0.15 else (6, 6)
            ax_e.annotate(f"k={k}: {energy[k - 1]:.1%}", (k, energy[k - 1]),
                          textcoords="offset points", xytext=offset, fontsize=8)
    ax_s.set_yscale("log")
    ax_s.set_title("singular values" + (", divided by the largest" if normalize else ""))
    ax_s.set_xlabel(r"index $i$ ($\sigma_1$ is the largest)")
    ax_s.set_ylabel((r"$\sigma_i / \sigma_1$" if normalize else r"$\sigma_i$") + " (log scale)")
    ax_e.set_title("energy kept by the best rank-k approximation")
    ax_e.set_xscale("log")  # the interesting part is the first few ranks
    ax_e.xaxis.set_major_formatter("{x:g}")  # 1, 10, 100 rather than 10^0, 10^1, 10^2
    ax_e.set_xlabel("rank k (log scale)")
    ax_e.set_ylabel("energy kept E(k)")
    ax_e.set_ylim(0, 1.03)
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3)
    if len(named) > 1:
        ax_s.legend(fontsize="small", loc="best")
        ax_e.legend(fontsize="small", loc="lower right")
    return fig


def storage_figure(m: int, n: int, *, mark_ranks: Sequence[int] = ()) -> Figure:
    """Numbers stored by rank-k factors, ``k (m + n)``, against the ``m n`` of the full matrix.

    The lines cross at the break-even rank ``m n / (m + n)``: below it the
    factors are cheaper. ``mark_ranks`` adds dots labelled with their cost as a
    share of the full matrix ("k=20: 7% of m n"). Why: low rank only
    pays if it also saves memory; this shows where it stops paying.
    """
    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    p = min(m, n)
    ks = np.arange(1, p + 1)
    even = break_even_rank(m, n)
    fig = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(ks, ks * (m + n), label="factors: k (m + n)")
    ax.axhline(m * n, color="black", linestyle="--", label=f"full matrix: m n = {m * n:,}")
    ax.axvspan(0, even, color="tab:green", alpha=0.1,
               label=f"saves storage: k < {even:.1f}")
    ax.axvline(even, color="tab:green", linestyle=":")
    for k in _nb01_ranks(mark_ranks, "mark_ranks", p) if len(mark_ranks) else []:
        cost = storage_cost(m, n, k)
        ax.plot([k], [cost], "o", color="tab:blue")
        ax.annotate(f"k={k}: {cost / (m * n):.0%} of m n", (k, cost),
                    textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlim(0, p)
    ax.set_xlabel("rank k")
    ax.set_ylabel("numbers stored")
    ax.yaxis.set_major_formatter("{x:,.0f}")  # 300,000 rather than 300000
    ax.set_title(f"storing a {m} x {n} matrix")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return fig


def eckart_young_figure(ranks: Sequence[int], errors: Mapping[str, Sequence[float]], *,
                        ylabel: str = "relative error (Frobenius)") -> Figure:
    """Approximation error against rank, one curve per method in ``errors``.

    ``errors`` maps a method's name to one error per entry of ``ranks``. A curve
    named "truncated SVD" is drawn thick and black; when there is one, a second
    panel shows each other method's gap to it, ``error - SVD error``, on a log
    scale (gaps <= 0 are not drawn there). Why: Eckart-Young says the SVD curve
    lies below every other; the left panel lets you see it, and the right panel
    keeps a challenger that comes within a hair of the SVD from hiding behind it.
    """
    ks = np.asarray(ranks, dtype=float)
    if ks.ndim != 1 or ks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D sequence, got shape {ks.shape}")
    if not errors:
        raise ValueError("errors must hold at least one method")
    curves = {}
    for label, values in errors.items():
        y = as_array(values, f"errors[{label!r}]", ndim=1)
        if y.shape != ks.shape:
            raise ValueError(f"errors[{label!r}] must have one value per rank "
                             f"({ks.size}), got {y.size}")
        curves[label] = y
    svd = curves.get("truncated SVD")
    gap_panel = svd is not None and len(curves) > 1
    fig = Figure(figsize=(10.0 if gap_panel else 6.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2 if gap_panel else 1, squeeze=False)[0]
    ax = axes[0]
    others = [label for label in curves if label != "truncated SVD"]
    colours = {label: f"C{i % 10}" for i, label in enumerate(others)} | {"truncated SVD": "black"}
    for label, y in curves.items():
        is_svd = label == "truncated SVD"
        # The SVD curve goes underneath, so a challenger that ties with it stays visible.
        ax.plot(ks, y, "o-", label=label, markersize=4, color=colours[label],
                linewidth=3.0 if is_svd else 1.2, zorder=2 if is_svd else 3)
    ax.set_xlabel("rank k")
    ax.set_ylabel(ylabel)
    ax.set_title("error of each method")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if gap_panel:
        ax_gap = axes[1]
        for label in others:
            gap = curves[label] - svd
            ax_gap.plot(ks, np.where(gap > 0, gap, np.nan), "o-", label=label, markersize=4,
                        linewidth=1.2, color=colours[label])
        ax_gap.set_yscale("log")
        ax_gap.set_xlabel("rank k")
        ax_gap.set_ylabel("error minus SVD error (log scale)")
        ax_gap.set_title("how much worse than the truncated SVD")
        ax_gap.grid(alpha=0.3)
    return fig



FROZEN, TRAINED = "#d5dde8", "#f6c48f"  # colours of frozen and trained weights
#: Heights in the diagram stand for sizes: a vector or matrix side of length in, out or r.
IN_HEIGHT = OUT_HEIGHT = 1.5
R_HEIGHT = 0.5
_PAD = 0.04  # the rounded corners of a box stick out this far beyond its nominal size


def _box(ax, x: float, y: float, w: float, h: float, colour: str) -> FancyBboxPatch:
    """A box whose drawn outline (rounded corners included) is ``w`` wide and ``h`` high."""
    box = FancyBboxPatch((x - w / 2 + _PAD, y - h / 2 + _PAD), w - 2 * _PAD, h - 2 * _PAD,
                         boxstyle=f"round,pad={_PAD}", facecolor=colour, edgecolor="black",
                         linewidth=1.2)
    ax.add_patch(box)
    return box


def _trapezoid(ax, x0: float, x1: float, y: float, h0: float, h1: float) -> None:
    """A trained factor, drawn as a trapezoid from height ``h0`` (left) to ``h1`` (right)."""
    corners = [(x0, y - h0 / 2), (x1, y - h1 / 2), (x1, y + h1 / 2), (x0, y + h0 / 2)]
    ax.add_patch(Polygon(corners, closed=True, facecolor=TRAINED, edgecolor="black",
                         linewidth=1.2))


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str = "") -> None:
    ax.annotate("", end, start, arrowprops={"arrowstyle": "-|>", "color": "black",
                                            "linewidth": 1.2, "shrinkA": 0, "shrinkB": 0})
    if label:
        middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.22)
        ax.text(*middle, label, ha="center", va="bottom", fontsize=9, color="dimgray")


def lora_layer_figure() -> Figure:
    """Diagram of a LoRA layer: ``h = W0 x + (alpha / r) B A x``, with every shape labelled.

    Top path: the frozen pretrained weight W0 (out x in). Bottom path: A (r x in,
    random at the start) squeezes the input to r numbers, B (out x r, zero at the
    start) maps them back to out numbers, and the result is scaled by alpha / r.
    The two paths are added; the base layer's bias is left out (said in the
    figure). Frozen weights are grey-blue, trained ones orange. Heights stand for
    sizes: A and B are trapezoids whose heights show in -> r -> out, and W0 is as
    high as A's "in" side (here in = out). The "+" sits in a round marker.
    Why: the whole method fits in one picture, and the picture shows why it is
    cheap: only the two thin factors are trained.
    """
    fig = Figure(figsize=(9.0, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5.4)
    ax.set_axis_off()
    ax.set_title(r"a LoRA layer:  $h = W_0\,x + \dfrac{\alpha}{r}\,B\,A\,x$", fontsize=13)

    ax.text(0.45, 2.6, "x\n(length in)", ha="center", va="center", fontsize=11)
    ax.plot([1.05, 1.5, 1.5, 1.5], [2.6, 2.6, 4.0, 1.2], color="black", linewidth=1.2)
    # top path: the frozen pretrained weight
    _arrow(ax, (1.5, 4.0), (3.3, 4.0))
    _box(ax, 4.6, 4.0, 2.4, IN_HEIGHT, FROZEN)
    ax.text(4.6, 4.0, r"$W_0$   (out × in)" + "\npretrained, frozen\n(bias omitted)",
            ha="center", va="center", fontsize=10)
    _arrow(ax, (5.9, 4.0), (8.05, 2.85))
    # bottom path: the trained low-rank branch
    _arrow(ax, (1.5, 1.2), (2.5, 1.2))
    _trapezoid(ax, 2.5, 3.5, 1.2, IN_HEIGHT, R_HEIGHT)
    ax.text(3.0, 1.2, "A", ha="center", va="center", fontsize=13, weight="bold")
    ax.text(3.0, 0.2, "A  (r × in)\nstarts random", ha="center", va="center", fontsize=9)
    _arrow(ax, (3.5, 1.2), (4.5, 1.2), label="length r")
    _trapezoid(ax, 4.5, 5.5, 1.2, R_HEIGHT, OUT_HEIGHT)
    ax.text(5.0, 1.2, "B", ha="center", va="center", fontsize=13, weight="bold")
    ax.text(5.0, 0.2, "B  (out × r)\nstarts at zero", ha="center", va="center", fontsize=9)
    _arrow(ax, (5.5, 1.2), (6.25, 1.2))
    _box(ax, 6.75, 1.2, 0.9, 0.55, "white")
    ax.text(6.75, 1.2, "× α/r", ha="center", va="center", fontsize=11)
    _arrow(ax, (7.25, 1.2), (8.05, 2.35))
    # the sum and the output
    # a marker, not a Circle patch: a marker stays round although x and y units differ on screen
    ax.plot([8.3], [2.6], "o", markersize=38, markerfacecolor="white", markeredgecolor="black",
            markeredgewidth=1.2)
    ax.text(8.3, 2.6, "+", ha="center", va="center", fontsize=16)
    _arrow(ax, (8.6, 2.6), (9.1, 2.6))
    ax.text(9.55, 2.6, "h\n(length\nout)", ha="center", va="center", fontsize=11)
    ax.legend(handles=[Polygon([(0, 0)], facecolor=FROZEN, edgecolor="black", label="frozen"),
                       Polygon([(0, 0)], facecolor=TRAINED, edgecolor="black",
                               label="trained")],
              loc="upper right", fontsize=9, frameon=False)
    return fig
