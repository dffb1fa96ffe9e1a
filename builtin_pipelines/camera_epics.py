"""A camera read over EPICS Channel Access (pyepics), as a pipevisor source.

Run it as the builtin ``camera_epics``. The keys of the instance's parameters:

==================  ====================  ========================================================
key                 default               meaning
==================  ====================  ========================================================
prefix              None                  SwissFEL camera: the three PVs below are ``PREFIX:...``
image_pv            ``PREFIX:FPICTURE``   the image waveform
width_pv            ``PREFIX:WIDTH``      the image width in pixels, monitored
height_pv           ``PREFIX:HEIGHT``     the image height in pixels, monitored
pulse_id_pv         None                  a PV holding the pulse id; default: from the timestamp
dtype               None                  pixel type: a same-size view of the PV's native type
                                          (no copy); default: native, DBR_SHORT read as uint16
connection_timeout  5.0                   seconds before PVs that do not connect are reported
==================  ====================  ========================================================

plus CamServer's camera-side geometry (``binning_x``/``_y``, ``binning_mean``, ``mirror_x``/``_y``,
``rotate``, ``roi``, ``camera_calibration``; see :mod:`builtin_pipelines.lib.camera_geometry`).
Every key may change live; new PV names reconnect.

Channels per frame, as CamServer's cameras send them: ``image`` (height x width after the
geometry), ``timestamp`` (float64 seconds: the image PV's EPICS timestamp), ``width`` and
``height`` (int64, of the image sent), ``x_axis`` and ``y_axis`` (float32, calibrated when
configured). The bsread timestamp is the PV's too. Without ``pulse_id_pv`` the pulse id counts
100 Hz ticks of that timestamp (``floor(t * 100)``, SwissFEL's rate, like the simulated camera):
a camera faster than 100 Hz, or one whose frames jitter around a tick, can give two frames the
same id; use ``pulse_id_pv`` where ids must be exact.

Monitor-driven: the image callback only keeps the newest frame and returns (latest wins; a frame
replaced before it was read is a drop, reported in a log line every 10 s); the width and height
are monitored too and taken with each frame. A frame whose size does not fit (fewer pixels than
width x height) is dropped and reported; a longer waveform is cut to width x height, as in
CamServer. Disconnects and reconnects are logged; libca reconnects by itself when the IOC comes
back (in 4-8 s once it has registered with the repeater, 10 s after it started).

Deployment. The entry's ``env`` sets ``EPICS_CA_ADDR_LIST`` (and ``EPICS_CA_AUTO_ADDR_LIST``),
``EPICS_CA_MAX_ARRAY_BYTES`` (at least a frame's bytes; pyepics' default is 16 MiB) and, when
not 5065, ``EPICS_CA_REPEATER_PORT``; libca reads them once, at the first channel. The host must
run a CA repeater on that port (``caRepeater`` as a service, or a permanent registry entry
running ``python -m caproto.commandline.repeater``): libca spawns one when it finds none, and
that process would outlive the instance, outside its process group. This source never lets it:
until a repeater listens it makes no CA call, and says so in its log once a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .lib.ca_camera import CameraPVs, Frame, PVNames, wait_for_repeater
from .lib.camera_geometry import CameraGeometry, geometry_key

__all__ = ["configure", "generate"]

log = logging.getLogger(__name__)

DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
_TICK = 0.05  # the longest wait for a frame: bounds config and status latency
_REPORT = 10.0  # seconds between two reports of drops and refused frames
# Channel Access has no unsigned 16-bit type: 16-bit cameras serve DBR_SHORT.
_DEFAULT_VIEW = {np.dtype(np.int16): np.dtype(np.uint16)}


def _names(parameters: Mapping[str, Any]) -> PVNames:
    prefix = parameters.get("prefix")

    def name(key: str, suffix: str) -> str:
        value = parameters.get(key)
        if value is None and prefix is not None:
            value = f"{prefix}:{suffix}"
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key} must be a PV name (or set prefix), got {value!r}")
        return value.strip()

    pulse_id = parameters.get("pulse_id_pv")
    if pulse_id is not None and (not isinstance(pulse_id, str) or not pulse_id.strip()):
        raise ValueError(f"pulse_id_pv must be a PV name, got {pulse_id!r}")
    return PVNames(
        name("image_pv", "FPICTURE"),
        name("width_pv", "WIDTH"),
        name("height_pv", "HEIGHT"),
        pulse_id.strip() if pulse_id else None,
    )


def _timeout(parameters: Mapping[str, Any]) -> float:
    value = parameters.get("connection_timeout")
    return 5.0 if value is None else value


def configure(parameters: dict[str, Any]) -> None:
    """Check the options; raises ValueError quoting the first bad one."""
    prefix = parameters.get("prefix")
    if prefix is not None and (not isinstance(prefix, str) or not prefix.strip()):
        raise ValueError(f"prefix must be a PV name prefix, got {prefix!r}")
    _names(parameters)
    dtype = parameters.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    timeout = _timeout(parameters)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"connection_timeout must be a positive number, got {timeout!r}")
    CameraGeometry(parameters)


class _Reports:
    """Counts dropped frames by reason; logs each reason at once, then at most every 10 s."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._refused: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._drops_reported = 0

    def refuse(self, reason: str, detail: str) -> None:
        self._refused[reason] = self._refused.get(reason, 0) + 1
        self._last[reason] = detail

    def _due(self, reason: str, now: float) -> bool:
        if now < self._next.get(reason, 0.0):
            return False
        self._next[reason] = now + _REPORT
        return True

    def flush(self, camera: CameraPVs) -> None:
        now = time.monotonic()
        drops = camera.drops - self._drops_reported
        if drops and self._due("drops", now):
            self._drops_reported = camera.drops
            log.info(
                "%d frame(s) replaced before they were read (latest wins), %d in all",
                drops,
                camera.drops,
                extra={"camera_drops": camera.drops},
            )
        for reason in [r for r in self._refused if self._due(r, now)]:
            log.warning("dropped %d frame(s): %s", self._refused.pop(reason), self._last[reason])


def _image(frame: Frame, dtype: str | None, reports: _Reports) -> np.ndarray | None:
    width, height, value = frame.width, frame.height, frame.value
    if width is None or height is None:
        return None  # the image connected first; PVs that never connect are reported apart
    pixels = width * height
    if pixels <= 0 or value.size < pixels:
        reports.refuse("size", f"{value.size} pixels do not fill width {width} x height {height}")
        return None
    target = np.dtype(dtype) if dtype else _DEFAULT_VIEW.get(value.dtype, value.dtype)
    if target.itemsize != value.dtype.itemsize:
        reports.refuse("dtype", f"dtype {dtype!r} is not a view of the PV's {value.dtype}")
        return None
    return value[:pixels].view(target).reshape(height, width)


def _channels(
    frame: Frame, names: PVNames, geometry: CameraGeometry, dtype: str | None, reports: _Reports
) -> tuple[dict[str, Any], int, tuple[int, int]] | None:
    """What one frame sends, or None (counted in ``reports``) when it is dropped."""
    image = _image(frame, dtype, reports)
    if image is None:
        return None
    if names.pulse_id is None:
        pulse_id = (frame.seconds * 1_000_000_000 + frame.nanoseconds) // 10_000_000
    elif frame.pulse_id is None:
        return None  # not connected yet: reported as such
    else:
        pulse_id = frame.pulse_id
    try:
        x_axis, y_axis = geometry.axes(image.shape[1], image.shape[0])
        image = geometry.apply(image)
    except ValueError as exc:
        reports.refuse("geometry", str(exc))
        return None
    channels = {
        "image": image,
        "timestamp": np.float64(frame.seconds + frame.nanoseconds * 1e-9),
        "width": np.int64(image.shape[1]),
        "height": np.int64(image.shape[0]),
        "x_axis": x_axis,
        "y_axis": y_axis,
    }
    return channels, pulse_id, (frame.seconds, frame.nanoseconds)


def generate(
    parameters: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], int, tuple[int, int]] | None]:
    """Yield ``(channels, pulse_id, (sec, ns))`` per camera frame, and None while waiting."""
    camera: CameraPVs | None = None
    reports = _Reports()
    geometry_seen, geometry = None, CameraGeometry(parameters)
    try:
        yield from wait_for_repeater(_TICK)
        while True:
            names = _names(parameters)
            if camera is None or names != camera.names:
                if camera is not None:
                    camera.close()
                camera = CameraPVs(names, _timeout(parameters))
            if geometry_key(parameters) != geometry_seen:
                geometry_seen, geometry = geometry_key(parameters), CameraGeometry(parameters)
            reports.flush(camera)
            frame = camera.take(_TICK)
            if frame is None:
                camera.check_connection()
                yield None
            else:
                # A dropped frame is an idle tick: the runner keeps control between frames.
                yield _channels(frame, names, geometry, parameters.get("dtype"), reports)
    finally:
        if camera is not None:
            camera.close()
