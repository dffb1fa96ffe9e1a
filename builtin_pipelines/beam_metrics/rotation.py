"""The ``rotation`` key: how CamServer reads it, and what it does to the image and the axes.

A number is an angle in degrees, normalised to ``{angle, order: 1, mode: "0.0"}``; a zero or
missing angle disables the rotation. Mode ``"ortho"`` turns by ``int(angle/90)`` quarter turns
with ``rot90``, and the axes turn with the image. Any other mode goes to
``scipy.ndimage.rotate(reshape=False, prefilter=True)``: a numeric mode is ``mode="constant"``
with that fill value, a name is scipy's boundary mode; the axes stay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.ndimage

__all__ = ["Rotation", "normalise", "parse_rotation", "rotate", "turn_axes"]

_DEFAULTS: Mapping[str, Any] = MappingProxyType({"angle": None, "order": 1, "mode": "0.0"})
# scipy.ndimage's boundary modes: any other non-numeric mode is refused at configure time.
_SCIPY_MODES = frozenset(
    (
        "reflect",
        "grid-mirror",
        "constant",
        "grid-constant",
        "nearest",
        "mirror",
        "grid-wrap",
        "wrap",
    )
)


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation of the image: ``rot90`` (mode ortho) or ``scipy.ndimage.rotate``."""

    angle: float
    order: int = 1
    mode: str = "constant"  # "ortho" or a scipy boundary mode
    cval: float = 0.0

    @property
    def ortho(self) -> bool:
        """True for quarter turns with ``rot90``, which also turn the axes."""
        return self.mode == "ortho"

    @property
    def quarter_turns(self) -> int:
        """``int(angle / 90)``: CamServer's number of ``rot90`` turns (it truncates)."""
        return int(self.angle / 90)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def normalise(value: Any) -> dict[str, Any] | None:
    """CamServer's normalised form: ``{angle, order, mode}`` with defaults, or None if disabled.

    Raises:
        ValueError: ``value`` is neither a number nor an object with keys angle, order, mode;
            the message quotes it.
    """
    if value is None:
        return None
    if _is_number(value):
        value = {"angle": value}
    if not isinstance(value, Mapping):
        raise ValueError(
            "rotation must be a number (degrees) or an object with keys angle, order, mode, "
            f"got {value!r}"
        )
    section = dict(_DEFAULTS)
    for key, item in value.items():
        if key not in _DEFAULTS:
            raise ValueError(
                f"rotation has an unknown key {key!r} (allowed: angle, order, mode), got {value!r}"
            )
        if item is not None:
            section[key] = item
    return section if section["angle"] else None


def parse_rotation(value: Any) -> Rotation | None:
    """The rotation ``value`` configures, or None.

    Raises:
        ValueError: a bad angle, order (0 to 5) or mode; the message quotes it.
    """
    section = normalise(value)
    if section is None:
        return None
    angle, order, mode = section["angle"], section["order"], section["mode"]
    if not _is_number(angle):
        raise ValueError(f"rotation angle must be a finite number, got {angle!r}")
    if not isinstance(order, Integral) or isinstance(order, bool) or not 0 <= int(order) <= 5:
        raise ValueError(f"rotation order must be an integer from 0 to 5, got {order!r}")
    if mode == "ortho" or mode in _SCIPY_MODES:
        return Rotation(float(angle), int(order), mode)
    try:
        cval = float(mode)  # CamServer: a numeric mode is the constant fill value
    except (TypeError, ValueError):
        modes = ", ".join(sorted(_SCIPY_MODES))
        raise ValueError(
            f'rotation mode must be "ortho", a number (the fill value) or one of {modes}, '
            f"got {mode!r}"
        ) from None
    return Rotation(float(angle), int(order), "constant", cval)


def turn_axes(
    x_axis: np.ndarray, y_axis: np.ndarray, rotation: Rotation
) -> tuple[np.ndarray, np.ndarray]:
    """The axes after ``rot90`` by ``rotation``'s quarter turns (CamServer's table, §8.1.3)."""
    turns = rotation.quarter_turns % 4
    if turns == 1:
        return y_axis, x_axis[::-1]
    if turns == 2:
        return x_axis[::-1], y_axis[::-1]
    if turns == 3:
        return y_axis[::-1], x_axis
    return x_axis, y_axis


def rotate(image: np.ndarray, rotation: Rotation) -> tuple[np.ndarray, bool]:
    """The rotated image, and whether it is a new array (True) or a view of ``image``."""
    if rotation.ortho:
        return np.rot90(image, rotation.quarter_turns), False
    rotated = scipy.ndimage.rotate(
        image,
        rotation.angle,
        reshape=False,
        order=rotation.order,
        mode=rotation.mode,
        cval=rotation.cval,
        prefilter=True,
    )
    return rotated, True
