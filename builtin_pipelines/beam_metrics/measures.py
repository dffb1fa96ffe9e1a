"""CamServer's profile measures: full width, good region, slices and x/y coupling (§8.3).

The scans CamServer writes as Python loops over pixels are vectorised here, with their quirks
kept: index 0 is never tested, the good-region end is exclusive, a flat profile has a nan full
width. Scalars keep the numpy types CamServer's own arithmetic gives them, so the rounding is the
same (a float32 profile measures its full width in float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from . import native as _native
from .fit import gauss_parameters, linear_fit

__all__ = [
    "Slice",
    "calculate_slices",
    "coupling",
    "find_index",
    "full_width",
    "good_region",
    "x_slices",
    "y_slices",
]


def full_width(x: np.ndarray, y: np.ndarray, threshold: Any = 0.5) -> float:
    """Full width of the profile ``y`` at ``threshold`` of its height, interpolated (get_fw).

    Returns:
        The width in axis units; nan for a flat profile (0/0), 0.0 when CamServer's version
        raises (an empty or one-point profile).
    """
    with np.errstate(all="ignore"):
        try:
            return float(_full_width(x, y, threshold))
        except Exception:  # CamServer's bare except: any failure is a width of 0
            return 0.0


def _full_width(x: np.ndarray, y: np.ndarray, threshold: Any) -> Any:
    n = len(y)
    ymax, ymin = np.amax(y), np.amin(y)
    hm = (ymax - ymin) * threshold
    level = ymin + hm
    peak = int(np.argmax(y))
    low = (y - ymin) <= hm
    # Left: the first i in peak-1 .. 1 (index 0 never tested) at or below the level, else 0.
    hits = np.flatnonzero(low[1:peak])
    left = int(hits[-1]) + 1 if hits.size else 0
    # Right: the first i in peak+1 .. n-1, else n-1.
    hits = np.flatnonzero(low[peak + 1 :])
    right = peak + 1 + int(hits[0]) if hits.size else n - 1
    slope_left = (y[left + 1] - y[left]) / (x[left + 1] - x[left])
    slope_right = (y[right] - y[right - 1]) / (x[right] - x[right - 1])
    return abs(
        (x[right] + (level - y[right]) / slope_right) - (x[left] + (level - y[left]) / slope_left)
    )


def good_region(profile: np.ndarray, threshold: Any = 0.3, gfscale: Any = 1.8) -> tuple[int, int]:
    """Start and (exclusive) end of the good region of a profile (get_good_region_profile).

    From the first maximum, scan each way for the first value under
    ``min + (max - min) * threshold`` (going left, index 0 is never tested), widen the span by
    ``gfscale``, clamp it to ``[0, n - 1]`` and truncate.
    """
    n = profile.shape[0]
    profile_min = profile.min()
    level = (profile.max() - profile_min) * threshold + profile_min
    peak = int(profile.argmax())
    below = profile < level
    hits = np.flatnonzero(below[1 : peak + 1])
    start = int(hits[-1]) + 1 if hits.size else peak
    hits = np.flatnonzero(below[peak:])
    end = peak + int(hits[0]) if hits.size else peak
    extend = (end - start) * gfscale - (end - start)
    start_f = start - extend / 2
    end_f = end + extend / 2
    start_f = start_f if start_f > 0 else 0
    end_f = end_f if end_f < n - 1 else n - 1
    return int(start_f), int(end_f)


def find_index(axis: np.ndarray, value: Any) -> int:
    """Index of the axis point at or just before ``value`` (ascending or descending axis).

    Raises:
        IndexError: for an axis of fewer than 2 points.
    """
    if axis[0] > axis[1]:  # descending, as calibrated axes are
        if value > axis[0]:
            return 0
        if value < axis[-1]:
            return len(axis) - 1
        return int(np.searchsorted(-axis, -value))
    if value < axis[0]:
        return 0
    if value > axis[-1]:
        return len(axis) - 1
    index = int(np.searchsorted(axis, value))
    if index < len(axis) and axis[index] == value:
        return index
    return index - 1


def calculate_slices(
    axis: np.ndarray, center: Any, standard_deviation: Any, scale: Any, number_of_slices: int
) -> tuple[list[int], int, Any]:
    """Slice boundaries around ``center``: ``(boundaries, half_width, slice_length)``.

    Band k covers ``[boundaries[k], boundaries[k + 1])``, 2 * half_width indices. Without room
    for the middle slice there are no boundaries and the length is None.

    Raises:
        ValueError: for an even number of slices.
    """
    if number_of_slices % 2 == 0:
        raise ValueError("Number of slices must be odd.")
    size = scale * standard_deviation / number_of_slices
    index_center = find_index(axis, center)
    half = max(abs(find_index(axis, center + size / 2) - index_center), 1)
    start, end = index_center - half, index_center + half
    n = len(axis)
    if start < 0 or end >= n:
        return [], half, None
    boundaries = [start, end]
    length = abs(axis[start] - axis[end])
    remaining = number_of_slices - 1
    while remaining > 0:
        start -= 2 * half
        end += 2 * half
        if start < 0 or end >= n:
            break
        boundaries.insert(0, start)
        boundaries.append(end)
        remaining -= 2
    return boundaries, half, length


@dataclass(frozen=True, slots=True)
class Slice:
    """One slice: its centre, the fitted sd across it and its intensity."""

    center_x: np.float64
    center_y: np.float64
    standard_deviation: np.float64
    intensity: np.float64


def x_slices(
    region: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    center: Any,
    standard_deviation: Any,
    scale: Any,
    number_of_slices: int,
    native: Any = _native.DEFAULT,
) -> tuple[list[Slice], Any]:
    """Bands of region columns around the x fit; each band's row sums fitted along y.

    Returns:
        The slices, left to right, and the slice length (None without a middle slice).
    """
    boundaries, half, length = calculate_slices(
        x_axis, center, standard_deviation, scale, number_of_slices
    )
    native = _native.kernels() if native is _native.DEFAULT else native
    slices = []
    for a, b in pairwise(boundaries):
        profile, intensity = _band(region[:, a:b], 1, native)
        _, _, mean, sd = gauss_parameters(profile, y_axis, native)
        slices.append(Slice(np.float64(x_axis[a + half]), mean, sd, intensity))
    return slices, length


def y_slices(
    region: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    center: Any,
    standard_deviation: Any,
    scale: Any,
    number_of_slices: int,
    native: Any = _native.DEFAULT,
) -> tuple[list[Slice], Any]:
    """Bands of region rows around the y fit; each band's column sums fitted along x.

    Returns:
        The slices, top to bottom in index order, and the slice length (None without a middle
        slice).
    """
    boundaries, half, length = calculate_slices(
        y_axis, center, standard_deviation, scale, number_of_slices
    )
    native = _native.kernels() if native is _native.DEFAULT else native
    slices = []
    for a, b in pairwise(boundaries):
        profile, intensity = _band(region[a:b, :], 0, native)
        _, _, mean, sd = gauss_parameters(profile, x_axis, native)
        slices.append(Slice(mean, np.float64(y_axis[a + half]), sd, intensity))
    return slices, length


def _band(band: np.ndarray, axis: int, native: Any) -> tuple[np.ndarray, np.float64]:
    """The band's profile along ``axis`` and its intensity, ``float(band.sum())``."""
    if band.dtype.kind in "iu":  # integer sums are exact in any order: the one-pass kernel
        profiles = _native.profiles(band, native)
        profile = profiles.x if axis == 0 else profiles.y
        return profile, np.float64(float(profile.sum()))
    return band.sum(axis), np.float64(float(band.sum()))


def coupling(
    slices: list[Slice], standard_deviation: Any, native: Any = _native.DEFAULT
) -> tuple[Any, Any, Any]:
    """x/y coupling from the slice centres: ``(slope * sd**2, slope, offset)``.

    Raises:
        TypeError, ValueError: with fewer than 2 slices, or non-finite centres.
    """
    slope, offset = linear_fit(
        [float(s.center_x) for s in slices], [float(s.center_y) for s in slices], native
    )
    return slope * (standard_deviation**2), slope, offset
