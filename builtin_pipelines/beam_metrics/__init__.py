"""beam_metrics: CamServer's standard image processing as a pipevisor builtin.

Registry entries run it with ``"builtin": "beam_metrics"``. Each frame goes through CamServer's
receive-loop steps and pre-processing (``preprocess``), in CamServer's order, then through the
standard processing (``processor``): profiles, Gaussian fits, good region, slices. The keys it
reads, with CamServer's names and defaults (``None`` always means the default):

============================  ===========  ====================================================
key                           default      meaning
============================  ===========  ====================================================
image_background              None         background id: ``<id>.npy`` in the folder named by
                                           ``PIPEVISOR_BACKGROUNDS`` (a file name, no ``/``)
image_background_enable       False        true: subtract, clamped at 0; ``"signed"``: int32
                                           subtraction; ``"passive"``: no subtraction, the
                                           array goes to ``parameters["background_data"]``
image_threshold               None         pixels ``< int(threshold)`` become 0 (only if > 0)
image_region_of_interest      None         ``[offset_x, size_x, offset_y, size_y]``, clipped
                                           to the image; wholly outside it is an error
image_good_region             None         ``{threshold: 0.3, gfscale: 1.8}``; ``{}`` means
                                           these defaults
image_slices                  None         ``{number_of_slices: 1, scale: 2, orientation:
                                           "vertical"}`` (or ``"horizontal"``); needs
                                           ``image_good_region``
image_averaging               None         N > 1: running mean of the last N pre-processed
                                           images (float64)
image_scale, image_offset     None         ``image * scale``, then ``+ offset``
mirror_x, mirror_y            False        flip the image left-right / up-down, and its axis
rotation                      None         degrees, or ``{angle, order: 1, mode: "0.0"}``;
                                           mode ``"ortho"``: ``rot90`` by ``int(angle/90)``
                                           with the axes turned; a number: the fill value;
                                           else a ``scipy.ndimage`` boundary mode
averaging                     None         raw frames: N > 0 sends one mean every N frames,
                                           N < 0 the running mean of the last abs(N)
binning_x, binning_y          1, 1         block sum clipped to 0..65535 as uint16; the axes
                                           are block-averaged
binning_mean                  False        block mean instead of the sum
fw_threshold                  None         adds ``x_fw``, ``y_fw``: the full width at this
                                           fraction of the maximum
include, exclude              None         only these output channels / all but these
notify_on_error               False        True if the instance name ends in ``_sp``: a bad
                                           background or region skips that step and the frame
                                           goes out flagged (``processing_error``, zero image,
                                           six channels) instead of failing
copy                          False        copy the received image before processing
============================  ===========  ====================================================

Other keys, ``_``-prefixed ones included, are left alone. ``configure`` refuses a bad value
with a message quoting the key, and fills in CamServer's defaults (so ``processing_parameters``
shows what CamServer's does). A changed or shrunk image restarts the averaging buffers.

The per-pipeline state (averaging buffers, the background cache) lives in one object kept in the
parameters dict under ``_pipevisor_beam_metrics``: the runner keeps that dict for the life of
the program and across configuration updates, and ``processing_parameters`` leaves every
``_pipevisor_`` key out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from supervisor.contract import EnvVar

from . import native, processor
from .backgrounds import BackgroundStore
from .parameters import Settings, expand, parse
from .preprocess import Frame, Preprocessor

__all__ = ["configure", "process_image"]

STATE_KEY = "_pipevisor_beam_metrics"
_PRIVATE_PREFIX = "_pipevisor_"


class _Pipeline:
    """What one pipeline keeps between frames."""

    __slots__ = ("instance", "preprocessor")

    def __init__(self, instance: str, preprocessor: Preprocessor) -> None:
        self.instance = instance
        self.preprocessor = preprocessor

    @classmethod
    def from_environ(cls) -> _Pipeline:
        """The state for this program: its instance name and background folder."""
        return cls(
            os.environ.get(EnvVar.INSTANCE, ""), Preprocessor(BackgroundStore.from_environ())
        )


def _pipeline(parameters: dict[str, Any]) -> _Pipeline:
    state = parameters.get(STATE_KEY)
    if not isinstance(state, _Pipeline):
        state = parameters[STATE_KEY] = _Pipeline.from_environ()
    return state


def configure(parameters: dict[str, Any]) -> None:
    """Validate a candidate configuration, then fill in CamServer's defaults in place.

    Raises:
        ValueError: a key has a bad value; the message quotes the key and the value.
    """
    parse(parameters, instance=os.environ.get(EnvVar.INSTANCE, ""))
    expand(parameters)
    # The first configure runs before the runner reports ready: compiling the kernels here (a
    # few seconds, once per machine and source version) keeps it from dropping the first frames.
    native.kernels()


def _axis(axis: Any, size: int, name: str, what: str) -> np.ndarray:
    if axis is None:
        return np.arange(size, dtype=np.float32)  # what a camera without calibration sends
    values = np.asarray(axis)
    if values.shape != (size,):
        raise ValueError(f"{name} has shape {values.shape}, the image is {size} pixels {what}")
    return values


def _select(result: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """CamServer's ``include`` (in its order, missing ones as None), then ``exclude``."""
    if settings.include:
        result = {key: result.get(key) for key in settings.include}
    if settings.exclude:
        for key in settings.exclude:
            result.pop(key, None)
    return result


def process_image(
    image: np.ndarray | None,
    pulse_id: int,
    timestamp: tuple[int, int] | None,
    x_axis: np.ndarray | None,
    y_axis: np.ndarray | None,
    parameters: dict[str, Any],
    bsdata: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Pre-process one frame and measure it; None when there is nothing to send.

    Nothing is sent for a frame without an image, nor while raw ``averaging`` collects a block.
    ``bsdata`` is not merged into the output, as in CamServer's standard processing.

    Raises:
        ValueError: a parameter is invalid, the image is not 2-D, an axis does not match it,
            nothing is left of it after pre-processing, or (without ``notify_on_error``) a
            pre-processing step failed (``PreprocessError``, with CamServer's message).
    """
    parameters.pop("processing_error", None)  # re-evaluated at every frame
    pipeline = _pipeline(parameters)
    # Read again at every frame (about 10 us): the runner applies updates to this dict in place.
    settings = parse(parameters, instance=pipeline.instance)
    if image is None:
        return None
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    height, width = image.shape
    x_axis = _axis(x_axis, width, "x_axis", "wide")
    y_axis = _axis(y_axis, height, "y_axis", "high")
    frame: Frame | None = pipeline.preprocessor.receive(image, x_axis, y_axis, settings)
    if frame is None:
        return None
    frame, errors = pipeline.preprocessor.preprocess(frame, settings, parameters)
    if errors:
        parameters["processing_error"] = "; ".join(errors)
    if frame.image.size == 0:
        raise ValueError(
            f"zero-size image after pre-processing ({_shape(frame.image)}): nothing to measure; "
            "check binning_x, binning_y and image_region_of_interest"
        )
    visible = {k: v for k, v in parameters.items() if not k.startswith(_PRIVATE_PREFIX)}
    result = processor.process(frame.image, frame.x_axis, frame.y_axis, timestamp, visible)
    return None if result is None else _select(result, settings)


def _shape(image: np.ndarray) -> str:
    return "x".join(str(n) for n in image.shape)
