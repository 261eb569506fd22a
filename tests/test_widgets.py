"""The rank slider of notebook 01, driven headlessly by setting ``slider.value``."""

from __future__ import annotations

import io

import ipywidgets
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from lora_lab.lowrank import energy_captured, low_rank_approx, singular_values, truncation_error
from lora_lab.widgets import RankSlider, block_mean_rows, load_sample_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_sample_image()


@pytest.fixture(scope="module")
def explorer(photo: np.ndarray) -> RankSlider:
    return RankSlider(photo, rank=20)


@pytest.fixture
def small() -> RankSlider:
    rng = np.random.default_rng(0)
    return RankSlider(rng.normal(size=(12, 8)), rank=3)


def blocks_2x2(X: np.ndarray) -> np.ndarray:
    """Mean of each 2 x 2 block of pixels of an (even, even) matrix."""
    return X.reshape(X.shape[0] // 2, 2, X.shape[1] // 2, 2).mean(axis=(1, 3))


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)


# --------------------------------------------------------------------------- the photo


def test_sample_image_is_a_grayscale_matrix_in_unit_range(photo: np.ndarray) -> None:
    assert photo.shape == (600, 512)
    assert photo.dtype == np.float64
    assert 0.0 <= photo.min() < 0.05 and 0.95 < photo.max() <= 1.0
    assert 0.2 < photo.mean() < 0.8  # a photograph, not a blank page


def test_sample_image_step_keeps_every_step_th_pixel(photo: np.ndarray) -> None:
    half = load_sample_image(step=2)
    assert half.shape == (300, 256)
    np.testing.assert_array_equal(half, photo[::2, ::2])
    assert load_sample_image(step=7).shape == (86, 74)  # rounded up


@pytest.mark.parametrize(("step", "error"), [(0, ValueError), (-1, ValueError),
                                             (1.5, TypeError), ("2", TypeError),
                                             (True, TypeError), (65, ValueError)])
def test_sample_image_rejects_bad_steps(step, error) -> None:
    with pytest.raises(error, match="step"):
        load_sample_image(step=step)


def test_block_means_of_the_factors_give_block_means_of_the_product() -> None:
    rng = np.random.default_rng(3)
    U, Vt = rng.normal(size=(8, 3)), rng.normal(size=(3, 6))
    shrunk = block_mean_rows(U, 2) @ block_mean_rows(Vt.T, 2).T
    np.testing.assert_allclose(shrunk, blocks_2x2(U @ Vt), atol=1e-12)
    assert block_mean_rows(rng.normal(size=(7, 2)), 3).shape == (2, 2)  # leftover row dropped
    np.testing.assert_array_equal(block_mean_rows(U, 1), U)


@pytest.mark.parametrize(("X", "f", "error", "name"), [
    (np.ones(4), 2, ValueError, "X"), (np.ones((4, 2)), 0, ValueError, "f"),
    (np.ones((4, 2)), 5, ValueError, "f"), (np.ones((4, 2)), 2.0, TypeError, "f")])
def test_block_mean_rows_rejects_bad_inputs(X, f, error, name) -> None:
    with pytest.raises(error, match=name):
        block_mean_rows(X, f)


# --------------------------------------------------------------------------- structure


def test_parts_and_layout(explorer: RankSlider) -> None:
    assert isinstance(explorer.slider, ipywidgets.IntSlider)
    assert isinstance(explorer.readout, ipywidgets.HTML)
    assert isinstance(explorer.image, ipywidgets.Image)
    assert isinstance(explorer.widget, ipywidgets.VBox)
    assert isinstance(explorer.figure, Figure)
    assert explorer.widget.children == (explorer.slider, explorer.readout, explorer.image)
    assert (explorer.slider.min, explorer.slider.max) == (1, 512)
    assert explorer.image.format == "png"
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)


def test_figure_names_the_rank_shown_and_labels_the_rank_line(small: RankSlider) -> None:
    assert small.title_artist.get_text() == "rank-3 reconstruction (12 x 8)"
    small.slider.value = 5
    assert small.title_artist.get_text() == "rank-5 reconstruction (12 x 8)"
    legend = small.figure.axes[1].get_legend()
    assert "current rank" in [text.get_text() for text in legend.get_texts()]
    assert small.rank_line.get_label() == "current rank"


def test_starts_at_the_requested_rank(photo: np.ndarray) -> None:
    fresh = RankSlider(photo[:100, :80], rank=7)
    assert fresh.slider.value == fresh.rank == 7
    assert "rank 7" in fresh.readout.value
    assert fresh.slider.max == 80


# --------------------------------------------------------------------------- updates


def test_moving_the_slider_updates_every_number(explorer: RankSlider, photo: np.ndarray) -> None:
    s = singular_values(photo)
    norm = np.linalg.norm(photo)
    for k in (1, 5, 50, 300):
        explorer.slider.value = k
        assert explorer.rank == k
        np.testing.assert_allclose(explorer.reconstruction, low_rank_approx(photo, k),
                                   atol=1e-10)
        # Eckart-Young: the measured error is the one the thrown-away values predict.
        assert explorer.relative_error == pytest.approx(truncation_error(s, k) / norm, rel=1e-9)
        measured = np.linalg.norm(photo - explorer.reconstruction) / norm
        assert explorer.relative_error == pytest.approx(measured, rel=1e-9)
        assert explorer.energy == pytest.approx(energy_captured(s, k))
        assert explorer.compression == pytest.approx(600 * 512 / (k * (600 + 512)))
        assert f"rank {k}</b>" in explorer.readout.value
        assert f"{explorer.relative_error:.3f}" in explorer.readout.value
        np.testing.assert_array_equal(explorer.image_artist.get_array(), explorer.screen_image)
        np.testing.assert_allclose(explorer.screen_image, blocks_2x2(explorer.reconstruction),
                                   atol=1e-12)


def test_extremes_rank_one_and_full_rank(explorer: RankSlider, photo: np.ndarray) -> None:
    explorer.slider.value = 1
    u_s, vt = explorer._U[:, :1] * explorer._S[:1], explorer._Vt[:1]
    np.testing.assert_allclose(explorer.reconstruction, u_s @ vt)
    assert np.linalg.matrix_rank(explorer.reconstruction) == 1
    assert 0.1 < explorer.relative_error < 0.9
    assert explorer.compression == pytest.approx(600 * 512 / 1112)

    explorer.slider.value = 512
    np.testing.assert_allclose(explorer.reconstruction, photo, atol=1e-12)
    np.testing.assert_allclose(explorer.screen_image, blocks_2x2(photo), atol=1e-12)
    assert explorer.relative_error < 1e-12
    measured = np.linalg.norm(photo - explorer.reconstruction) / np.linalg.norm(photo)
    assert measured < 1e-12
    assert explorer.energy == pytest.approx(1.0)
    assert explorer.compression < 1  # full rank stores more than the photo itself
    assert "relative error <b>0.000</b>" in explorer.readout.value
    assert "energy kept <b>100.00%</b>" in explorer.readout.value


def test_artists_are_updated_not_recreated(explorer: RankSlider) -> None:
    explorer.slider.value = 10
    figure, artist = explorer.figure, explorer.image_artist
    ids = (id(figure), id(artist), id(explorer.rank_line), id(explorer.energy_dot),
           id(explorer.image))
    axes = list(figure.axes)
    lines = [list(ax.lines) for ax in axes]
    for k in (11, 200, 3):
        before_png, before_html = explorer.image.value, explorer.readout.value
        explorer.slider.value = k
        assert explorer.image.value != before_png
        assert explorer.readout.value != before_html
    assert ids == (id(explorer.figure), id(explorer.image_artist), id(explorer.rank_line),
                   id(explorer.energy_dot), id(explorer.image))
    assert figure.axes == axes
    assert list(figure.axes[0].images) == [artist]
    assert [list(ax.lines) for ax in figure.axes] == lines
    assert explorer.rank_line.get_xdata()[0] == 3


def test_the_svd_is_not_recomputed(small: RankSlider, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("np.linalg.svd called during an update")

    monkeypatch.setattr(np.linalg, "svd", forbidden)
    for k in (1, 8, 4):
        small.slider.value = k
    assert small.rank == 4


def test_update_moves_the_slider_too(small: RankSlider) -> None:
    small.update(6)
    assert small.slider.value == small.rank == 6
    png = small.image.value
    small.update(6)  # same rank again: redraws, same picture
    assert small.image.value == png


@pytest.mark.parametrize(("rank", "error"), [(0, ValueError), (9, ValueError),
                                             (2.0, TypeError), (None, TypeError)])
def test_update_rejects_bad_ranks(small: RankSlider, rank, error) -> None:
    with pytest.raises(error, match="rank"):
        small.update(rank)
    assert small.rank == 3


@pytest.mark.parametrize(("image", "rank", "error", "name"), [
    (np.zeros(5), 1, ValueError, "image"),
    ("photo.jpg", 1, TypeError, "image"),
    (np.full((4, 4), np.nan), 1, ValueError, "image"),
    (np.ones((4, 6)), 5, ValueError, "rank"),
    (np.ones((4, 6)), 0, ValueError, "rank"),
    (np.ones((4, 6)), 1.0, TypeError, "rank"),
])
def test_constructor_rejects_bad_inputs(image, rank, error, name) -> None:
    with pytest.raises(error, match=name):
        RankSlider(image, rank=rank)


# --------------------------------------------------------------------------- rendering


def test_blitted_png_matches_a_full_redraw(explorer: RankSlider) -> None:
    explorer.slider.value = 37
    fast = png_pixels(explorer.image.value)
    explorer.figure.canvas.draw()  # the slow way: everything from scratch
    full = np.asarray(explorer.figure.canvas.buffer_rgba())[..., :3].astype(int)
    assert fast.shape == full.shape
    differs = np.any(np.abs(fast - full) > 8, axis=-1).mean()
    assert differs < 0.01, f"{differs:.2%} of pixels differ"  # only where lines overlap text


def test_saving_the_figure_does_not_break_later_updates(explorer: RankSlider) -> None:
    """``display(explorer.figure)`` saves the figure at another size; updates must survive."""
    explorer.slider.value = 2
    reference = png_pixels(explorer.image.value)
    explorer.figure.savefig(io.BytesIO(), format="png", dpi=50, bbox_inches="tight")
    explorer.slider.value = 3
    explorer.slider.value = 2
    np.testing.assert_array_equal(png_pixels(explorer.image.value), reference)


def test_the_picture_sharpens_as_rank_grows(explorer: RankSlider) -> None:
    """More rank, closer picture: the rendered image approaches the rank-512 one."""
    pictures = {}
    for k in (1, 10, 100, 512):
        explorer.slider.value = k
        pictures[k] = png_pixels(explorer.image.value)[:, :300]  # the photo half
    gaps = [np.abs(pictures[k] - pictures[512]).mean() for k in (1, 10, 100)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_rank_slider_curve_panel_is_labelled() -> None:
    from lora_lab.widgets import RankSlider

    slider = RankSlider(np.random.default_rng(0).normal(size=(20, 12)), rank=2)
    curve = slider.figure.axes[1]
    assert curve.get_ylabel() == "energy kept / relative error"
    slider.figure.canvas.draw()
    labels = [t.get_text() for t in curve.get_xticklabels() if t.get_text()]
    assert "10" in labels and not any("^" in t for t in labels)
