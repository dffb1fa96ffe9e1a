"""CamServer's camera-side geometry: binning, mirroring, rotation, ROI and the camera axes.

Shared by the camera sources. Every key is optional (``None`` means the default):

=====================  ========  ===========================================================
key                    default   meaning
=====================  ========  ===========================================================
binning_x, binning_y   1, 1      block size; the image is cropped to whole blocks, then
                                 block-summed, clipped to 0..65535 and cast to uint16
binning_mean           False     block mean (cast to uint16) instead of the clipped sum
mirror_x, mirror_y     False     ``fliplr`` / ``flipud``
rotate                 0         ``rot90`` quarter turns (counter-clockwise; taken mod 4)
roi                    None      ``[offset_x, size_x, offset_y, size_y]``, cut last
camera_calibration     None      ``{reference_marker: [ulx, uly, lrx, lry],
                                 reference_marker_width, reference_marker_height,
                                 angle_horizontal, angle_vertical}`` (degrees); missing
                                 keys take CamServer's defaults ([0, 0, 100, 100], 100.0,
                                 100.0, 0.0, 0.0); an empty object means no calibration
=====================  ========  ===========================================================

The image goes through CamServer's order (camserver.md §8.1.1, without the camera background):
binning, mirror_x, mirror_y, rotation, ROI, then one copy to make it C-contiguous when a step
left a view. With nothing configured the frame passes through untouched (no copy).

The axes (§8.1.2) are float32 over the image after binning and rotation, then cut by the ROI
like the image: the pixel index ``linspace(0, w - 1, w)`` without calibration, else
``(index - origin) * -pixel_size`` with ``origin_x = int((lrx - ulx) / 2 + ulx)`` and
``pixel_size_x = reference_marker_width / (lrx - ulx) * cos(angle_horizontal)`` (y alike): the
calibrated axis is inverted. When either pixel size cannot be computed (a marker of zero
width or height) both are 1.0, as in CamServer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["KEYS", "CameraGeometry", "geometry_key"]

KEYS = ("binning_x", "binning_y", "binning_mean", "mirror_x", "mirror_y", "rotate", "roi",
        "camera_calibration")  # fmt: skip
_CALIBRATION_DEFAULTS: dict[str, Any] = {
    "reference_marker": [0, 0, 100, 100],
    "reference_marker_width": 100.0,
    "reference_marker_height": 100.0,
    "angle_horizontal": 0.0,
    "angle_vertical": 0.0,
}


def geometry_key(parameters: Mapping[str, Any]) -> str:
    """A cheap snapshot of the geometry keys: rebuild the geometry when it changes."""
    return repr([parameters.get(key) for key in KEYS])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _calibration(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"camera_calibration must be an object, got {value!r}")
    if not value:  # CamServer: a falsy calibration is no calibration
        return None
    unknown = sorted(set(value) - set(_CALIBRATION_DEFAULTS))
    if unknown:
        raise ValueError(
            f"camera_calibration has unknown key(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(_CALIBRATION_DEFAULTS)})"
        )
    calibration = {**_CALIBRATION_DEFAULTS, **value}
    marker = calibration["reference_marker"]
    if not isinstance(marker, list | tuple) or len(marker) != 4 or not all(map(_is_number, marker)):
        raise ValueError(
            "camera_calibration.reference_marker must be 4 numbers [ulx, uly, lrx, lry], "
            f"got {marker!r}"
        )
    for key in ("reference_marker_width", "reference_marker_height", "angle_horizontal",
                "angle_vertical"):  # fmt: skip
        if not _is_number(calibration[key]):
            raise ValueError(f"camera_calibration.{key} must be a number, got {calibration[key]!r}")
    return calibration


def _pixel_size(calibration: Mapping[str, Any]) -> tuple[Any, Any]:
    # CamServer's arithmetic, numpy scalars included, so the float32 axes match it bit for bit.
    ulx, uly, lrx, lry = calibration["reference_marker"]
    try:
        size_y = calibration["reference_marker_height"] / (lry - uly)
        size_y *= np.cos(calibration["angle_vertical"] * np.pi / 180)
        size_x = calibration["reference_marker_width"] / (lrx - ulx)
        size_x *= np.cos(calibration["angle_horizontal"] * np.pi / 180)
    except ZeroDivisionError:
        return 1.0, 1.0
    return size_x, size_y


def _axis(n: int, origin: int | None, pixel_size: Any) -> np.ndarray:
    axis = np.linspace(0, n - 1, n, dtype="f")
    if origin is not None:
        axis -= origin
        axis *= -pixel_size  # the calibrated axis is inverted
    axis.flags.writeable = False  # shared by every frame of this size
    return axis


class CameraGeometry:
    """One validated set of geometry options; :meth:`apply` it to frames, ask it for axes."""

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        """Validate the geometry keys of ``parameters``.

        Raises:
            ValueError: a key has a bad value; the message quotes it.
        """

        def get(key: str, default: Any) -> Any:
            value = parameters.get(key)
            return default if value is None else value

        for key in ("binning_mean", "mirror_x", "mirror_y"):
            if not isinstance(get(key, False), bool):
                raise ValueError(f"{key} must be true or false, got {parameters[key]!r}")
        for key in ("binning_x", "binning_y"):
            if not _is_int(get(key, 1)) or get(key, 1) < 1:
                raise ValueError(f"{key} must be a positive integer, got {parameters[key]!r}")
        if not _is_int(get("rotate", 0)):
            rotate = parameters["rotate"]
            raise ValueError(f"rotate must be a whole number of quarter turns, got {rotate!r}")
        roi = parameters.get("roi")
        if roi is not None and not (
            isinstance(roi, list | tuple) and len(roi) == 4 and all(map(_is_int, roi))
            and roi[0] >= 0 and roi[2] >= 0 and roi[1] > 0 and roi[3] > 0
        ):  # fmt: skip
            raise ValueError(
                "roi must be [offset_x, size_x, offset_y, size_y], integers with offsets >= 0 "
                f"and sizes > 0, got {roi!r}"
            )
        self.binning = (get("binning_x", 1), get("binning_y", 1))
        self.binning_mean: bool = get("binning_mean", False)
        self.mirror_x: bool = get("mirror_x", False)
        self.mirror_y: bool = get("mirror_y", False)
        self.rotate: int = get("rotate", 0) % 4
        self.roi: tuple[int, int, int, int] | None = None if roi is None else tuple(roi)
        self.calibration = _calibration(parameters.get("camera_calibration"))
        self.identity = (
            self.binning == (1, 1) and not self.mirror_x and not self.mirror_y
            and not self.rotate and self.roi is None
        )  # fmt: skip
        self._axes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the output for an input of this size.

        Raises:
            ValueError: binning or the ROI leave no pixel of such an image.
        """
        x_axis, y_axis = self.axes(width, height)
        return len(x_axis), len(y_axis)

    def axes(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The read-only float32 ``(x_axis, y_axis)`` for an input of this size (cached).

        Raises:
            ValueError: binning or the ROI leave no pixel of such an image.
        """
        cached = self._axes.get((width, height))
        if cached is not None:
            return cached
        binned = width // self.binning[0], height // self.binning[1]
        out_width, out_height = binned[::-1] if self.rotate % 2 else binned
        if self.calibration is None:
            x_axis, y_axis = _axis(out_width, None, 1.0), _axis(out_height, None, 1.0)
        else:
            ulx, uly, lrx, lry = self.calibration["reference_marker"]
            size_x, size_y = _pixel_size(self.calibration)
            x_axis = _axis(out_width, int((lrx - ulx) / 2 + ulx), size_x)
            y_axis = _axis(out_height, int((lry - uly) / 2 + uly), size_y)
        if self.roi is not None:
            offset_x, size_x, offset_y, size_y = self.roi
            x_axis = x_axis[offset_x : offset_x + size_x]
            y_axis = y_axis[offset_y : offset_y + size_y]
        if not len(x_axis) or not len(y_axis):
            raise ValueError(self._nothing_left(width, height))
        if len(self._axes) >= 8:  # a camera flapping between sizes must not grow it forever
            self._axes.clear()
        self._axes[(width, height)] = x_axis, y_axis
        return x_axis, y_axis

    def _nothing_left(self, width: int, height: int) -> str:
        return (
            f"binning_x {self.binning[0]}, binning_y {self.binning[1]}, rotate {self.rotate} "
            f"and roi {list(self.roi) if self.roi else None} leave no pixel of a "
            f"{width}x{height} image"
        )

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The frame in CamServer's camera-side order; ``image`` itself when nothing is set.

        Raises:
            ValueError: binning or the ROI leave no pixel of this image.
        """
        if self.identity:
            return image if image.flags.c_contiguous else np.ascontiguousarray(image)
        self.axes(image.shape[1], image.shape[0])  # raises when no pixel would be left
        if self.binning != (1, 1):
            image = _bin(image, *self.binning, self.binning_mean)
        if self.mirror_x:
            image = image[:, ::-1]
        if self.mirror_y:
            image = image[::-1]
        if self.rotate:
            image = np.rot90(image, self.rotate)
        if self.roi is not None:
            offset_x, size_x, offset_y, size_y = self.roi
            image = image[offset_y : offset_y + size_y, offset_x : offset_x + size_x]
        # Views (flips, rotation, ROI) are made contiguous with a single copy, here.
        return image if image.flags.c_contiguous else np.ascontiguousarray(image)


def _bin(image: np.ndarray, bin_x: int, bin_y: int, mean: bool) -> np.ndarray:
    """CamServer's ``binning()``: whole blocks only; clipped uint16 sum, or uint16 mean."""
    height, width = image.shape[0] // bin_y, image.shape[1] // bin_x
    blocks = image[: height * bin_y, : width * bin_x].reshape(height, bin_y, width, bin_x)
    if mean:
        means: np.ndarray = blocks.mean(axis=(1, 3))
        return means.astype(np.uint16)
    total: np.ndarray = blocks.sum(axis=(1, 3))
    np.clip(total, 0, 0xFFFF, out=total)
    return total.astype(np.uint16)
