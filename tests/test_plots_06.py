"""Figure helpers of notebook 06 draw what they are given, and refuse what they cannot draw."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lora_lab import plots


def test_training_curves_one_colour_per_variant_one_line_per_run() -> None:
    curves = {"q,v": [[5.0, 4.0, 3.0], [5.1, 3.9, 2.9]], "full": [np.array([5.0, 3.0, 2.0])]}
    fig = plots.training_curves_figure(curves, title="runs")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines[2].get_ydata(), [5.0, 3.0, 2.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["q,v", "full"]
    assert ax.get_title() == "runs" and "step" in ax.get_xlabel()


@pytest.mark.parametrize(("curves", "match"), [
    ({}, "at least one"),
    ([[1.0, 2.0]], "at least one"),
    ({"a": []}, "non-empty"),
    ({"a": "loss"}, "non-empty"),
    ({"a": [[1.0, np.nan]]}, "NaN"),
    ({"a": [[[1.0, 2.0]]]}, "1-D"),
])
def test_training_curves_rejects_what_it_cannot_draw(curves, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        plots.training_curves_figure(curves)


def test_target_comparison_dots_per_seed_and_base_lines() -> None:
    new = {"q,v": [2.5, 2.6], "all-linear": [2.1, 2.0], "full": [1.8, 1.9]}
    old = {"q,v": [2.8, 2.9], "all-linear": [2.3, 2.3], "full": [2.4, 2.4]}
    fig = plots.target_comparison_figure(new, old, base=(6.4, 1.5), titles=("code", "poetry"))
    left, right = fig.axes
    assert [left.get_title(), right.get_title()] == ["code", "poetry"]
    assert [t.get_text() for t in left.get_xticklabels()] == ["q,v", "all-linear", "full"]
    dots = [line for line in right.get_lines() if line.get_linestyle() == "None"]
    np.testing.assert_array_equal(dots[0].get_xdata(), [0, 0])
    np.testing.assert_array_equal(dots[0].get_ydata(), [2.8, 2.9])
    base = [line for line in right.get_lines() if line.get_label() == "base model"]
    assert base and base[0].get_ydata()[0] == 1.5                     # near the dots: a line
    assert not [line for line in left.get_lines() if line.get_label() == "base model"]
    assert [t.get_text() for t in left.texts] == ["base model: 6.40 (above the chart)"]
    assert left.get_ylim()[1] < 3                                       # the dots keep the scale


@pytest.mark.parametrize(("new", "old", "base", "match"), [
    ({"a": [1.0]}, {"b": [1.0]}, (1.0, 1.0), "same variants"),
    ({"a": [1.0], "b": [2.0]}, {"b": [2.0], "a": [1.0]}, (1.0, 1.0), "same order"),
    ({}, {}, (1.0, 1.0), "at least one"),
    ({"a": [1.0]}, {"a": [1.0]}, (1.0,), "two finite"),
    ({"a": [1.0]}, {"a": [1.0]}, (1.0, float("inf")), "two finite"),
    ({"a": [np.inf]}, {"a": [1.0]}, (1.0, 1.0), "NaN or inf"),
])
def test_target_comparison_rejects_what_it_cannot_draw(new, old, base, match) -> None:
    with pytest.raises(ValueError, match=match):
        plots.target_comparison_figure(new, old, base=base)


POINTS = {"lora": {0.01: [(2.5, 3.0), (2.7, 3.2)], 0.02: [(2.2, 3.5), (2.4, 3.7)]},
          "full": {0.001: [(2.0, 2.2)], 0.002: [(1.8, 2.6)], 0.004: [(2.1, 3.0)]}}


def test_learning_forgetting_one_curve_per_variant_through_the_seed_means() -> None:
    fig = plots.learning_forgetting_figure(POINTS, chosen={"lora": 0.02, "full": 0.002},
                                           labels=("code", "poetry"))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if line.get_label() in POINTS]
    assert [line.get_label() for line in curves] == ["lora", "full"]
    np.testing.assert_allclose(curves[0].get_xdata(), [2.6, 2.3])          # means, lr order
    np.testing.assert_allclose(curves[0].get_ydata(), [3.1, 3.6])
    np.testing.assert_allclose(curves[1].get_xdata(), [2.0, 1.8, 2.1])
    rings = [line for line in ax.get_lines() if line.get_markersize() == 13]
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in rings] == [(2.3, 3.6),
                                                                              (1.8, 2.6)]
    seeds = [line for line in ax.get_lines() if line.get_markersize() == 5
             and line.get_linestyle() == "None"]
    assert sum(len(line.get_xdata()) for line in seeds) == 7                # every run a dot
    assert "code" in ax.get_xlabel() and "poetry" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts] == ["0.01", "0.02", "0.001", "0.004"]


@pytest.mark.parametrize(("points", "chosen", "match"), [
    ({}, None, "at least one"),
    ({"a": {}}, None, "learning rates"),
    ({"a": {0.0: [(1.0, 2.0)]}}, None, "> 0"),
    ({"a": {0.1: [(1.0, 2.0, 3.0)]}}, None, "shape"),
    ({"a": {0.1: [(1.0, np.nan)]}}, None, "NaN"),
    ({"a": {0.1: [(1.0, 2.0)]}}, {"a": 0.2}, "not a rate"),
    ({"a": {0.1: [(1.0, 2.0)]}}, {"b": 0.1}, "not a rate"),
])
def test_learning_forgetting_rejects_what_it_cannot_draw(points, chosen, match) -> None:
    with pytest.raises(ValueError, match=match):
        plots.learning_forgetting_figure(points, chosen=chosen)
