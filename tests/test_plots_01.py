"""Figure helpers of notebook 01: they return Figures with the promised content."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lora_lab.plots import (
    eckart_young_figure,
    lora_layer_figure,
    outer_products_figure,
    reconstructions_figure,
    spectrum_figure,
    storage_figure,
)


@pytest.fixture
def matrix() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(30, 20))


def test_outer_products_figure_shows_terms_and_sum() -> None:
    pieces = [np.outer([1, 2, 3], [1, 0, -1, 2]), np.outer([0, 1, 1], [2, 1, 0, 0])]
    fig = outer_products_figure(pieces, titles=["u1 v1ᵀ", "u2 v2ᵀ"])
    assert isinstance(fig, Figure)
    *panels, colour_bar = fig.axes
    assert [ax.get_title() for ax in panels] == ["u1 v1ᵀ", "u2 v2ᵀ", "sum"]
    np.testing.assert_array_equal(panels[2].images[0].get_array(), pieces[0] + pieces[1])
    # one colour bar for all panels: one symmetric scale, labelled
    assert colour_bar.get_ylabel() == "entry value"
    limit = np.abs(pieces[0] + pieces[1]).max()
    for ax in panels:
        assert ax.images[0].get_clim() == (-limit, limit)
    assert colour_bar.get_ylim() == (-limit, limit)


def test_outer_products_figure_validates() -> None:
    with pytest.raises(ValueError, match="terms"):
        outer_products_figure([np.ones((2, 3)), np.ones((3, 2))])
    with pytest.raises(TypeError, match="terms"):
        outer_products_figure(np.ones((2, 3)))
    with pytest.raises(ValueError, match="titles"):
        outer_products_figure([np.ones((2, 3))], titles=["a", "b"])


def test_reconstructions_figure_titles_carry_the_errors(matrix: np.ndarray) -> None:
    fig = reconstructions_figure(matrix, [1, 5, 20])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "original\n30 x 20"
    assert titles[3] == "rank 20\nrel. error 0.0%"
    s = np.linalg.svd(matrix, compute_uv=False)
    expected = np.sqrt(np.sum(s[5:] ** 2) / np.sum(s**2))
    assert titles[2] == f"rank 5\nrel. error {expected:.1%}"


@pytest.mark.parametrize(("ranks", "error"), [([0], ValueError), ([21], ValueError),
                                              ([], ValueError), ([1.5], TypeError),
                                              ("5", TypeError)])
def test_reconstructions_figure_validates_ranks(matrix: np.ndarray, ranks, error) -> None:
    with pytest.raises(error, match="ranks"):
        reconstructions_figure(matrix, ranks)


def test_spectrum_figure_single_and_compared(matrix: np.ndarray) -> None:
    s = np.linalg.svd(matrix, compute_uv=False)
    fig = spectrum_figure(s, mark_ranks=[3])
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata()[-1], 1.0)
    assert fig.axes[0].get_legend() is None  # one curve needs no legend
    fig = spectrum_figure({"a": s, "b": 2 * s}, normalize=True)
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata()[0], 1.0)
    for ax in fig.axes:  # two curves in each panel: each panel says which is which
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="s must be singular values"):
        spectrum_figure(s[::-1])
    with pytest.raises(ValueError, match="mark_ranks"):
        spectrum_figure(s, mark_ranks=[99])


@pytest.mark.parametrize("normalize", [False, True])
def test_spectrum_figure_axes_say_index_for_sigma_and_rank_for_energy(
        matrix: np.ndarray, normalize: bool) -> None:
    """Left: sigma_i against its index i (1 = largest). Right: E(k) against the rank k."""
    s = np.linalg.svd(matrix, compute_uv=False)
    ax_s, ax_e = spectrum_figure(s, normalize=normalize).axes
    assert "index" in ax_s.get_xlabel() and "rank" not in ax_s.get_xlabel()
    assert ax_s.get_ylabel() == (r"$\sigma_i / \sigma_1$" if normalize else r"$\sigma_i$") \
        + " (log scale)"
    np.testing.assert_array_equal(ax_s.lines[0].get_xdata(), np.arange(1, s.size + 1))
    assert ax_e.get_xlabel() == "rank k (log scale)"
    assert ax_e.get_ylabel() == "energy kept E(k)"
    every_axis = [ax_s, ax_e]
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in every_axis)


def test_every_rank_axis_of_notebook_01_is_labelled(matrix: np.ndarray) -> None:
    """The storage and Eckart-Young figures plot against the rank k of an approximation."""
    figures = [storage_figure(30, 20),
               eckart_young_figure([1, 2], {"truncated SVD": [0.5, 0.4], "other": [0.6, 0.45]})]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() == "rank k" and ax.get_ylabel() and ax.get_title()


def test_lora_layer_figure_labels_every_part_with_its_shape() -> None:
    fig = lora_layer_figure()
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == r"a LoRA layer:  $h = W_0\,x + \dfrac{\alpha}{r}\,B\,A\,x$"
    texts = " | ".join(t.get_text() for t in ax.texts)
    for part in [r"$W_0$   (out × in)", "frozen", "A  (r × in)", "starts random",
                 "B  (out × r)", "starts at zero", "× α/r", "+", "x\n(length in)",
                 "h\n(length\nout)", "length r"]:
        assert part in texts, part
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frozen", "trained"]
    assert "bias omitted" in texts  # the wrapped nn.Linear has one; the figure says so
    # A narrows from in to r, B widens from r to out: the trapezoids' heights say so
    a, b = (p for p in ax.patches if type(p).__name__ == "Polygon")
    height = lambda corners, i: corners[3 - i][1] - corners[i][1]  # left (i=0), right (i=1)
    assert height(a.get_xy(), 0) > height(a.get_xy(), 1)
    assert height(b.get_xy(), 0) < height(b.get_xy(), 1)
    # height means size: W0 (out x in) is drawn exactly as high as A's "in" side and B's "out"
    # side, its rounded corners included
    (w0,) = (p for p in ax.patches if type(p).__name__ == "FancyBboxPatch" and
             p.get_facecolor()[:3] != (1.0, 1.0, 1.0))
    w0_height = np.ptp(w0.get_path().vertices[:, 1])
    np.testing.assert_allclose([height(a.get_xy(), 0), height(b.get_xy(), 1)], w0_height)


def test_lora_layer_figure_draws_the_sum_as_a_circle() -> None:
    """A Circle patch would be squashed (x and y units differ on screen); a marker is round."""
    ax = lora_layer_figure().axes[0]
    assert not [p for p in ax.patches if type(p).__name__ in ("Circle", "Ellipse")]
    (plus,) = [t for t in ax.texts if t.get_text() == "+"]
    (ring,) = [line for line in ax.lines if line.get_marker() == "o"]
    assert (ring.get_xdata()[0], ring.get_ydata()[0]) == plus.get_position()
    assert ring.get_markerfacecolor() == "white" and ring.get_markersize() > 20


def test_spectrum_figure_labels_stay_inside_the_axes() -> None:
    """A mark near energy 0 gets its label above the dot, not on the x axis below it."""
    s = np.ones(100)  # energy(k) = k / 100
    fig = spectrum_figure(s, mark_ranks=[4, 90])
    low, high = fig.axes[1].texts
    assert low.get_text() == "k=4: 4.0%" and low.xyann[1] > 0
    assert high.get_text() == "k=90: 90.0%" and high.xyann[1] < 0
    assert "log" in fig.axes[1].get_xlabel()


def test_storage_figure_marks_the_break_even() -> None:
    fig = storage_figure(600, 512, mark_ranks=[20])
    ax = fig.axes[0]
    assert "k < 276.3" in [t.get_text() for t in ax.get_legend().get_texts()][2]
    np.testing.assert_allclose(ax.lines[0].get_ydata()[:3], [1112, 2224, 3336])
    assert [t.get_text() for t in ax.texts] == ["k=20: 7% of m n"]
    with pytest.raises(ValueError, match="m"):
        storage_figure(0, 5)
    with pytest.raises(TypeError, match="n"):
        storage_figure(5, 2.5)


def test_eckart_young_figure(matrix: np.ndarray) -> None:
    fig = eckart_young_figure([1, 2, 3], {"truncated SVD": [0.5, 0.4, 0.3],
                                          "random": [0.9, 0.8, 0.7],
                                          "nudged": [0.5 + 1e-6, 0.4, 0.3 + 1e-5]})
    assert [line.get_label() for line in fig.axes[0].lines] == ["truncated SVD", "random",
                                                               "nudged"]
    # the second panel shows each gap to the SVD on a log axis; a tie (gap 0) is left out
    gap_axis = fig.axes[1]
    assert gap_axis.get_yscale() == "log"
    assert [line.get_label() for line in gap_axis.lines] == ["random", "nudged"]
    np.testing.assert_allclose(gap_axis.lines[0].get_ydata(), [0.4, 0.4, 0.4])
    np.testing.assert_allclose(gap_axis.lines[1].get_ydata(), [1e-6, np.nan, 1e-5], rtol=1e-6)
    assert fig.axes[0].lines[2].get_color() == gap_axis.lines[1].get_color()
    assert len(eckart_young_figure([1, 2], {"random": [0.9, 0.8]}).axes) == 1  # no SVD, no gaps
    with pytest.raises(ValueError, match="one value per rank"):
        eckart_young_figure([1, 2], {"random": [1.0]})
    with pytest.raises(ValueError, match="errors"):
        eckart_young_figure([1, 2], {})
