"""Figure helpers of notebook 05: they return Figures with the promised content."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lora_lab.lowrank import energy_curve
from lora_lab.plots import (
    subspace_similarity_figure,
    truncated_update_figure,
    update_spectrum_figure,
)
from lora_lab.update_analysis import energy_rank, random_similarity_grid, similarity_grid


def test_update_spectrum_figure_draws_spectra_energy_and_marks() -> None:
    rng = np.random.default_rng(1)
    spectra = {"ΔW": np.linalg.svd(rng.normal(size=(30, 30)) * 0.7 ** np.arange(30),
                                   compute_uv=False),
               "random": np.linalg.svd(rng.normal(size=(30, 30)), compute_uv=False)}
    fig = update_spectrum_figure(spectra, shown=10)
    assert isinstance(fig, Figure)
    ax_s, ax_e = fig.axes
    for line, s in zip(ax_s.get_lines(), spectra.values(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), s[:10] / s[0])
    curves = [line for line in ax_e.get_lines() if len(line.get_xdata()) == 30]
    dots = [line for line in ax_e.get_lines() if len(line.get_xdata()) == 1]
    for curve, dot, s in zip(curves, dots, spectra.values(), strict=True):
        np.testing.assert_allclose(curve.get_ydata(), energy_curve(s))
        k = energy_rank(s, 0.9)
        assert dot.get_xdata()[0] == k and dot.get_ydata()[0] == energy_curve(s)[k - 1]
    levels = {line.get_ydata()[0] for line in ax_e.get_lines() if line.get_linestyle() == "--"}
    assert levels == {0.5, 0.9, 0.99}
    assert ax_s.get_yscale() == "log" and ax_e.get_xscale() == "log"
    assert [t.get_text() for t in ax_e.get_legend().get_texts()] == ["ΔW", "random"]


@pytest.mark.parametrize(("spectra", "kwargs", "error", "pattern"), [
    ({}, {}, ValueError, "at least one"),
    ({"a": np.array([1.0, 2.0])}, {}, ValueError, "s must be singular values"),
    ({"a": np.zeros(3)}, {}, ValueError, "s is all zero"),
    ({"a": np.ones((2, 2))}, {}, ValueError, "must be 1-D"),
    ({"a": np.ones(3)}, {"mark": 1.5}, ValueError, "fraction must be in"),
    ({"a": np.ones(3)}, {"shown": 0}, ValueError, "shown must be >= 1"),
])
def test_update_spectrum_figure_validates(spectra, kwargs, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        update_spectrum_figure(spectra, **kwargs)


RANKS = [1, 2, 4, 8, 16]
ACCURACY = [0.3, 0.4, 0.75, 0.92, 0.94]


def test_truncated_update_figure_draws_the_curve_and_references() -> None:
    fig = truncated_update_figure(RANKS, ACCURACY, references={"full": 0.94, "frozen": 0.1})
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    curve, *lines = ax.get_lines()
    np.testing.assert_array_equal(curve.get_xdata(), RANKS)
    np.testing.assert_allclose(curve.get_ydata(), 100 * np.array(ACCURACY))
    assert [line.get_ydata()[0] for line in lines] == pytest.approx([94.0, 10.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == ["full", "frozen"]
    assert list(ax.get_xticks()) == RANKS
    assert ax.get_xscale() == "log" and "rank k" in ax.get_xlabel() and "%" in ax.get_ylabel()


def test_truncated_update_figure_marks_ranks_trained_as_lora() -> None:
    trained = {1: 0.72, 8: 0.92, 64: 0.94}
    fig = truncated_update_figure(RANKS, ACCURACY, references={"full": 0.96}, trained=trained)
    (ax,) = fig.axes
    markers = [line for line in ax.get_lines() if line.get_marker() == "s"]
    assert len(markers) == 1 and markers[0].get_linestyle() == "None"
    np.testing.assert_array_equal(markers[0].get_xdata(), [1, 8, 64])
    np.testing.assert_allclose(markers[0].get_ydata(), [72.0, 92.0, 94.0])
    assert "LoRA trained at rank r" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize(("trained", "error", "pattern"), [
    ([0.5], TypeError, "trained must map a rank"),
    ({0: 0.5}, ValueError, r"trained \(rank\) must be >= 1"),
    ({2.5: 0.5}, TypeError, r"trained \(rank\) must be an int"),
    ({8: 92.0}, ValueError, r"trained\[8\] must be an accuracy in \[0, 1\]"),
])
def test_truncated_update_figure_validates_trained(trained, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        truncated_update_figure(RANKS, ACCURACY, trained=trained)


def test_truncated_update_figure_without_references() -> None:
    (ax,) = truncated_update_figure([3], [0.5]).axes
    assert len(ax.get_lines()) == 1


@pytest.mark.parametrize(("ranks", "accuracy", "references", "error", "pattern"), [
    ([1, 2], [0.5], None, ValueError, "same length"),
    ([], [], None, ValueError, "accuracy must not be empty"),
    ([2, 1], [0.5, 0.6], None, ValueError, "ranks must increase"),
    ([0, 1], [0.5, 0.6], None, ValueError, "ranks must be >= 1"),
    ([1.5], [0.5], None, TypeError, "ranks must be an int"),
    ([1, 2], [0.5, 1.5], None, ValueError, r"accuracy must be an accuracy in \[0, 1\]"),
    ([1], [0.5], {"full": 94.0}, ValueError, r"references\['full'\] must be an accuracy"),
])
def test_truncated_update_figure_validates(ranks, accuracy, references, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        truncated_update_figure(ranks, accuracy, references=references)


@pytest.fixture
def grids() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(1, 40))
    A8 = np.vstack([5 * shared, rng.normal(size=(7, 40))])
    A16 = np.vstack([5 * shared + rng.normal(size=(1, 40)), rng.normal(size=(15, 40))])
    return {"r8 vs r16": similarity_grid(A8, A16),
            "random": similarity_grid(rng.normal(size=(16, 40)), rng.normal(size=(16, 40)))}


def test_similarity_figure_shows_phi_and_phi_over_chance(grids) -> None:
    fig = subspace_similarity_figure(grids, 40)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.images]
    colour_bars = [ax for ax in fig.axes if not ax.images]
    assert len(panels) == 4 and len(colour_bars) == 2
    top, bottom = panels[:2], panels[2:]                        # φ above, φ ÷ chance below
    for (title, grid), phi_ax, ratio_ax in zip(grids.items(), top, bottom, strict=True):
        assert phi_ax.get_title() == title
        np.testing.assert_allclose(phi_ax.images[0].get_array(), grid)
        assert phi_ax.images[0].get_clim() == (0.0, 1.0)
        chance = random_similarity_grid(*grid.shape, 40)
        np.testing.assert_allclose(ratio_ax.images[0].get_array(),
                                   np.maximum(grid, 1e-12) / chance)
        assert "chance = max(i, j)/40" in ratio_ax.get_title()
        assert phi_ax.collections, "the random baseline is drawn on every φ panel"
        assert "j" in phi_ax.get_xlabel() and "i" in phi_ax.get_ylabel()
    # cell (i, j) is centred on the integers: i = 1 at the top, j = 1 at the left
    assert top[0].images[0].get_extent() == [0.5, 16.5, 8.5, 0.5]
    assert [bar.get_ylabel() for bar in colour_bars] == ["φ(i, j)", "φ ÷ chance (1 = chance)"]


def test_similarity_figure_ratio_scale_is_white_at_chance(grids) -> None:
    fig = subspace_similarity_figure(grids, 40)
    norm = [ax for ax in fig.axes if ax.images][2].images[0].norm      # bottom row
    assert norm(1.0) == pytest.approx(0.5)
    assert norm.vmin == pytest.approx(1 / norm.vmax)


@pytest.mark.parametrize(("grids_", "d", "error", "pattern"), [
    ({}, 40, ValueError, "at least one"),
    ({"a": np.full((2, 2), 1.5)}, 40, ValueError, r"in \[0, 1\]"),
    ({"a": np.full((2, 50), 0.5)}, 40, ValueError, "more directions than d = 40"),
    ({"a": np.full(3, 0.5)}, 40, ValueError, "must be 2-D"),
    ({"a": np.full((2, 2), 0.5)}, 0, ValueError, "d must be >= 1"),
    ([np.full((2, 2), 0.5)], 40, ValueError, "at least one"),
])
def test_similarity_figure_validates(grids_, d, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        subspace_similarity_figure(grids_, d)
