"""Figure helpers for the notebooks.

Conventions: every function builds a ``matplotlib.figure.Figure`` directly (not
through ``pyplot``, so no global state leaks and nothing is shown twice) and
returns it; notebooks show it with ``display(fig)``. Nothing here calls
``plt.show``. Why: a figure returned is a figure a test can inspect.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- notebook 01

# --------------------------------------------------------------------------- notebook 02
