"""Shared pytest set-up: single-threaded, seeded, so every run gives the same numbers.

Thread count changes float results (summation order), so unit tests and the
notebook kernels that ``pytest --nbval`` starts (which inherit this
environment) all run on one thread.
"""

from __future__ import annotations

import os
import random

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
