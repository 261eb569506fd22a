"""Figure helpers for the notebooks.

Conventions: every function builds a ``matplotlib.figure.Figure`` directly (not
through ``pyplot``, so no global state leaks and nothing is shown twice) and
returns it; notebooks show it with ``display(fig)``. Nothing here calls
``plt.show``. Why: a figure returned is a figure a test can inspect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

# --------------------------------------------------------------------------- notebook 01
from ._validate import as_array, as_matrix, check_int
from .lowrank import break_even_rank, energy_curve, storage_cost


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
    panels share one colour scale (red positive, blue negative).
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
        ax.imshow(mat, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("sum" if i == len(mats) else titles[i], fontsize=10)
        if i > 0:
            sign = "=" if i == len(mats) else "+"
            ax.text(-0.12, 0.5, sign, transform=ax.transAxes, fontsize=18,
                    ha="center", va="center")
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
        ax.set_title(f"rank {k}\nerror {error:.1%}", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    return fig


def spectrum_figure(spectra: np.ndarray | Mapping[str, np.ndarray], *,
                    mark_ranks: Sequence[int] = (), normalize: bool = False) -> Figure:
    """Singular values (left, log scale) and cumulative energy (right) against rank.

    ``spectra`` is one array of singular values (p,), largest first, or a mapping
    ``label -> values`` to compare several matrices. ``normalize=True`` divides
    each spectrum by its largest value, so matrices of different scale compare.
    ``mark_ranks`` puts a dot on each energy curve at those ranks.
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
        ranks = np.arange(1, s.size + 1)
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
    ax_s.set_title("singular values" + (" / largest" if normalize else ""))
    ax_s.set_xlabel("rank k")
    ax_e.set_title("cumulative energy kept")
    ax_e.set_xscale("log")  # the interesting part is the first few ranks
    ax_e.set_xlabel("rank k (log scale)")
    ax_e.set_ylim(0, 1.03)
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3)
    if len(named) > 1:
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


# --------------------------------------------------------------------------- notebook 02

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
    ``sharey=False`` (for panels whose losses live on very different scales).
    Why: training runs are compared by their curves; a shared (log) axis keeps the
    comparison honest.
    """
    if not isinstance(panels, Mapping) or not all(isinstance(c, Mapping)
                                                     for c in panels.values()):
        raise TypeError("panels must map each panel title to a dict {label: losses}")
    if not panels:
        raise ValueError("panels must hold at least one panel")
    floors = dict(floors or {})
    unknown = set(floors) - set(panels)
    if unknown:
        raise ValueError(f"floors names panels that do not exist: {sorted(unknown)}")
    width, height = 4.6 * len(panels), 3.4 + (0.3 if suptitle else 0.0)
    fig = Figure(figsize=(width, height))
    # fixed margins in inches: constrained layout would triple the drawing time
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - (0.7 if suptitle else 0.35) / height,
                        wspace=0.08 if sharey else 0.25)   # room for each panel's tick labels
    axes = fig.subplots(1, len(panels), sharey=sharey, squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels.items(), strict=True):
        if not curves:
            raise ValueError(f"panel {title!r} has no curves")
        for label, values in curves.items():
            y = _nb02_curve(values, label, logy)
            ax.plot(np.arange(y.size), y, label=label, linewidth=1.6)
        if title in floors:
            value, label = floors[title]
            if logy and value <= 0:
                raise ValueError(f"floor of panel {title!r} must be > 0 on a log axis")
            ax.axhline(value, color="black", linestyle="--", linewidth=1.0, label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        if logy:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


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
