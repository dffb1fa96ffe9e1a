"""A plain, slow transcription of CamServer's standard processing (camserver.md §8.2, §8.3).

The yardstick of the beam_metrics tests and the baseline of ``bench/bench_beam_metrics.py``:
written line by line from the document, as CamServer's own code reads, with scipy's
``curve_fit`` from CamServer's initial guess, Python loops for the scans and Python's built-in
``sum`` for the centre of mass. ``fast_sums=True`` swaps that ``sum`` for numpy's ``.sum()``
(the benchmark's "plain numpy + scipy" baseline; the rounding then differs by ~1e-16).

Warnings are silenced here, not turned into errors: CamServer runs with warnings on, and a
warning from curve_fit (covariance not estimated) must not become the exception that makes it
return its initial guess.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import numpy as np
import scipy.optimize

__all__ = [
    "calculate_slices",
    "find_index",
    "gauss_fit",
    "get_fw",
    "get_good_region_profile",
    "get_x_slices_data",
    "get_y_slices_data",
    "linear_fit",
    "process_image",
]


def _gauss_function(x, offset, amplitude, center, standard_deviation):
    return offset + amplitude * np.exp(-((x - center) ** 2) / (2 * standard_deviation**2))


def _profiles(image):
    if image.dtype.kind == "u":
        return image.sum(0, dtype="int64"), image.sum(1, dtype="int64")
    return image.sum(0), image.sum(1)


def _gauss_fit_params(axis, profile):
    offset = profile.min()
    amplitude = profile.max() - offset
    center = axis[profile.argmax()]
    if amplitude == 0:
        standard_deviation = 1
    else:
        surface = np.trapezoid(profile - offset, x=axis)
        standard_deviation = surface / (amplitude * np.sqrt(2 * np.pi))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimal, _ = scipy.optimize.curve_fit(
                _gauss_function,
                axis,
                profile.astype("float32"),
                p0=[offset, amplitude, center, standard_deviation],
            )
    except Exception:
        optimal = np.array([offset, amplitude, center, standard_deviation]).astype("float64")
    return optimal


def gauss_fit(profile, axis, fast_sums=False):
    """(gauss_function, offset, amplitude, mean, sd, center_of_mass, rms), as CamServer."""
    with np.errstate(all="ignore"):  # CamServer runs with warnings as warnings
        return _gauss_fit(profile, axis, fast_sums)


def _gauss_fit(profile, axis, fast_sums):
    if axis.shape[0] != profile.shape[0]:
        raise RuntimeError(f"Invalid axis passed {axis.shape[0]} {profile.shape[0]}")
    add = (lambda a: a.sum()) if fast_sums else sum
    offset, amplitude, center, standard_deviation = _gauss_fit_params(axis, profile)
    standard_deviation = abs(standard_deviation)
    gauss_function = _gauss_function(axis, offset, amplitude, center, standard_deviation)
    p = profile - offset
    s = add(p)
    if s != 0:
        p = p / s
    p[abs(axis - center) > 5 * standard_deviation] = 0
    center_of_mass = add(axis * p)
    rms = np.sqrt(np.abs(add((axis - center_of_mass) ** 2 * p)))
    return gauss_function, offset, amplitude, center, standard_deviation, center_of_mass, rms


def get_fw(x, y, threshold=0.5):
    with np.errstate(all="ignore"):  # CamServer runs with warnings as warnings: 1/0 is inf
        return _get_fw(x, y, threshold)


def _get_fw(x, y, threshold):
    try:
        ymax, ymin = np.amax(y), np.amin(y)
        hm = (ymax - ymin) * threshold
        level = ymin + hm
        max_index, l_index, r_index = np.argmax(y), 0, len(x) - 1
        for i in range(max_index - 1, 0, -1):
            if (y[i] - ymin) <= hm:
                l_index = i
                break
        for i in range(max_index + 1, len(x), 1):
            if (y[i] - ymin) <= hm:
                r_index = i
                break
        slope_l = (y[l_index + 1] - y[l_index]) / (x[l_index + 1] - x[l_index])
        slope_r = (y[r_index] - y[r_index - 1]) / (x[r_index] - x[r_index - 1])
        x_l = x[l_index] + (level - y[l_index]) / slope_l
        x_r = x[r_index] + (level - y[r_index]) / slope_r
        return float(abs(x_r - x_l))
    except Exception:
        return 0.0


def get_good_region_profile(profile, threshold=0.3, gfscale=1.8):
    profile_min = profile.min()
    threshold_value = (profile.max() - profile_min) * threshold + profile_min
    index_maximum = profile.argmax()
    index_start = index_maximum
    index_end = index_maximum
    for i in range(index_maximum, 0, -1):
        if profile[i] < threshold_value:
            index_start = i
            break
    for i in range(index_maximum, profile.shape[0]):
        if profile[i] < threshold_value:
            index_end = i
            break
    gf_extend = (index_end - index_start) * gfscale - (index_end - index_start)
    index_start -= gf_extend / 2
    index_end += gf_extend / 2
    index_start = index_start if index_start > 0 else 0
    index_end = index_end if index_end < profile.size - 1 else profile.size - 1
    return int(index_start), int(index_end)


def find_index(axis, item):
    if axis[0] > axis[1]:
        if item > axis[0]:
            return 0
        if item < axis[-1]:
            return len(axis) - 1
        return np.searchsorted(-axis, -item)
    if item < axis[0]:
        return 0
    if item > axis[-1]:
        return len(axis) - 1
    insert_index = np.searchsorted(axis, item)
    if insert_index < len(axis) and axis[insert_index] == item:
        return insert_index
    return insert_index - 1


def calculate_slices(axis, center, standard_deviation, scaling=2, number_of_slices=9):
    if number_of_slices % 2 == 0:
        raise ValueError("Number of slices must be odd.")
    size_slice = scaling * standard_deviation / number_of_slices
    index_center = find_index(axis, center)
    index_half_slice = find_index(axis, center + size_slice / 2)
    n_pixel_half_slice = abs(index_half_slice - index_center)
    if n_pixel_half_slice < 1:
        n_pixel_half_slice = 1
    n_pixel_slice = 2 * n_pixel_half_slice
    start_index = index_center - n_pixel_half_slice
    end_index = index_center + n_pixel_half_slice
    list_slices_indexes = []
    slice_length = None
    number_of_elements_axis = len(axis)
    if start_index >= 0 and end_index < number_of_elements_axis:
        list_slices_indexes.append(start_index)
        list_slices_indexes.append(end_index)
        slice_length = abs(axis[start_index] - axis[end_index])
        counter_slices = number_of_slices - 1
        while counter_slices > 0:
            start_index -= n_pixel_slice
            end_index += n_pixel_slice
            if start_index < 0 or end_index >= number_of_elements_axis:
                break
            list_slices_indexes.insert(0, start_index)
            list_slices_indexes.append(end_index)
            counter_slices -= 2
    return list_slices_indexes, n_pixel_half_slice, slice_length


def get_x_slices_data(image, x_axis, y_axis, x_center, x_sd, scaling, number_of_slices, fast_sums):
    list_slices, n_pixel_half_slice, slice_length = calculate_slices(
        x_axis, x_center, x_sd, scaling, number_of_slices
    )
    slice_data = []
    for i in range(len(list_slices) - 1):
        if list_slices[i] < image.shape[-1] and list_slices[i + 1] < image.shape[-1]:
            slice_n = image[:, list_slices[i] : list_slices[i + 1]]
            slice_y_profile = slice_n.sum(1)
            pixel_intensity = float(slice_n.sum())
            center_x = x_axis[list_slices[i] + n_pixel_half_slice]
            fit = gauss_fit(slice_y_profile, y_axis, fast_sums)
            slice_data.append(([center_x, fit[3]], fit[4], pixel_intensity))
    return slice_data, slice_length


def get_y_slices_data(image, x_axis, y_axis, y_center, y_sd, scaling, number_of_slices, fast_sums):
    list_slices, n_pixel_half_slice, slice_length = calculate_slices(
        y_axis, y_center, y_sd, scaling, number_of_slices
    )
    slice_data = []
    for i in range(len(list_slices) - 1):
        if list_slices[i] < image.shape[0] and list_slices[i + 1] < image.shape[0]:
            slice_n = image[list_slices[i] : list_slices[i + 1], :]
            slice_x_profile = slice_n.sum(0)
            pixel_intensity = float(slice_n.sum())
            fit = gauss_fit(slice_x_profile, x_axis, fast_sums)
            center_y = y_axis[list_slices[i] + n_pixel_half_slice]
            slice_data.append(([fit[3], center_y], fit[4], pixel_intensity))
    return slice_data, slice_length


def _linear_function(x, slope, offset):
    return slope * x + offset


def linear_fit(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimal_parameter, _ = scipy.optimize.curve_fit(_linear_function, x, y)
    return optimal_parameter


def process_image(
    image: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    timestamp: Any,
    parameters: dict[str, Any],
    fast_sums: bool = False,
) -> dict[str, Any]:
    """CamServer's ``process_image`` on an already pre-processed image (§8.2)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _process_image(image, x_axis, y_axis, timestamp, parameters, fast_sums)


def _process_image(image, x_axis, y_axis, timestamp, parameters, fast_sums):
    rv: dict[str, Any] = {}
    rv["x_axis"] = x_axis
    rv["y_axis"] = y_axis
    rv["image"] = image
    rv["width"] = image.shape[1]
    rv["height"] = image.shape[0]
    visible = {k: v for k, v in parameters.items() if k != "background_data"}
    rv["processing_parameters"] = json.dumps(visible)
    if parameters.get("processing_error"):
        rv["image"] = np.zeros_like(image)
        return rv
    rv["timestamp"] = time.time() if timestamp is None else timestamp[0] + timestamp[1] / 1e9
    min_value, max_value = np.nanmin(image), np.nanmax(image)
    x_profile, y_profile = _profiles(image)
    x_fit = gauss_fit(x_profile, x_axis, fast_sums)
    y_fit = gauss_fit(y_profile, y_axis, fast_sums)
    rv["min_value"] = min_value
    rv["max_value"] = max_value
    rv["x_profile"] = x_profile
    rv["y_profile"] = y_profile
    rv["intensity"] = x_profile.sum()
    rv["x_fwhm"] = get_fw(x_axis, x_profile, 0.5)
    rv["y_fwhm"] = get_fw(y_axis, y_profile, 0.5)
    fw_threshold = parameters.get("fw_threshold")
    if fw_threshold is not None:
        rv["x_fw"] = get_fw(x_axis, x_profile, fw_threshold)
        rv["y_fw"] = get_fw(y_axis, y_profile, fw_threshold)
    rv["x_center_of_mass"] = x_fit[5]
    rv["x_rms"] = x_fit[6]
    rv["y_center_of_mass"] = y_fit[5]
    rv["y_rms"] = y_fit[6]
    _put_fit(rv, "x_fit_", x_fit)
    _put_fit(rv, "y_fit_", y_fit)
    if parameters.get("image_good_region"):
        try:
            _good_region(rv, image, x_axis, y_axis, x_profile, y_profile, parameters, fast_sums)
        except Exception:
            pass
    return rv


def _put_fit(rv, prefix, fit):
    rv[prefix + "gauss_function"] = fit[0]
    rv[prefix + "offset"] = fit[1]
    rv[prefix + "amplitude"] = fit[2]
    rv[prefix + "standard_deviation"] = fit[4]
    rv[prefix + "mean"] = fit[3]


def _initialize_slices_values(rv, number_of_slices):
    rv["slice_amount"] = number_of_slices
    rv["slice_length"] = None
    for i in range(number_of_slices):
        rv[f"slice_{i}_center_x"] = None
        rv[f"slice_{i}_center_y"] = None
        rv[f"slice_{i}_standard_deviation"] = None
        rv[f"slice_{i}_intensity"] = None
    rv["coupling"] = None
    rv["coupling_slope"] = None
    rv["coupling_offset"] = None


def _good_region(rv, image, x_axis, y_axis, x_profile, y_profile, parameters, fast_sums):
    for key in ("good_region", "gr_x_axis", "gr_y_axis", "gr_x_profile", "gr_y_profile"):
        rv[key] = None
    for prefix in ("gr_x_fit_", "gr_y_fit_"):
        for key in ("gauss_function", "offset", "amplitude", "standard_deviation", "mean"):
            rv[prefix + key] = None
    rv["gr_intensity"] = None
    slices = parameters.get("image_slices")
    if slices:
        rv["slice_orientation"] = slices["orientation"]
        _initialize_slices_values(rv, slices["number_of_slices"])
    threshold = parameters["image_good_region"]["threshold"]
    gfscale = parameters["image_good_region"]["gfscale"]
    x_start, x_end = get_good_region_profile(x_profile, threshold, gfscale)
    y_start, y_end = get_good_region_profile(y_profile, threshold, gfscale)
    good_region = image[y_start:y_end, x_start:x_end]
    gr_x_axis = x_axis[x_start:x_end]
    gr_y_axis = y_axis[y_start:y_end]
    gr_x_profile, gr_y_profile = _profiles(good_region)
    gr_intensity = gr_x_profile.sum()
    gr_x_fit = gauss_fit(gr_x_profile, gr_x_axis, fast_sums)
    gr_y_fit = gauss_fit(gr_y_profile, gr_y_axis, fast_sums)
    rv["good_region"] = [x_start, y_start, x_end, y_end]
    rv["gr_x_axis"] = gr_x_axis
    rv["gr_y_axis"] = gr_y_axis
    rv["gr_x_profile"] = gr_x_profile
    rv["gr_y_profile"] = gr_y_profile
    _put_fit(rv, "gr_x_fit_", gr_x_fit)
    _put_fit(rv, "gr_y_fit_", gr_y_fit)
    rv["gr_intensity"] = gr_intensity
    if not slices:
        return
    scale = slices["scale"]
    number = slices["number_of_slices"]
    orientation = slices["orientation"]
    if number % 2 == 0:
        number += 1
        _initialize_slices_values(rv, number)
    try:
        x_data, x_length = get_x_slices_data(
            good_region, gr_x_axis, gr_y_axis, gr_x_fit[3], gr_x_fit[4], scale, number, fast_sums
        )
        y_data, y_length = get_y_slices_data(
            good_region, gr_x_axis, gr_y_axis, gr_y_fit[3], gr_y_fit[4], scale, number, fast_sums
        )
        if orientation == "vertical":
            data, length = y_data, y_length
        elif orientation == "horizontal":
            data, length = x_data, x_length
        else:
            raise ValueError(f"Invalid slice orientation '{orientation}'.")
        rv["slice_length"] = length
        for i, item in enumerate(data):
            rv[f"slice_{i}_center_x"] = item[0][0]
            rv[f"slice_{i}_center_y"] = item[0][1]
            rv[f"slice_{i}_standard_deviation"] = item[1]
            rv[f"slice_{i}_intensity"] = item[2]
        x = [float(item[0][0]) for item in x_data]
        y = [float(item[0][1]) for item in x_data]
        slope, offset = linear_fit(x, y)
        rv["coupling"] = slope * (gr_x_fit[4] ** 2)
        rv["coupling_slope"] = slope
        rv["coupling_offset"] = offset
    except Exception:
        pass
