"""Beam profile: projections, centre of mass and RMS size of a camera image.

A camera pipeline for pipevisor's Python runner; copy it as the start of your own. The channel
names are CamServer's, so existing viewers show them. Set ``include_image`` in the parameters to
pass the image through as well.
"""

import numpy as np


def _moments(profile, axis):
    """Centre of mass and RMS width of a profile against its axis.

    The profile's minimum is taken as the background offset and removed first (as CamServer
    does), so a flat pedestal does not pull the centre to the middle or inflate the width.
    """
    weights = profile.astype(np.float64)
    weights -= weights.min()
    total = weights.sum()
    if total <= 0:
        return np.nan, np.nan
    center = float(np.dot(weights, axis) / total)
    rms = float(np.sqrt(np.dot(weights, (axis - center) ** 2) / total))
    return center, rms


def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata=None):
    """Called by the runner for every image; returns the channels to send."""
    height, width = image.shape
    x_axis = np.arange(width, dtype=np.float64) if x_axis is None else np.asarray(x_axis)
    y_axis = np.arange(height, dtype=np.float64) if y_axis is None else np.asarray(y_axis)

    # Sum in int64 so unsigned images neither overflow nor wrap.
    accumulator = np.int64 if image.dtype.kind in "ui" else np.float64
    x_profile = image.sum(axis=0, dtype=accumulator)
    y_profile = image.sum(axis=1, dtype=accumulator)

    x_center, x_rms = _moments(x_profile, x_axis)
    y_center, y_rms = _moments(y_profile, y_axis)

    result = {
        "x_profile": x_profile,
        "y_profile": y_profile,
        "x_center_of_mass": x_center,
        "y_center_of_mass": y_center,
        "x_rms": x_rms,
        "y_rms": y_rms,
        "intensity": float(x_profile.sum()),
        "max_value": float(image.max()),
        "x_axis": x_axis,
        "y_axis": y_axis,
    }
    if parameters.get("include_image"):
        result["image"] = image
    return result
