"""The rank explorer of notebook 04, driven headlessly by setting ``slider.value``."""

from __future__ import annotations

import io

import ipywidgets
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from lora_lab.digits_task import RankStudy
from lora_lab.widgets import RankExplorer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_study(n: int = 6) -> RankStudy:
    """Made-up measurements of three adapters (ranks 1, 2, 4) on n shown images."""
    rng = np.random.default_rng(0)
    ranks = np.array([1, 2, 4])
    spectra = np.array([[3.0, 0, 0, 0], [3.5, 1.0, 0, 0], [4.0, 1.5, 0.5, 0.2]])
    labels = np.arange(n) % 10
    predictions = np.stack([(labels + 1) % 10, labels, labels])
    predictions[1, 0] = 7  # rank 2 misreads the first image
    return RankStudy(ranks=ranks, trainable=np.array([100, 200, 400]),
                     accuracy=np.array([0.5, 0.8, 0.9]),
                     truncated_accuracy=np.array([0.4, 0.7, 0.9]), spectra=spectra,
                     layer="0", images=rng.random((n, 8, 8)), labels=labels,
                     predictions=predictions, test_size=200,
                     seed_accuracy=np.array([[0.5, 0.6], [0.8, 0.7], [0.9, 0.95]]))


@pytest.fixture
def explorer() -> RankExplorer:
    return RankExplorer(make_study(), rank=2)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)


def test_parts_and_layout(explorer: RankExplorer) -> None:
    assert isinstance(explorer.slider, ipywidgets.SelectionSlider)
    assert isinstance(explorer.readout, ipywidgets.HTML)
    assert isinstance(explorer.image, ipywidgets.Image)
    assert explorer.widget.children == (explorer.slider, explorer.readout, explorer.image)
    assert isinstance(explorer.figure, Figure)
    assert explorer.slider.options == (1, 2, 4)
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)
    assert len(explorer.figure.axes) == 2 + 6
    # what Jupyter stores as the widget's text: it must not change between runs
    assert repr(explorer.widget).startswith("VBox(children=(SelectionSlider(description='rank'")


def test_default_rank_is_the_middle_one() -> None:
    assert RankExplorer(make_study()).rank == 2


def test_moving_the_slider_shows_that_adapter(explorer: RankExplorer) -> None:
    study = make_study()
    for rank in (1, 4, 2):
        explorer.slider.value = rank
        assert explorer.rank == rank
        j = [1, 2, 4].index(rank)
        assert explorer.accuracy == study.accuracy[j]
        np.testing.assert_array_equal(explorer.seed_accuracy, study.seed_accuracy[j])
        assert explorer.truncated_accuracy == study.truncated_accuracy[j]
        assert explorer.trainable == study.trainable[j]
        np.testing.assert_array_equal(explorer.spectrum, study.spectra[j])
        np.testing.assert_array_equal(explorer.predictions, study.predictions[j])
        np.testing.assert_array_equal(explorer.spectrum_line.get_ydata(), study.spectra[j])
        assert explorer.accuracy_dot.get_ydata()[0] == 100 * study.accuracy[j]
        assert explorer.truncated_dot.get_ydata()[0] == 100 * study.truncated_accuracy[j]
        assert explorer.rank_line.get_xdata()[0] == rank
        assert f"<b>rank {rank}</b>" in explorer.readout.value
        assert f"{study.accuracy[j]:.1%}" in explorer.readout.value
        assert f"({round(study.accuracy[j] * 200)} of 200)" in explorer.readout.value
        low, high = study.seed_accuracy[j].min(), study.seed_accuracy[j].max()
        assert f"all 2 seeds {low:.1%}–{high:.1%}" in explorer.readout.value


def test_the_accuracy_panel_shows_every_seed_not_only_the_adapter_shown(
        explorer: RankExplorer) -> None:
    """The spread over seeds is drawn (a band from worst to best, a line through the mean),
    so one lucky or unlucky seed cannot make a rank look better or worse than it is."""
    study = make_study()
    ax = explorer.figure.axes[0]
    mean, shown, cut = ax.get_lines()[:3]
    np.testing.assert_allclose(mean.get_ydata(), 100 * study.seed_accuracy.mean(axis=1))
    np.testing.assert_allclose(shown.get_ydata(), 100 * study.accuracy)
    np.testing.assert_allclose(cut.get_ydata(), 100 * study.truncated_accuracy)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(50.0) and band.max() == pytest.approx(95.0)
    assert "2 seeds" in mean.get_label() and "layer 0 cut" in cut.get_label()


def test_a_study_of_one_seed_works_without_seed_accuracy() -> None:
    single = RankExplorer(make_study()._replace(seed_accuracy=None), rank=4)
    np.testing.assert_array_equal(single.seed_accuracy, [0.9])
    assert "seeds" not in single.readout.value


def test_later_changes_to_the_study_do_not_reach_the_widget() -> None:
    study = make_study()
    explorer = RankExplorer(study, rank=2)
    study.accuracy[:] = 0.0
    study.predictions[:] = 0
    explorer.update(1)
    explorer.update(2)
    assert explorer.accuracy == 0.8 and explorer.predictions[0] == 7


def test_digit_titles_say_what_the_adapter_reads(explorer: RankExplorer) -> None:
    explorer.slider.value = 1  # reads every label + 1: all wrong
    assert [t.get_text() for t in explorer.digit_titles] == [f"reads {(k + 1) % 10}"
                                                             for k in range(6)]
    assert {t.get_color() for t in explorer.digit_titles} == {"tab:red"}
    assert explorer.shown_right == 0
    explorer.slider.value = 2  # right except the first image
    assert explorer.digit_titles[0].get_text() == "reads 7"
    assert [t.get_color() for t in explorer.digit_titles] == ["tab:red"] + ["tab:green"] * 5
    assert explorer.shown_right == 5
    assert "5 of 6 shown" in explorer.title_artist.get_text()


def test_artists_are_updated_not_recreated(explorer: RankExplorer) -> None:
    ids = (id(explorer.figure), id(explorer.spectrum_line), id(explorer.accuracy_dot),
           id(explorer.image), *map(id, explorer.digit_titles))
    axes = list(explorer.figure.axes)
    lines = [list(ax.lines) for ax in axes]
    for rank in (4, 1, 2):
        before = explorer.image.value
        explorer.slider.value = rank
        assert explorer.image.value != before
    assert ids == (id(explorer.figure), id(explorer.spectrum_line), id(explorer.accuracy_dot),
                   id(explorer.image), *map(id, explorer.digit_titles))
    assert explorer.figure.axes == axes
    assert [list(ax.lines) for ax in explorer.figure.axes] == lines


def test_update_moves_the_slider_and_redraws_the_same_picture(explorer: RankExplorer) -> None:
    explorer.update(4)
    assert explorer.slider.value == explorer.rank == 4
    png = png_pixels(explorer.image.value)
    explorer.update(4)
    np.testing.assert_array_equal(png_pixels(explorer.image.value), png)


@pytest.mark.parametrize(("rank", "error"), [(3, ValueError), (0, ValueError),
                                             (2.0, TypeError), ("2", TypeError)])
def test_update_rejects_ranks_not_studied(explorer: RankExplorer, rank, error) -> None:
    with pytest.raises(error, match="rank"):
        explorer.update(rank)
    assert explorer.rank == 2


def test_constructor_rejects_bad_input() -> None:
    study = make_study()
    with pytest.raises(ValueError, match="rank"):
        RankExplorer(study, rank=8)
    with pytest.raises(TypeError, match="study"):
        RankExplorer({"ranks": [1]})
    with pytest.raises(ValueError, match=r"study\.ranks"):
        RankExplorer(study._replace(ranks=np.array([2, 1, 4])))
    with pytest.raises(ValueError, match=r"study\.accuracy"):
        RankExplorer(study._replace(accuracy=np.array([0.5, 0.8])))
    with pytest.raises(ValueError, match=r"study\.spectra"):
        RankExplorer(study._replace(spectra=np.zeros((3, 3))))
    with pytest.raises(ValueError, match=r"study\.predictions"):
        RankExplorer(study._replace(predictions=np.zeros((3, 5), dtype=int)))
    with pytest.raises(ValueError, match=r"study\.images"):
        RankExplorer(study._replace(images=np.zeros((6, 64))))


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"ranks": np.array([1.5, 2, 4])}, ValueError, r"study\.ranks must hold whole numbers"),
    ({"ranks": np.array([[1, 2, 4]])}, ValueError, r"study\.ranks must be 1-D"),
    ({"ranks": np.array([0, 2, 4])}, ValueError, r"study\.ranks must be increasing"),
    ({"accuracy": np.array([50.0, 80.0, 90.0])}, ValueError, r"\[0, 1\] \(not percent"),
    ({"accuracy": np.array([np.nan, 0.8, 0.9])}, ValueError, r"study\.accuracy contains NaN"),
    ({"seed_accuracy": np.ones((3, 2)) * 2}, ValueError, r"study\.seed_accuracy must hold"),
    ({"seed_accuracy": np.ones((2, 2)) / 2}, ValueError, r"study\.seed_accuracy must have shape"),
    ({"truncated_accuracy": np.array([0.4, np.inf, 0.9])}, ValueError,
     r"study\.truncated_accuracy contains NaN or inf"),
    ({"spectra": np.full((3, 4), np.nan)}, ValueError, r"study\.spectra contains NaN"),
    ({"spectra": np.full((3, 4), np.inf)}, ValueError, r"study\.spectra contains NaN"),
    ({"images": np.full((6, 8, 8), np.nan)}, ValueError, r"study\.images contains NaN"),
    ({"predictions": np.full((3, 6), 0.5)}, ValueError, r"study\.predictions must hold whole"),
    ({"labels": np.array(["a"] * 6)}, TypeError, r"study\.labels must hold numbers"),
    ({"labels": np.arange(0)}, ValueError, r"study\.labels must not be empty"),
    ({"trainable": np.array([100.7, 200, 400])}, ValueError, r"study\.trainable must hold whole"),
    ({"test_size": 0}, ValueError, r"study\.test_size must be an int >= 1"),
    ({"test_size": None}, ValueError, r"study\.test_size must be an int >= 1"),
    ({"layer": 0}, TypeError, r"study\.layer"),
])
def test_constructor_names_every_bad_field(change, error, message) -> None:
    with pytest.raises(error, match=message):
        RankExplorer(make_study()._replace(**change))
