"""Checks of the plain values users hand the tools (losses, metrics), shared by the monitors
and the tuning tools so that each refuses the same things with the same message."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["real_number"]


def real_number(value: Any, what: str) -> float:
    """``value`` as a float: a Python or NumPy real number, or a 0-d or one-element array of
    one (as a loss often is). Strings, bools and None are a ``TypeError`` naming ``what``;
    NaN and infinities pass (a diverged loss is data, not an error)."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
        return float(value.reshape(()))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)
