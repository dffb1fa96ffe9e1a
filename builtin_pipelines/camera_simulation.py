"""A simulated camera: a Gaussian beam on a noisy background, as a pipevisor source.

Run it with ``python -m runners.python --builtin camera_simulation``. Every
option is a key of the instance's parameters and may change live (the next frame uses it):

=================  =========================  =================================================
key                default                    meaning
=================  =========================  =================================================
width, height      1280, 960                  image size in pixels
dtype              "uint16"                   pixel type (uint8/16/32, int8/16/32, float32/64)
rate               10                         frames per second
beam_x, beam_y     image centre               beam centre, pixels
beam_sigma_x/_y    width/12, height/12        beam RMS size, pixels
amplitude          1000 (200 for 8 bits)      beam peak above the background
background         10                         constant offset
noise              2                          std of the background noise; 0 disables it
jitter             0                          std of the beam position jitter, pixels
deterministic      False                      seeded frames, pulse ids from ``pulse_id_start``
seed               None (0 if deterministic)  seed of the noise and jitter
pulse_id_start     0                          first pulse id in deterministic mode
=================  =========================  =================================================

plus CamServer's camera-side geometry (``binning_x``/``_y``, ``binning_mean``, ``mirror_x``/``_y``,
``rotate``, ``roi``, ``camera_calibration``; see :mod:`builtin_pipelines.lib.camera_geometry`).

Channels per frame, as CamServer's cameras send them: ``image`` (height x width, after the
geometry), ``timestamp`` (float64 seconds), ``width`` and ``height`` (int64, of the image sent),
``x_axis`` and ``y_axis`` (float32: pixel coordinates, or calibrated). Outside deterministic mode
the pulse id follows the clock at 100 Hz, as at SwissFEL.

Noise and jitter come from a ring of precomputed frames, rebuilt when an option of the image
changes, so large images at high rates cost next to nothing per frame.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .lib.camera_geometry import CameraGeometry, geometry_key

__all__ = ["configure", "generate"]

DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
RING = 8  # frames of noise and jitter precomputed per set of image options
_TICK = 0.05  # the longest wait between two idle ticks: bounds config and status latency
_NOISE_KEYS = ("width", "height", "noise", "seed")
_IMAGE_KEYS = (
    *_NOISE_KEYS, "dtype", "beam_x", "beam_y", "beam_sigma_x", "beam_sigma_y",
    "amplitude", "background", "jitter",
)  # fmt: skip


def _options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The options with their defaults filled in (``None`` means the default)."""

    def get(key: str, default: Any) -> Any:
        value = parameters.get(key)
        return default if value is None else value

    width, height = get("width", 1280), get("height", 960)
    dtype = get("dtype", "uint16")
    eight_bits = dtype in ("uint8", "int8")
    deterministic = bool(get("deterministic", False))
    return {
        "width": width,
        "height": height,
        "dtype": dtype,
        "rate": get("rate", 10.0),
        "beam_x": get("beam_x", (width - 1) / 2 if isinstance(width, int) else 0),
        "beam_y": get("beam_y", (height - 1) / 2 if isinstance(height, int) else 0),
        "beam_sigma_x": get("beam_sigma_x", width / 12 if isinstance(width, int) else 1),
        "beam_sigma_y": get("beam_sigma_y", height / 12 if isinstance(height, int) else 1),
        "amplitude": get("amplitude", 200.0 if eight_bits else 1000.0),
        "background": get("background", 10.0),
        "noise": get("noise", 2.0),
        "jitter": get("jitter", 0.0),
        "deterministic": deterministic,
        "seed": get("seed", 0 if deterministic else None),
        "pulse_id_start": get("pulse_id_start", 0),
    }


def configure(parameters: dict[str, Any]) -> None:
    """Check the options; raises ValueError quoting the first bad one."""
    options = _options(parameters)
    for key in ("width", "height"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if options["dtype"] not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {options['dtype']!r}")
    for key in ("rate", "beam_sigma_x", "beam_sigma_y"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{key} must be a positive number, got {value!r}")
    for key in ("beam_x", "beam_y", "amplitude", "background", "noise", "jitter"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number, got {value!r}")
    for key in ("noise", "jitter"):
        if options[key] < 0:
            raise ValueError(f"{key} must be at least 0, got {options[key]!r}")
    for key in ("seed", "pulse_id_start"):
        value = options[key]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
    CameraGeometry(parameters).size(options["width"], options["height"])


def _gaussian(n: int, centre: float, sigma: float) -> np.ndarray:
    profile: np.ndarray = np.exp(-0.5 * ((np.arange(n, dtype=np.float32) - centre) / sigma) ** 2)
    return profile


def _noise(options: Mapping[str, Any]) -> np.ndarray | None:
    """Background noise for the whole ring: frame k is rows k to k + height of one block."""
    if not options["noise"]:
        return None
    rng = np.random.default_rng(np.random.SeedSequence(options["seed"]).spawn(2)[0])
    block = rng.standard_normal((options["height"] + RING - 1, options["width"]), np.float32)
    block *= options["noise"]
    return block


def _frames(options: Mapping[str, Any], noise: np.ndarray | None) -> list[np.ndarray]:
    """The ring of read-only images for these options."""
    height, width, dtype = options["height"], options["width"], np.dtype(options["dtype"])
    rng = np.random.default_rng(np.random.SeedSequence(options["seed"]).spawn(2)[1])
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    ring = []
    image = np.empty((height, width), np.float32)  # one scratch buffer: allocations are slow
    for k in range(RING if noise is not None or options["jitter"] else 1):
        shift_x, shift_y = rng.normal(0.0, options["jitter"], 2) if options["jitter"] else (0, 0)
        np.multiply.outer(
            _gaussian(height, options["beam_y"] + shift_y, options["beam_sigma_y"]),
            _gaussian(width, options["beam_x"] + shift_x, options["beam_sigma_x"]),
            out=image,
        )
        image *= options["amplitude"]
        image += options["background"]
        if noise is not None:
            image += noise[k : k + height]
        if dtype.kind != "f":
            np.rint(image, out=image)
        np.clip(image, info.min, info.max, out=image)
        frame = image.astype(dtype)
        frame.flags.writeable = False
        ring.append(frame)
    return ring


def _read_only(frame: np.ndarray) -> np.ndarray:
    frame.flags.writeable = False
    return frame


def generate(
    parameters: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], int, tuple[int, int]] | None]:
    """Yield ``(channels, pulse_id, (sec, ns))`` at ``rate``, and None while waiting."""
    ring: list[np.ndarray] = []
    image_key: tuple[object, ...] = ()
    noise_key: tuple[object, ...] = ()
    noise: np.ndarray | None = None
    axes: dict[str, Any] = {}
    count = 0
    last_due: float | None = None  # when the last frame was due
    while True:
        options = _options(parameters)
        key = (*(options[name] for name in _IMAGE_KEYS), geometry_key(parameters))
        if key != image_key:
            if key[: len(_NOISE_KEYS)] != noise_key:
                noise, noise_key = _noise(options), key[: len(_NOISE_KEYS)]
            # The geometry is applied once per ring frame: nothing is left to do per frame.
            geometry = CameraGeometry(parameters)
            ring = [_read_only(geometry.apply(frame)) for frame in _frames(options, noise)]
            image_key = key
            x_axis, y_axis = geometry.axes(options["width"], options["height"])
            axes = {
                "width": np.int64(len(x_axis)),
                "height": np.int64(len(y_axis)),
                "x_axis": x_axis,
                "y_axis": y_axis,
            }
        # A frame is due one period after the last one was due (no drift), with the period read
        # again while waiting so a new rate applies at once; a late frame is not caught up.
        now = time.monotonic()
        due = now if last_due is None else last_due + 1.0 / options["rate"]
        if now < due:
            time.sleep(min(due - now, _TICK))
            yield None
            continue
        last_due = max(due, now - 1.0 / options["rate"])
        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        stamp = seconds + nanoseconds * 1e-9
        if options["deterministic"]:
            pulse_id = options["pulse_id_start"] + count
        else:
            pulse_id = int(stamp * 100)
        channels = {"image": ring[count % len(ring)], "timestamp": np.float64(stamp), **axes}
        count += 1
        yield channels, pulse_id, (seconds, nanoseconds)
