"""Numbers in user messages: plain text, never a numpy repr such as ``np.float64(2.0)`` (private).

``repr`` of a tuple of numpy scalars shows ``(np.float64(2.0), ...)`` with numpy 2; messages use
these helpers instead, so a voxel size reads ``(2, 2, 2)`` whatever type holds it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["format_number", "format_numbers"]


def format_number(value: Any, digits: int = 4) -> str:
    """``value`` as plain text with ``digits`` significant digits (``2.0`` -> ``"2"``).

    Anything that is not a real number (text, None, a list...) is shown with ``repr``, so a
    message still echoes what arrived.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return repr(value)
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return str(number)  # "nan", "inf", "-inf"
    return f"{number:.{digits}g}"


def format_numbers(values: Iterable[Any], digits: int = 4) -> str:
    """A sequence of numbers as ``"(2, 2, 2.5)"`` (each with :func:`format_number`).

    A value that is not a sequence (text, a single number) is shown with :func:`format_number`.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return format_number(values, digits)
    return "(" + ", ".join(format_number(v, digits) for v in values) + ")"
