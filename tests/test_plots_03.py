"""Figure helpers of notebook 03 draw what they are given, and refuse what they cannot draw."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lora_lab import plots

SWEEPS = {"α/r": {"r = 1": {0.004: 0.3, 0.002: 0.4, 0.008: 0.2},
                  "r = 4": {0.002: 0.3, 0.004: 0.1, 0.008: 0.15}},
          "α/√r": {"r = 1": {0.002: 0.4, 0.004: 0.3, 0.008: 0.2}}}


def test_one_log_log_panel_per_scaling_with_a_curve_per_rank():
    fig = plots.scaling_sweep_figure(SWEEPS, ylabel="mean excess", suptitle="sweep")
    assert isinstance(fig, Figure)
    left, right = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["α/r", "α/√r"]
    assert left.get_xscale() == left.get_yscale() == right.get_yscale() == "log"
    assert left.get_ylabel() == "mean excess" and left.get_xlabel() == "learning rate"
    assert left.get_ylim() == right.get_ylim()                      # shared y axis
    assert fig.get_suptitle() == "sweep"
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["r = 1", "r = 4"]


def test_points_are_sorted_by_learning_rate_and_the_best_is_marked():
    ax = plots.scaling_sweep_figure(SWEEPS).axes[0]
    curve, best = ax.get_lines()[0], ax.get_lines()[1]
    np.testing.assert_array_equal(curve.get_xdata(), [0.002, 0.004, 0.008])
    np.testing.assert_array_equal(curve.get_ydata(), [0.4, 0.3, 0.2])
    np.testing.assert_array_equal(best.get_xdata(), [0.008])          # lowest value
    np.testing.assert_array_equal(ax.get_lines()[3].get_xdata(), [0.004])  # r = 4's best
    assert best.get_color() == curve.get_color() and best.get_linestyle() == "None"


def test_ticks_are_the_swept_rates_with_plain_labels():
    fig = plots.scaling_sweep_figure(SWEEPS)
    fig.canvas.draw()
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_xticks(), [0.002, 0.004, 0.008])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.002", "0.004", "0.008"]
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels()]
    assert "0.2" in labels and "0.3" in labels and not any("10" in t for t in labels)


@pytest.mark.parametrize(("value", "label"), [(0.05, "0.05"), (0.1, "0.1"), (3.0, "3"),
                                              (0.04, ""), (0.07, ""), (0.0, ""), (-1.0, "")])
def test_log_axis_labels_only_leading_digits_1_2_3_5(value, label):
    from lora_lab.plots.nb03 import _nb03_sparse_label

    assert _nb03_sparse_label(value) == label


@pytest.mark.parametrize(("panels", "error", "message"), [
    ({}, ValueError, "at least one panel"),
    ({"p": {}}, ValueError, "has no curves"),
    ({"p": {"c": {}}}, ValueError, "non-empty dict"),
    ({"p": {"c": [0.1, 0.2]}}, ValueError, "non-empty dict"),
    ({"p": {"c": {0.001: 0.0}}}, ValueError, "log axis"),
    ({"p": {"c": {0.001: float("nan")}}}, ValueError, "log axis"),
    ({"p": {"c": {-0.001: 0.1}}}, ValueError, "learning rates"),
    ({"p": {"c": {"fast": 0.1}}}, TypeError, "numbers to numbers"),
    ({"p": [1, 2]}, TypeError, "panels must map"),
    ("sweeps", TypeError, "panels must map"),
])
def test_refuses_what_it_cannot_draw(panels, error, message):
    with pytest.raises(error, match=message):
        plots.scaling_sweep_figure(panels)
