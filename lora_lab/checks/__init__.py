"""Self-checks for the exercises: ``check_*(answer)`` prints a friendly verdict.

One module per notebook (``nb01``, ``nb02``, ...) over a shared core (``_core``):
each checker calls the learner's function on a few cases, compares the result with
the verified ``lora_lab`` implementation at a tolerance that follows the dtype the
learner computed in, and prints either a pass or the first problem found with a
hint that names the usual mistake. It returns ``True`` or ``False`` so tests (and
curious learners) can use the verdict too. ``from lora_lab import checks;
checks.check_merge(...)`` works for every notebook's checkers.
"""

from .nb01 import check_break_even, check_energy_kept, check_low_rank_approx, check_relative_error
from .nb02 import check_lora_forward, check_lora_grads, check_merge, check_param_count

__all__ = [
    "check_break_even", "check_energy_kept", "check_lora_forward", "check_lora_grads",
    "check_low_rank_approx", "check_merge", "check_param_count", "check_relative_error",
]
