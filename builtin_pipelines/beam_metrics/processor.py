"""CamServer's standard processing of one pre-processed image (``process_image``, §8.2).

Thresholds, ROI, backgrounds and the other pre-processing steps happen before (``preprocess``).
Here: profiles, full widths, Gaussian fits with centre of mass and RMS, then the optional good
region and slices, emitted with CamServer's keys, in its order, with the dtypes the bsread
encoder must see (Python ints as int64, floats as float64, None for a missing value).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from . import native as _native
from .fit import GaussFit, gauss_fit
from .measures import coupling, full_width, good_region, x_slices, y_slices

__all__ = ["process"]

log = logging.getLogger("pipevisor.beam_metrics")

_FIT_KEYS = ("gauss_function", "offset", "amplitude", "standard_deviation", "mean")
_GOOD_REGION_KEYS = (
    "good_region",
    "gr_x_axis",
    "gr_y_axis",
    "gr_x_profile",
    "gr_y_profile",
    *(f"gr_{a}_fit_{k}" for a in "xy" for k in _FIT_KEYS),
    "gr_intensity",
)
_SLICE_KEYS = ("center_x", "center_y", "standard_deviation", "intensity")
_COUPLING_KEYS = ("coupling", "coupling_slope", "coupling_offset")


def process(
    image: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    timestamp: tuple[int, int] | float | None,
    parameters: dict[str, Any],
    *,
    native: Any = _native.DEFAULT,
) -> dict[str, Any]:
    """Measure one pre-processed image as CamServer's ``process_image`` does.

    Args:
        image: the 2-D pre-processed image (any integer or float dtype); not copied.
        x_axis, y_axis: its axes (float32 from a camera), lengths width and height.
        timestamp: ``(seconds, nanoseconds)``, float seconds, or None for now.
        parameters: the pipeline parameters; ``image_good_region``, ``image_slices``,
            ``fw_threshold`` and ``processing_error`` are read, and the whole dict (without
            ``background_data``) is sent as ``processing_parameters``.
        native: the kernels module; the default ones when left out, None for numpy and scipy.

    Returns:
        CamServer's output dict, keys in CamServer's order.

    Raises:
        ValueError: for an image without pixels (as numpy's ``nanmin`` in CamServer).
    """
    if native is _native.DEFAULT:
        native = _native.kernels()
    out: dict[str, Any] = {
        "x_axis": x_axis,
        "y_axis": y_axis,
        "image": image,
        "width": np.int64(image.shape[1]),
        "height": np.int64(image.shape[0]),
        "processing_parameters": _parameters_json(parameters),
    }
    if parameters.get("processing_error"):
        out["image"] = np.zeros_like(image)
        return out
    out["timestamp"] = _timestamp(timestamp)
    with np.errstate(all="ignore"):
        _measure(out, image, x_axis, y_axis, parameters, native)
    return out


def _measure(
    out: dict[str, Any],
    image: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    parameters: dict[str, Any],
    native: Any,
) -> None:
    profiles = _native.profiles(image, native)
    x_profile, y_profile = profiles.x, profiles.y
    fw_threshold = parameters.get("fw_threshold")
    widths = {
        "x_fwhm": np.float64(full_width(x_axis, x_profile, 0.5)),
        "y_fwhm": np.float64(full_width(y_axis, y_profile, 0.5)),
    }
    if fw_threshold is not None:
        widths["x_fw"] = np.float64(full_width(x_axis, x_profile, fw_threshold))
        widths["y_fw"] = np.float64(full_width(y_axis, y_profile, fw_threshold))
    x_fit = gauss_fit(x_profile, x_axis, native)
    y_fit = gauss_fit(y_profile, y_axis, native)
    out["min_value"] = profiles.min
    out["max_value"] = profiles.max
    out["x_profile"] = x_profile
    out["y_profile"] = y_profile
    out["intensity"] = x_profile.sum()
    out.update(widths)
    out["x_center_of_mass"] = x_fit.center_of_mass
    out["x_rms"] = x_fit.rms
    out["y_center_of_mass"] = y_fit.center_of_mass
    out["y_rms"] = y_fit.rms
    _put_fit(out, "x_fit_", x_fit)
    _put_fit(out, "y_fit_", y_fit)
    if parameters.get("image_good_region"):
        try:
            _good_region(out, image, x_axis, y_axis, x_profile, y_profile, parameters, native)
        except Exception:  # CamServer: the keys stay None
            log.debug("beam_metrics: unable to detect good region", exc_info=True)


def _good_region(
    out: dict[str, Any],
    image: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    x_profile: np.ndarray,
    y_profile: np.ndarray,
    parameters: dict[str, Any],
    native: Any,
) -> None:
    settings = parameters["image_good_region"]
    for key in _GOOD_REGION_KEYS:
        out[key] = None
    slices = parameters.get("image_slices")
    if slices:
        out["slice_orientation"] = slices["orientation"]
        _init_slices(out, slices["number_of_slices"])
    threshold, gfscale = settings["threshold"], settings["gfscale"]
    x_start, x_end = good_region(x_profile, threshold, gfscale)
    y_start, y_end = good_region(y_profile, threshold, gfscale)
    region = image[y_start:y_end, x_start:x_end]
    gr_x_axis, gr_y_axis = x_axis[x_start:x_end], y_axis[y_start:y_end]
    profiles = _native.profiles(region, native)  # raises for an empty region, as the fit would
    gr_x_fit = gauss_fit(profiles.x, gr_x_axis, native)
    gr_y_fit = gauss_fit(profiles.y, gr_y_axis, native)
    out["good_region"] = [x_start, y_start, x_end, y_end]
    out["gr_x_axis"] = gr_x_axis
    out["gr_y_axis"] = gr_y_axis
    out["gr_x_profile"] = profiles.x
    out["gr_y_profile"] = profiles.y
    _put_fit(out, "gr_x_fit_", gr_x_fit)
    _put_fit(out, "gr_y_fit_", gr_y_fit)
    out["gr_intensity"] = profiles.x.sum()
    if not slices:
        return
    scale, number, orientation = slices["scale"], slices["number_of_slices"], slices["orientation"]
    if number % 2 == 0:
        number += 1  # a middle slice centred on the beam; CamServer re-initialises the keys
        _init_slices(out, number)
    try:
        _slices(
            out, region, gr_x_axis, gr_y_axis, gr_x_fit, gr_y_fit, scale, number, orientation,
            native,
        )  # fmt: skip
    except Exception:
        log.debug("beam_metrics: unable to apply slices", exc_info=True)


def _slices(
    out: dict[str, Any],
    region: np.ndarray,
    gr_x_axis: np.ndarray,
    gr_y_axis: np.ndarray,
    gr_x_fit: GaussFit,
    gr_y_fit: GaussFit,
    scale: Any,
    number: int,
    orientation: Any,
    native: Any,
) -> None:
    x_set = x_slices(
        region, gr_x_axis, gr_y_axis, gr_x_fit.mean, gr_x_fit.standard_deviation, scale, number,
        native,
    )  # fmt: skip
    y_set = y_slices(
        region, gr_x_axis, gr_y_axis, gr_y_fit.mean, gr_y_fit.standard_deviation, scale, number,
        native,
    )  # fmt: skip
    if orientation == "vertical":
        reported, length = y_set
    elif orientation == "horizontal":
        reported, length = x_set
    else:
        raise ValueError(f"Invalid slice orientation '{orientation}'.")
    out["slice_length"] = None if length is None else np.float64(length)
    for i, s in enumerate(reported):
        out[f"slice_{i}_center_x"] = s.center_x
        out[f"slice_{i}_center_y"] = s.center_y
        out[f"slice_{i}_standard_deviation"] = s.standard_deviation
        out[f"slice_{i}_intensity"] = s.intensity
    # With fewer than 2 x-slices this raises: the coupling stays None, the slices stay written.
    out["coupling"], out["coupling_slope"], out["coupling_offset"] = coupling(
        x_set[0], gr_x_fit.standard_deviation, native
    )


def _init_slices(out: dict[str, Any], number: int) -> None:
    out["slice_amount"] = np.int64(number)
    out["slice_length"] = None
    for i in range(number):
        for key in _SLICE_KEYS:
            out[f"slice_{i}_{key}"] = None
    for key in _COUPLING_KEYS:
        out[key] = None


def _put_fit(out: dict[str, Any], prefix: str, fit: GaussFit) -> None:
    out[prefix + "gauss_function"] = fit.gauss_function
    out[prefix + "offset"] = fit.offset
    out[prefix + "amplitude"] = fit.amplitude
    out[prefix + "standard_deviation"] = fit.standard_deviation
    out[prefix + "mean"] = fit.mean


def _timestamp(timestamp: tuple[int, int] | float | None) -> np.float64:
    if timestamp is None:
        return np.float64(time.time())
    if isinstance(timestamp, tuple | list):
        seconds, nanoseconds = timestamp
        return np.float64(seconds + nanoseconds / 1e9)
    return np.float64(timestamp)


def _parameters_json(parameters: dict[str, Any]) -> str:
    visible = {k: v for k, v in parameters.items() if k != "background_data"}
    return json.dumps(visible, default=_json_default)


def _json_default(value: Any) -> Any:
    """numpy values as their Python equivalents; anything else as its str (never a crash)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
