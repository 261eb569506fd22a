"""Self-checks for the exercises: ``check_*(answer)`` prints a friendly verdict.

One module per notebook (``nb01``, ``nb02``, ...) over a shared core (``_core``):
each checker calls the learner's function on a few cases, compares the result with
the verified ``lora_lab`` implementation at a tolerance that follows the dtype the
learner computed in, and prints either a pass or the first problem found with a
hint that names the usual mistake. It returns ``True`` or ``False`` so tests (and
curious learners) can use the verdict too. ``from lora_lab import checks`` gives every
notebook's checkers: ``checks.check_<name>(answer)``.
"""

from . import nb01, nb02, nb03, nb04, nb05, nb06
from .nb01 import *  # noqa: F403
from .nb02 import *  # noqa: F403
from .nb03 import *  # noqa: F403
from .nb04 import *  # noqa: F403
from .nb05 import *  # noqa: F403
from .nb06 import *  # noqa: F403

__all__ = [name for module in (nb01, nb02, nb03, nb04, nb05, nb06) for name in module.__all__]
