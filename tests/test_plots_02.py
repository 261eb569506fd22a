"""Figure helpers of notebook 02 draw what they are given, and refuse what they cannot draw."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lora_lab import plots


def test_loss_curves_one_panel_per_entry_with_shared_log_axis():
    panels = {"left": {"a": [1.0, 0.5, 0.25], "b": [2.0, 1.0]}, "right": {"c": [0.3, 0.1]}}
    fig = plots.loss_curves_figure(panels, suptitle="title")
    assert isinstance(fig, Figure)
    left, right = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["left", "right"]
    assert left.get_yscale() == right.get_yscale() == "log"
    assert [line.get_label() for line in left.get_lines()] == ["a", "b"]
    np.testing.assert_array_equal(left.get_lines()[0].get_ydata(), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(left.get_lines()[0].get_xdata(), [0, 1, 2])
    assert left.get_ylabel() == "MSE loss" and left.get_xlabel() == "step"
    assert fig.get_suptitle() == "title"


def test_loss_curves_can_give_each_panel_its_own_y_axis():
    panels = {"big": {"a": [10.0, 1.0]}, "small": {"b": [1e-3, 1e-4]}}
    left, right = plots.loss_curves_figure(panels, sharey=False).axes
    assert left.get_ylim() != right.get_ylim()
    assert right.get_ylim()[1] < 1e-2 < left.get_ylim()[0]
    shared_left, shared_right = plots.loss_curves_figure(panels).axes
    assert shared_left.get_ylim() == shared_right.get_ylim()


def test_loss_curves_floor_is_a_labelled_horizontal_line():
    fig = plots.loss_curves_figure({"p": {"loss": [1.0, 0.1]}}, floors={"p": (0.05, "floor")})
    ax = fig.axes[0]
    floor = [line for line in ax.get_lines() if line.get_label() == "floor"]
    assert len(floor) == 1
    np.testing.assert_array_equal(floor[0].get_ydata(), [0.05, 0.05])
    assert "floor" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_loss_curves_linear_axis_accepts_zero():
    fig = plots.loss_curves_figure({"p": {"loss": [1.0, 0.0]}}, logy=False)
    assert fig.axes[0].get_yscale() == "linear"


@pytest.mark.parametrize(("panels", "kwargs", "message"), [
    ({}, {}, "at least one panel"),
    ({"p": {}}, {}, "has no curves"),
    ({"p": {"a": []}}, {}, "must not be empty"),
    ({"p": {"a": [[1.0, 2.0]]}}, {}, "must be 1-D"),
    ({"p": {"a": [1.0, np.nan]}}, {}, "NaN or inf"),
    ({"p": {"a": [1.0, 0.0]}}, {}, "log axis"),
    ({"p": {"a": [1.0]}}, {"floors": {"q": (0.1, "x")}}, "do not exist"),
    ({"p": {"a": [1.0]}}, {"floors": {"p": (0.0, "x")}}, "must be > 0"),
])
def test_loss_curves_reject_what_they_cannot_draw(panels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.loss_curves_figure(panels, **kwargs)


def test_singular_values_figure_places_value_i_at_position_i_plus_1():
    fig = plots.singular_values_figure({"x": [3.0, 2.0, 1.0], "y": [3.0, 2.0]}, title="sv")
    ax = fig.axes[0]
    assert ax.get_title() == "sv"
    x_line, y_line = ax.get_lines()
    np.testing.assert_array_equal(x_line.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(y_line.get_ydata(), [3.0, 2.0])
    assert x_line.get_marker() != y_line.get_marker()
    assert list(ax.get_xticks()) == [1, 2, 3]


def test_singular_values_figure_rejects_empty_input():
    with pytest.raises(ValueError, match="at least one entry"):
        plots.singular_values_figure({})
    with pytest.raises(ValueError, match="must not be empty"):
        plots.singular_values_figure({"x": []})


def test_wrongly_shaped_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="panels must map"):
        plots.loss_curves_figure({"a": [1.0, 2.0]})
    with pytest.raises(TypeError, match="curve 'x'"):
        plots.singular_values_figure({"x": "abc"})
    with pytest.raises(TypeError, match="spectra must map"):
        plots.singular_values_figure([1.0, 2.0])


def test_loss_curves_label_every_y_axis_that_has_its_own_scale():
    panels = {"big": {"a": [10.0, 1.0]}, "small": {"b": [1e-3, 1e-4]}}
    left, right = plots.loss_curves_figure(panels, sharey=False, ylabel="loss").axes
    assert left.get_ylabel() == right.get_ylabel() == "loss"
    shared_left, shared_right = plots.loss_curves_figure(panels, ylabel="loss").axes
    assert shared_left.get_ylabel() == "loss" and shared_right.get_ylabel() == ""
    assert all(ax.get_xlabel() == "step" for ax in (left, right, shared_left, shared_right))


def test_singular_values_figure_labels_its_axes_as_index_and_value():
    ax = plots.singular_values_figure({"x": [2.0, 1.0]}).axes[0]
    assert ax.get_xlabel() == "index i" and ax.get_ylabel() == "singular value"
