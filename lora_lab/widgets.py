"""Interactive explorers that run in Jupyter and are testable without a browser.

Each widget builds its matplotlib figure once, keeps references to the artists
that change, and on every slider move only updates those artists and re-renders
the same figure to PNG bytes shown in an ``ipywidgets.Image``. No ``interact``,
no ``Output`` widget, no ``ipympl``: pytest can drive a widget simply by setting
``slider.value`` and reading the numbers back.

Why: moving a slider and watching the picture sharpen teaches "rank" faster
than any formula -- and a widget whose logic is plain Python can be tested.
"""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import ipywidgets
import numpy as np
from matplotlib import cbook
from matplotlib import image as mpimg
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as PILImage

from ._validate import as_array, as_matrix, check_int
from .lowrank import (
    break_even_rank,
    energy_captured,
    energy_curve,
    storage_cost,
    truncation_error,
)

# ITU-R BT.601 luma weights: how bright red, green and blue look to the eye.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
SCREEN_PIXELS = 256  # the slider's picture shows about this many pixels along its short side


def load_sample_image(step: int = 1) -> np.ndarray:
    """Grace Hopper's portrait (bundled with matplotlib) as a grayscale matrix.

    Returns a float64 array of shape (ceil(600 / step), ceil(512 / step)) with
    values in [0, 1] (0 = black, 1 = white). ``step`` keeps every
    ``step``-th row and column, for quicker experiments. The file ships inside
    the installed matplotlib package, so nothing is downloaded.
    Why: a photograph is a matrix we can *see*, which makes rank visible.
    """
    step = check_int(step, "step", minimum=1, maximum=64)
    with cbook.get_sample_data("grace_hopper.jpg") as file:
        rgb = mpimg.imread(file, format="jpg")  # (600, 512, 3) uint8
    gray = (rgb[..., :3] @ LUMA_WEIGHTS) / 255.0
    return np.clip(gray[::step, ::step], 0.0, 1.0)


def block_mean_rows(X: np.ndarray, f: int) -> np.ndarray:
    """Average each group of ``f`` consecutive rows of ``X`` (r, c): shape (r // f, c).

    Leftover rows (when f does not divide r) are dropped. Why: averaging f x f
    blocks of pixels of ``U @ Vt`` equals multiplying block-averaged ``U`` and
    ``Vt``, so a picture can be shrunk by shrinking its factors.
    """
    X = as_matrix(X, "X")
    f = check_int(f, "f", minimum=1, maximum=X.shape[0])
    rows = X.shape[0] // f * f
    return X[:rows].reshape(rows // f, f, X.shape[1]).mean(axis=1)


class RankSlider:
    """Rank-k reconstruction of a matrix (an image), with rank on a slider.

    ``image`` is an (m, n) matrix; ``rank`` the starting rank, in [1, min(m, n)].
    The SVD is computed once here; each update only recombines its factors,
    ``(U[:, :k] * S[:k]) @ Vt[:k]``, and redraws the artists that change.

    Parts (all ipywidgets live in ``widget``, a VBox, in this order):
    ``slider`` (IntSlider), ``readout`` (HTML: rank, relative error, energy,
    compression), ``image`` (Image, PNG of ``figure``). ``figure`` is the
    matplotlib Figure, built once: the reconstruction (``image_artist``, titled
    with the rank shown) on the left, energy kept and relative error against
    rank (log axis) on the right, with a black line (``rank_line``) and dots at
    the current rank. Numbers of the current state: ``rank``,
    ``reconstruction`` (m, n), ``relative_error``, ``energy``, ``compression``.

    Speed: a screen shows the 600 x 512 photo at about half its size anyway, so
    the picture is recombined from factors averaged over ``f`` x ``f`` pixel
    blocks (see :func:`block_mean_rows`): exactly the block-averaged
    reconstruction, at a quarter of the cost. Averaging blocks is a matrix
    product: with P (m/f x m) averaging each group of f rows and Q (n x n/f)
    averaging each group of f columns, the screen picture of M_k is
    ``P M_k Q = (P U_k) S_k (Vt_k Q)``. So ``P U`` and ``Vt Q`` are computed once,
    and every slider move multiplies matrices a quarter the size.
    ``reconstruction`` itself is full size, computed when you ask for it.
    """

    def __init__(self, image: np.ndarray, rank: int = 20) -> None:
        self.matrix = as_matrix(image, "image")
        m, n = self.matrix.shape
        self.max_rank = min(m, n)
        rank = check_int(rank, "rank", minimum=1, maximum=self.max_rank)

        # The only expensive step, done once.
        self._U, self._S, self._Vt = np.linalg.svd(self.matrix, full_matrices=False)
        self._norm = float(np.linalg.norm(self.matrix))
        self._energy = energy_curve(self._S)
        f = max(1, self.max_rank // SCREEN_PIXELS)  # 2 for the photo
        self._U_screen = block_mean_rows(self._U, f)  # (m // f, p)
        self._Vt_screen = block_mean_rows(self._Vt.T, f).T  # (p, n // f)
        self._screen_matrix = block_mean_rows(block_mean_rows(self.matrix, f).T, f).T

        self.figure = self._build_figure()
        self._background = None
        self._renderer = None

        self.slider = ipywidgets.IntSlider(value=rank, min=1, max=self.max_rank, step=1,
                                           description="rank",
                                           layout=ipywidgets.Layout(width="600px"))
        self.readout = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png")
        self.widget = ipywidgets.VBox([self.slider, self.readout, self.image])
        self.slider.observe(lambda change: self._render(change["new"]), names="value")
        self._render(rank)

    @property
    def reconstruction(self) -> np.ndarray:
        """The best rank-``rank`` approximation at full size, shape (m, n)."""
        k = self.rank
        return (self._U[:, :k] * self._S[:k]) @ self._Vt[:k]

    @property
    def screen_image(self) -> np.ndarray:
        """What the picture shows: the reconstruction, block-averaged to screen size."""
        k = self.rank
        return (self._U_screen[:, :k] * self._S[:k]) @ self._Vt_screen[:k]

    def update(self, rank: int) -> None:
        """Show the rank-``rank`` reconstruction (same as moving the slider there)."""
        rank = check_int(rank, "rank", minimum=1, maximum=self.max_rank)
        if self.slider.value != rank:
            self.slider.value = rank  # the slider's observer calls _render
        else:
            self._render(rank)

    # ------------------------------------------------------------------ internals

    def _build_figure(self) -> Figure:
        """Lay out the figure and create every artist that will later change."""
        m, n = self.matrix.shape
        ranks = np.arange(1, self.max_rank + 1)
        errors = np.sqrt(np.clip(1.0 - self._energy, 0.0, None))  # Eckart-Young, relative

        fig = Figure(figsize=(7.6, 4.0), dpi=90)
        FigureCanvasAgg(fig)
        ax_img, ax_curve = fig.subplots(1, 2, gridspec_kw={
            "width_ratios": [1.0, 1.1], "left": 0.01, "right": 0.98,
            "bottom": 0.12, "top": 0.92, "wspace": 0.12})

        low, high = float(self.matrix.min()), float(self.matrix.max())
        self.image_artist = ax_img.imshow(self._screen_matrix, cmap="gray", vmin=low,
                                          vmax=high)
        ax_img.set_axis_off()
        # The title names the rank shown, so it changes with the slider (see _render). A
        # plain text at a fixed place, not ax.set_title: matplotlib moves titles around
        # when it lays out a draw, and a blitted artist must stay where it is.
        self.title_artist = ax_img.text(0.5, 1.02, "", transform=ax_img.transAxes,
                                        ha="center", va="bottom", fontsize=10)

        ax_curve.plot(ranks, self._energy, color="tab:blue", label="energy kept")
        ax_curve.plot(ranks, errors, color="tab:orange", label="relative error")
        ax_curve.axvline(break_even_rank(m, n), color="gray", linestyle=":",
                         label="storage break-even")
        ax_curve.set_xscale("log")
        ax_curve.set_xlim(1, self.max_rank)
        ax_curve.set_ylim(-0.02, 1.02)
        ax_curve.set_xlabel("rank k (log scale)")
        ax_curve.set_ylabel("energy kept / relative error")
        ax_curve.xaxis.set_major_formatter("{x:g}")  # 1, 10, 100 as in the other figures
        ax_curve.grid(alpha=0.3)
        self.rank_line = ax_curve.axvline(1, color="black", linewidth=1, label="current rank")
        (self.energy_dot,) = ax_curve.plot([1], [0], "o", color="tab:blue")
        (self.error_dot,) = ax_curve.plot([1], [0], "o", color="tab:orange")
        ax_curve.legend(loc="center right", fontsize=9)
        self._dynamic = [self.image_artist, self.title_artist, self.rank_line,
                         self.energy_dot, self.error_dot]
        return fig

    def _render(self, rank: int) -> None:
        """Recombine the SVD factors for ``rank`` and refresh artists, readout and PNG."""
        k = rank
        m, n = self.matrix.shape
        self.rank = k
        # Eckart-Young: the error is fixed by the singular values left out.
        self.relative_error = truncation_error(self._S, k) / self._norm if self._norm else 0.0
        self.energy = energy_captured(self._S, k)
        self.compression = m * n / storage_cost(m, n, k)

        self.image_artist.set_data(self.screen_image)
        self.title_artist.set_text(f"rank-{k} reconstruction ({m} x {n})")
        self.rank_line.set_xdata([k, k])
        self.energy_dot.set_data([k], [self.energy])
        self.error_dot.set_data([k], [self.relative_error])

        self.readout.value = (
            f"<b>rank {k}</b> of {self.max_rank} &nbsp;|&nbsp; "
            f"relative error <b>{self.relative_error:.3f}</b> &nbsp;|&nbsp; "
            f"energy kept <b>{self.energy:.2%}</b> &nbsp;|&nbsp; "
            f"compression <b>{self.compression:.2f}x</b> "
            f"({storage_cost(m, n, k):,} of {m * n:,} numbers stored)")
        self.image.value = self._png()

    def _png(self) -> bytes:
        """Render the figure to PNG bytes, redrawing only the changing artists.

        Why blit: a full redraw re-renders axes, ticks and labels that never
        change; restoring a saved background and drawing the five changing artists
        on top is several times faster, which keeps the slider smooth.
        """
        canvas = self.figure.canvas
        renderer = canvas.get_renderer()
        if renderer is not self._renderer:  # first call, or someone saved the figure
            for artist in self._dynamic:
                artist.set_visible(False)
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
            self._renderer = canvas.get_renderer()
            for artist in self._dynamic:
                artist.set_visible(True)
        canvas.restore_region(self._background)
        for artist in self._dynamic:
            self.figure.draw_artist(artist)
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        buffer = io.BytesIO()
        PILImage.fromarray(rgb).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


class RankExplorer:
    """LoRA adapters of several ranks on one task, with the rank on a slider (notebook 04).

    ``study`` holds what the adapters did, measured once beforehand (a
    :class:`lora_lab.digits_task.RankStudy`, NumPy only): for each rank, the test accuracy
    of every seed, the test accuracy of the largest-rank adapter with one layer's update cut
    down to that rank, the singular values of that layer's update ΔW, and the predictions
    on a few test images of the adapter shown (the first seed). ``rank`` is the starting
    rank, one of ``study.ranks`` (default: the middle one). Nothing is trained or evaluated
    when the slider moves: the widget only shows. The study's arrays are copied, so later
    changes to them do not reach the widget.

    Parts (ipywidgets in ``widget``, a VBox, in this order): ``slider`` (SelectionSlider
    over ``study.ranks``), ``readout`` (HTML), ``image`` (Image, PNG of ``figure``).
    ``figure`` is built once: accuracy against rank (log scale; the mean over seeds with a
    band from the worst to the best seed, the adapter shown, and the largest one cut down)
    with dots at the current rank; the spectrum of ΔW of the current adapter over that of
    the largest one; and the shown test images, each titled with the current adapter's
    reading (green right, red wrong). Numbers of the current state: ``rank``, ``accuracy``
    (the adapter shown), ``seed_accuracy`` (every seed), ``truncated_accuracy``,
    ``trainable``, ``spectrum``, ``predictions``, ``shown_right``.
    """

    def __init__(self, study: Any, rank: int | None = None) -> None:
        self.study = _check_study(study)
        ranks = [int(r) for r in self.study.ranks]
        rank = ranks[len(ranks) // 2] if rank is None else check_int(rank, "rank")
        if rank not in ranks:
            raise ValueError(f"rank must be one of the ranks studied {ranks}, got {rank}")
        self.figure = self._build_figure()
        self.slider = ipywidgets.SelectionSlider(options=ranks, value=rank, description="rank",
                                                 layout=ipywidgets.Layout(width="500px"))
        self.readout = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png")
        self.widget = ipywidgets.VBox([self.slider, self.readout, self.image])
        self.slider.observe(lambda change: self._render(change["new"]), names="value")
        self._render(rank)

    def update(self, rank: int) -> None:
        """Show the adapter of rank ``rank`` (same as moving the slider there)."""
        rank = check_int(rank, "rank")
        if rank not in self.slider.options:
            raise ValueError(f"rank must be one of the ranks studied {list(self.slider.options)}"
                             f", got {rank}")
        if self.slider.value != rank:
            self.slider.value = rank  # the slider's observer calls _render
        else:
            self._render(rank)

    # ------------------------------------------------------------------ internals

    def _build_figure(self) -> Figure:
        """Lay out the three panels and create every artist that later changes."""
        s = self.study
        n = len(s.labels)
        columns = -(-n // 2)
        fig = Figure(figsize=(10.5, 3.6), dpi=80)
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(2, 2 + columns, width_ratios=[3.2, 3.2] + [1.0] * columns,
                                left=0.06, right=0.99, bottom=0.15, top=0.8, wspace=0.45)
        ax_acc, ax_spec = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[:, 1])
        self._accuracy_panel(ax_acc)
        top = int(s.ranks[-1])
        index = np.arange(1, top + 1)
        ax_spec.plot(index, s.spectra[-1], "-", color="lightgray", linewidth=3,
                     label=f"r={top}")
        (self.spectrum_line,) = ax_spec.plot(index, s.spectra[-1], "o-", color="tab:green",
                                             markersize=3, label="this adapter")
        ax_spec.set_ylim(0, 1.08 * float(s.spectra.max(initial=0.0)) or 1.0)
        ax_spec.set_xlabel(f"singular value index (ΔW of layer {s.layer})")
        ax_spec.set_ylabel("singular value")
        ax_spec.legend(loc="upper right", fontsize=8)
        ax_spec.grid(alpha=0.3)

        self.digit_titles = []
        for i, (picture, label) in enumerate(zip(s.images, s.labels, strict=True)):
            ax = fig.add_subplot(grid[i // columns, 2 + i % columns])
            ax.imshow(picture, cmap="gray_r", vmin=0, vmax=float(s.images.max()) or 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"label {int(label)}", fontsize=8)
            self.digit_titles.append(ax.set_title("", fontsize=10, fontweight="bold"))
        self.title_artist = fig.text(0.5, 0.95, "", ha="center", va="top", fontsize=11)
        return fig

    def _accuracy_panel(self, ax: Any) -> None:
        """Accuracy against rank: every seed's spread, the adapter shown, the largest one cut."""
        s = self.study
        seeds = s.seed_accuracy.shape[1]
        top = int(s.ranks[-1])
        ax.fill_between(s.ranks, 100 * s.seed_accuracy.min(axis=1),
                        100 * s.seed_accuracy.max(axis=1), color="tab:blue", alpha=0.15)
        ax.plot(s.ranks, 100 * s.seed_accuracy.mean(axis=1), "-", color="tab:blue",
                label=f"trained at rank: mean, worst–best of {seeds} seed{'s' * (seeds > 1)}")
        ax.plot(s.ranks, 100 * s.accuracy, "o:", color="tab:blue", markersize=4,
                label="the adapter shown")
        ax.plot(s.ranks, 100 * s.truncated_accuracy, "s--", color="tab:orange",
                label=f"r={top}, layer {s.layer} cut to rank")
        ax.set_xscale("log", base=2)
        ax.set_xticks(s.ranks, [str(r) for r in s.ranks])
        ax.set_xlabel("rank r")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        self.rank_line = ax.axvline(s.ranks[0], color="black", linewidth=1)
        (self.accuracy_dot,) = ax.plot([], [], "o", color="tab:blue", markersize=10)
        (self.truncated_dot,) = ax.plot([], [], "s", color="tab:orange", markersize=10)
        ax.legend(loc="lower right", fontsize=7)

    def _render(self, rank: int) -> None:
        """Point every artist, the readout and the PNG at the adapter of rank ``rank``."""
        s = self.study
        i = [int(r) for r in s.ranks].index(int(rank))
        self.rank = int(rank)
        self.accuracy = float(s.accuracy[i])
        self.seed_accuracy = s.seed_accuracy[i]
        self.truncated_accuracy = float(s.truncated_accuracy[i])
        self.trainable = int(s.trainable[i])
        self.spectrum = s.spectra[i]
        self.predictions = s.predictions[i]
        right = self.predictions == s.labels
        self.shown_right = int(right.sum())
        top = int(s.ranks[-1])

        self.rank_line.set_xdata([rank, rank])
        self.accuracy_dot.set_data([rank], [100 * self.accuracy])
        self.truncated_dot.set_data([rank], [100 * self.truncated_accuracy])
        self.spectrum_line.set_ydata(self.spectrum)
        for title, guess, ok in zip(self.digit_titles, self.predictions, right, strict=True):
            title.set_text(f"reads {int(guess)}")
            title.set_color("tab:green" if ok else "tab:red")
        self.title_artist.set_text(f"LoRA rank {rank} (adapter shown): {self.accuracy:.1%} of "
                                   f"the test images right; {self.shown_right} of {len(right)} "
                                   "shown")
        seeds = (f" &nbsp;|&nbsp; all {len(self.seed_accuracy)} seeds "
                 f"{self.seed_accuracy.min():.1%}–{self.seed_accuracy.max():.1%}"
                 if len(self.seed_accuracy) > 1 else "")
        self.readout.value = (
            f"<b>rank {rank}</b> &nbsp;|&nbsp; {self.trainable:,} trainable parameters "
            f"&nbsp;|&nbsp; test accuracy of the adapter shown <b>{self.accuracy:.1%}</b> "
            f"({round(self.accuracy * s.test_size)} of {s.test_size}){seeds} &nbsp;|&nbsp; "
            f"r={top} with layer {s.layer} cut to rank {rank}: {self.truncated_accuracy:.1%}")
        self.figure.canvas.draw()
        rgb = np.asarray(self.figure.canvas.buffer_rgba())[..., :3]
        buffer = io.BytesIO()
        PILImage.fromarray(rgb).save(buffer, format="png", compress_level=1)
        self.image.value = buffer.getvalue()


_STUDY_FIELDS = ("ranks", "trainable", "accuracy", "truncated_accuracy", "spectra", "layer",
                 "images", "labels", "predictions", "test_size")


def _int_array(value: Any, name: str, ndim: int) -> np.ndarray:
    """A copy of ``value`` as an int64 array of ``ndim`` dimensions (whole numbers only)."""
    array = as_array(value, f"study.{name}", ndim=ndim)
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise ValueError(f"study.{name} must hold whole numbers, got {array}")
    return array.astype(np.int64)


def _fractions(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A copy of ``value`` as a float array of ``shape`` with finite entries in [0, 1]."""
    array = np.array(as_array(value, f"study.{name}", ndim=len(shape)), dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"study.{name} must have shape {shape}, got {array.shape}")
    if np.any((array < 0) | (array > 1)):
        raise ValueError(f"study.{name} must hold accuracies as fractions in [0, 1] (not "
                         f"percent), got values from {array.min():g} to {array.max():g}")
    return array


def _check_ranks(study: Any) -> np.ndarray:
    ranks = _int_array(study.ranks, "ranks", ndim=1)
    if np.any(np.diff(ranks) <= 0) or ranks[0] < 1:
        raise ValueError(f"study.ranks must be increasing whole ranks >= 1, got {ranks}")
    return ranks


def _check_study(study: Any) -> Any:
    """A copy of ``study`` with every field checked (shapes, integers, finite, ranges), or raise.

    Raises ``TypeError`` naming missing fields or non-numeric ones, ``ValueError`` naming
    the field and what is allowed.
    """
    missing = [name for name in _STUDY_FIELDS if not hasattr(study, name)]
    if missing:
        raise TypeError(f"study must be a RankStudy (lora_lab.digits_task.rank_study), "
                        f"missing {missing}")
    ranks = _check_ranks(study)
    labels = _int_array(study.labels, "labels", ndim=1)
    k, n = len(ranks), len(labels)
    images = np.array(as_array(study.images, "study.images", ndim=3), dtype=np.float64)
    if len(images) != n:
        raise ValueError(f"study.images must have shape ({n}, height, width), got "
                         f"{images.shape}")
    seed_accuracy = getattr(study, "seed_accuracy", None)
    accuracy = _fractions(study.accuracy, "accuracy", (k,))
    seed_accuracy = accuracy[:, None].copy() if seed_accuracy is None else _fractions(
        seed_accuracy, "seed_accuracy", (k, np.shape(seed_accuracy)[-1]))
    spectra = np.array(as_array(study.spectra, "study.spectra", ndim=2), dtype=np.float64)
    predictions = _int_array(study.predictions, "predictions", ndim=2)
    trainable = _int_array(study.trainable, "trainable", ndim=1)
    for name, array, shape in (("trainable", trainable, (k,)), ("spectra", spectra,
                                                                (k, int(ranks[-1]))),
                               ("predictions", predictions, (k, n))):
        if array.shape != shape:
            raise ValueError(f"study.{name} must have shape {shape}, got {array.shape}")
    test_size = study.test_size
    if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer)) \
            or test_size < 1:
        raise ValueError(f"study.test_size must be an int >= 1 (the number of test images), "
                         f"got {test_size!r}")
    if not isinstance(study.layer, str):
        raise TypeError(f"study.layer must be a module path (str), got {study.layer!r}")
    return SimpleNamespace(
        ranks=ranks, trainable=trainable, accuracy=accuracy, seed_accuracy=seed_accuracy,
        truncated_accuracy=_fractions(study.truncated_accuracy, "truncated_accuracy", (k,)),
        spectra=spectra, layer=study.layer, images=images, labels=labels,
        predictions=predictions, test_size=int(test_size))
