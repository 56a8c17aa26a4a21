"""B0 directions: one value type, one validation, and the map between world and array axes.

A B0 direction travels through the engine as a :class:`B0Direction` (3 finite numbers, not all
zero), never as text: the widgets turn what is typed into one with :func:`parse_b0_text`, and
:func:`b0_direction_problem` says in one sentence why a value is not a direction.

The dipole kernel (:mod:`napari_fanet.physics.dipole`) takes B0 in array axes; scanners and
``meta.json`` give it in world axes. numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from napari_fanet.io.formatting import format_numbers

__all__ = [
    "B0Direction",
    "array_to_world_direction",
    "b0_direction_problem",
    "parse_b0_text",
    "parse_numbers",
    "world_to_array_direction",
]

#: How a B0 direction is typed; shown in the message when text is not numbers.
B0_TEXT_EXAMPLE = "0, 0, 1"


class B0Direction(tuple):
    """The main-field (B0) direction: 3 finite floats, not all zero (not normalised).

    A tuple, so it goes wherever a sequence of 3 floats is expected (numpy, the dipole
    kernel, JSON); building one is the validation.

    Parameters
    ----------
    values : iterable of 3 real numbers
        The direction's components, in whatever axes the caller states (array or world).

    Raises
    ------
    ValueError
        When ``values`` are not 3 finite numbers, not all zero; the message shows what arrived.

    Examples
    --------
    >>> B0Direction((0, 0, 2)).unit()
    (0.0, 0.0, 1.0)
    """

    __slots__ = ()

    def __new__(cls, values: Iterable[float]) -> B0Direction:
        """Validate ``values`` and keep them as 3 floats."""
        if values is None or isinstance(values, (str, bytes)):  # text: parse_b0_text
            raise ValueError(f"B0 direction must be 3 numbers; got {values!r}")
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"B0 direction must be 3 numbers; got {values!r}") from None
        shown = format_numbers(array.ravel())
        if array.shape != (3,):
            raise ValueError(f"B0 direction must be 3 numbers; got {array.size}: {shown}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"B0 direction must be 3 finite numbers; got {shown}")
        if not np.linalg.norm(array) > 0:
            raise ValueError(f"B0 direction must be 3 numbers, not all zero; got {shown}")
        return super().__new__(cls, (float(v) for v in array))

    def __repr__(self) -> str:
        return f"B0Direction({tuple(self)!r})"

    def unit(self) -> tuple[float, float, float]:
        """The direction scaled to length 1."""
        array = np.asarray(self, dtype=np.float64)
        return tuple(float(v) for v in array / np.linalg.norm(array))


def parse_numbers(text: str) -> tuple[float, ...]:
    """Numbers typed in a field, separated by commas and/or spaces (``"4, 8 12"``).

    Raises
    ------
    ValueError
        When a part is not a number (the caller words the message for its field).
    """
    return tuple(float(c) for c in str(text).replace(",", " ").split())


def parse_b0_text(text: str) -> B0Direction:
    """The :class:`B0Direction` typed as ``"0, 0, 1"`` or ``"0 0 1"``.

    Raises
    ------
    ValueError
        When the text is not 3 numbers, or they are not finite or all zero; the message echoes
        the text (``B0 direction must be 3 numbers such as '0, 0, 1'; got 'up'``).
    """
    try:
        numbers = parse_numbers(text)
    except ValueError:
        raise ValueError(
            f"B0 direction must be 3 numbers such as {B0_TEXT_EXAMPLE!r}; got {text!r}"
        ) from None
    return B0Direction(numbers)


def b0_direction_problem(b0_dir: Any) -> str | None:
    """Why ``b0_dir`` (numbers, or text as typed) is not a B0 direction; None when it is one."""
    try:
        parse_b0_text(b0_dir) if isinstance(b0_dir, str) else B0Direction(b0_dir)
    except ValueError as exc:
        return str(exc)
    return None


def _unit_columns(affine: Any) -> Any:
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    return linear / np.linalg.norm(linear, axis=0)


def world_to_array_direction(direction: Sequence[float], affine: Any) -> Any:
    """A world (scanner, mm) direction in the array axes of the grid ``affine``, as a unit vector.

    Only the rotation and flips of the affine matter (its columns are normalised), so the result
    is right for anisotropic voxels: it is the direction the dipole kernel expects.
    """
    out = np.linalg.solve(_unit_columns(affine), np.asarray(direction, dtype=np.float64))
    return out / np.linalg.norm(out)


def array_to_world_direction(direction: Sequence[float], affine: Any) -> Any:
    """Inverse of :func:`world_to_array_direction`."""
    out = _unit_columns(affine) @ np.asarray(direction, dtype=np.float64)
    return out / np.linalg.norm(out)
