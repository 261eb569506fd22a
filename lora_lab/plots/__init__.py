"""Figure helpers for the notebooks, one module per notebook (``nb01``, ``nb02``, ...).

Conventions: every function builds a ``matplotlib.figure.Figure`` directly (not
through ``pyplot``, so no global state leaks and nothing is shown twice) and
returns it; notebooks show it with ``display(fig)``. Nothing here calls
``plt.show``. Why: a figure returned is a figure a test can inspect.
"""

from .nb01 import (
    eckart_young_figure,
    outer_products_figure,
    reconstructions_figure,
    spectrum_figure,
    storage_figure,
)
from .nb02 import loss_curves_figure, singular_values_figure

__all__ = [
    "eckart_young_figure", "loss_curves_figure", "outer_products_figure",
    "reconstructions_figure", "singular_values_figure", "spectrum_figure", "storage_figure",
]
