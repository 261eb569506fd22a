"""Figure helpers for the notebooks, one module per notebook (``nb01``, ``nb02``, ...).

Conventions: every function builds a ``matplotlib.figure.Figure`` directly (not
through ``pyplot``, so no global state leaks and nothing is shown twice) and
returns it; notebooks show it with ``display(fig)``. Nothing here calls
``plt.show``. Why: a figure returned is a figure a test can inspect.
"""

from . import nb01, nb02, nb03, nb04, nb05, nb06
from .nb01 import *  # noqa: F403
from .nb02 import *  # noqa: F403
from .nb03 import *  # noqa: F403
from .nb04 import *  # noqa: F403
from .nb05 import *  # noqa: F403
from .nb06 import *  # noqa: F403

__all__ = [name for module in (nb01, nb02, nb03, nb04, nb05, nb06) for name in module.__all__]
