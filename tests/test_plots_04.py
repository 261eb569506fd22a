"""Figure helpers of notebook 04 draw what they are given, and refuse what they cannot draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lora_lab import plots


def test_domains_figure_one_row_per_domain_labels_on_top() -> None:
    upright = np.random.default_rng(0).random((5, 64))
    sideways = torch.rand(5, 8, 8, dtype=torch.float64)
    fig = plots.domains_figure({"upright": upright, "sideways": sideways}, [3, 1, 4, 1, 5])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes[:5]] == ["3", "1", "4", "1", "5"]
    assert fig.axes[0].get_ylabel() == "upright" and fig.axes[5].get_ylabel() == "sideways"
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), upright[0].reshape(8, 8))
    np.testing.assert_allclose(fig.axes[5].images[0].get_array(), sideways[0].numpy())


@pytest.mark.parametrize(("rows", "labels", "error", "message"), [
    ({}, [1], ValueError, "at least one"),
    ({"a": np.ones((2, 63))}, [1, 2], ValueError, "square"),
    ({"a": np.ones((2, 64))}, [1, 2, 3], ValueError, "len\\(labels\\)"),
    ({"a": "pictures"}, [1], TypeError, "rows"),
    ({"a": np.ones(64)}, [1], ValueError, "rows"),
])
def test_domains_figure_rejects_what_it_cannot_draw(rows, labels, error, message) -> None:
    with pytest.raises(error, match=message):
        plots.domains_figure(rows, labels)


def test_accuracy_vs_parameters_points_bars_and_log_axis() -> None:
    fig = plots.accuracy_vs_parameters_figure(
        {"head": 2570, "LoRA r=8": 8784}, {"head": [0.8, 0.84], "LoRA r=8": [0.9, 0.92, 0.94]},
        baseline=("frozen", 0.1))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    points = [c for c in ax.containers]
    assert len(points) == 2
    x, y = points[1].lines[0].get_data()
    assert x[0] == 8784 and y[0] == pytest.approx(92.0)
    bar = points[1].lines[2][0].get_segments()[0]
    np.testing.assert_allclose(bar[:, 1], [90.0, 94.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frozen", "head", "LoRA r=8"]
    frozen = [line for line in ax.get_lines() if line.get_label() == "frozen"]
    np.testing.assert_array_equal(frozen[0].get_ydata(), [10.0, 10.0])


@pytest.mark.parametrize(("trainable", "accuracy", "message"), [
    ({}, {}, "at least one"),
    ({"a": 5}, {"b": [0.5]}, "exactly the variants"),
    ({"a": 0}, {"a": [0.5]}, "int >= 1"),
    ({"a": 5.5}, {"a": [0.5]}, "int >= 1"),
    ({"a": 5}, {"a": [50.0]}, "fractions"),
    ({"a": 5}, {"a": []}, "empty"),
])
def test_accuracy_vs_parameters_rejects_what_it_cannot_draw(trainable, accuracy,
                                                            message) -> None:
    with pytest.raises(ValueError, match=message):
        plots.accuracy_vs_parameters_figure(trainable, accuracy)


def test_lr_sweep_curve_through_the_worst_run_and_a_star_at_the_best() -> None:
    fig = plots.lr_sweep_figure({"full": {1e-3: [0.5, 0.6], 1e-2: [0.9, 0.95], 0.1: [0.2, 0.9]},
                                 "LoRA": {1e-2: [0.7, 0.7], 0.1: [0.7, 0.8]}})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    curve, star, _, lora_star = ax.get_lines()
    np.testing.assert_allclose(curve.get_xdata(), [1e-3, 1e-2, 0.1])
    np.testing.assert_allclose(curve.get_ydata(), [50.0, 90.0, 20.0])
    assert star.get_xdata()[0] == 1e-2 and star.get_marker() == "*"
    assert lora_star.get_xdata()[0] == 1e-2  # a tie goes to the smaller learning rate
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["full", "LoRA"]


@pytest.mark.parametrize(("curves", "message"), [
    ({}, "at least one"),
    ({"a": {}}, "must map"),
    ({"a": {0.0: [0.5]}}, "> 0"),
    ({"a": {0.1: []}}, "empty"),
])
def test_lr_sweep_rejects_what_it_cannot_draw(curves, message) -> None:
    with pytest.raises(ValueError, match=message):
        plots.lr_sweep_figure(curves)
