"""Argument checks shared by every public function.

Why: a learner who passes the wrong thing should read *which* argument was
wrong and what is allowed, not a shape error from deep inside NumPy or torch.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking its type and range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be between {minimum if minimum is not None else '-inf'} "
                         f"and {maximum}, got {value}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a ``bool`` (not merely truthy), else ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_real(value: Any, name: str, *, positive: bool = False,
               low: float | None = None, high_exclusive: float | None = None) -> float:
    """Return ``value`` as a finite ``float`` after checking its type and range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if low is not None and high_exclusive is not None and not low <= value < high_exclusive:
        raise ValueError(f"{name} must be in [{low}, {high_exclusive}), got {value}")
    return value


def as_array(value: Any, name: str, *, ndim: int | tuple[int, ...],
             finite: bool = True) -> np.ndarray:
    """Return ``value`` as a float NumPy array with ``ndim`` dimensions.

    Rejects non-numeric input with ``TypeError`` and wrong dimensionality or
    NaN/inf entries (which would silently poison every result) with ``ValueError``.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a NumPy array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like of numbers: {exc}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        wanted = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {wanted}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if array.dtype.kind in "biu" or array.dtype not in (np.float32, np.float64):
        # ints, bools, float16 and long double: NumPy's linear algebra wants float32/64
        array = array.astype(np.float64)
    if finite and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def as_matrix(value: Any, name: str) -> np.ndarray:
    """Shorthand for a finite 2-D float array."""
    return as_array(value, name, ndim=2)
