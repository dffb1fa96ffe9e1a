"""The EPICS camera source against a real caproto IOC, its generator driven in this process.

This process's CA context lives until pytest exits, longer than the 10 s after which libca
registers with the repeater through the host's own address: it is created inside a private
network namespace (``ioc`` fixture), where only ``lo`` exists.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import epics
import numpy as np
import pytest

from builtin_pipelines import camera_epics
from builtin_pipelines.camera_epics import configure, generate
from builtin_pipelines.lib.camera_geometry import CameraGeometry
from tests.epics_ioc import CameraIoc, Repeater, client_env, expected_frame, frame_counter
from tests.netns import private_network_namespace, unavailable_reason
from tests.support import free_port, wait_for

WIDTH, HEIGHT = 64, 48
PREFIX = "UT-EPICS-CAM"
LOGGER = "builtin_pipelines.camera_epics"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ioc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CameraIoc]:
    """A 64x48 camera at 100 Hz, a repeater, and this process's CA env, in a private netns."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"in-process CA clients need a private network namespace: {reason}")
    if epics.ca.libca is not None:
        pytest.skip("this process already has a CA context, made with another environment")
    with private_network_namespace(), pytest.MonkeyPatch.context() as env:
        repeater = Repeater(free_port()).start()
        camera = CameraIoc(PREFIX, free_port(), repeater.port, tmp_path_factory.mktemp("ioc"),
                           WIDTH, HEIGHT, rate=100, max_pixels=WIDTH * HEIGHT)  # fmt: skip
        try:
            camera.start()
            for key, value in client_env([camera.port], repeater.port).items():
                env.setenv(key, value)
            yield camera
        finally:
            camera.stop()
            repeater.stop()


@contextmanager
def source(parameters: dict[str, Any]) -> Iterator[Iterator[Any]]:
    """A running generator, closed (its monitors cleared) at the end."""
    frames = generate(parameters)
    try:
        yield frames
    finally:
        frames.close()


def take(frames: Iterator[Any], count: int, timeout: float = 10.0) -> list[Any]:
    """The next ``count`` frames, skipping idle ticks; fails at the deadline."""
    taken: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(taken) < count:
        assert time.monotonic() < deadline, f"got {len(taken)} of {count} frames"
        item = next(frames)
        if item is not None:
            taken.append(item)
    return taken


def test_frames_arrive_with_the_exact_pixels(ioc: CameraIoc) -> None:
    """Each frame is the IOC's frame, pixel for pixel, with CamServer's camera channels."""
    with source({"prefix": PREFIX}) as frames:
        items = take(frames, 20)
    counters = [frame_counter(channels["image"]) for channels, _, _ in items]
    assert counters == sorted(set(counters))
    for channels, pulse_id, (seconds, nanoseconds) in items:
        image = channels["image"]
        np.testing.assert_array_equal(image, expected_frame(frame_counter(image), WIDTH, HEIGHT))
        assert (channels["width"], channels["height"]) == (WIDTH, HEIGHT)
        assert channels["width"].dtype == channels["height"].dtype == np.int64
        assert channels["x_axis"].dtype == channels["y_axis"].dtype == np.float32
        np.testing.assert_array_equal(channels["x_axis"], np.arange(WIDTH))
        np.testing.assert_array_equal(channels["y_axis"], np.arange(HEIGHT))
        assert channels["timestamp"].dtype == np.float64
        assert channels["timestamp"] == pytest.approx(seconds + nanoseconds * 1e-9)
        assert abs(channels["timestamp"] - time.time()) < 5  # the IOC's clock is ours
        assert pulse_id == (seconds * 10**9 + nanoseconds) // 10**7  # 100 Hz ticks


def test_pulse_ids_come_from_pulse_id_pv_when_given(ioc: CameraIoc) -> None:
    """With pulse_id_pv, each frame carries that PV's value as its pulse id (here WIDTH, 64)."""
    with source({"prefix": PREFIX, "pulse_id_pv": f"{PREFIX}:WIDTH"}) as frames:
        items = take(frames, 3)
    assert [pulse_id for _, pulse_id, _ in items] == [WIDTH] * 3


def test_dbr_short_is_read_as_uint16_and_dtype_views_it(ioc: CameraIoc) -> None:
    """DBR_SHORT pixels come back as uint16 (above 32767 too); dtype int16 is a view of them."""
    with source({"prefix": PREFIX}) as frames:
        ((channels, _, _),) = take(frames, 1)
    assert channels["image"].dtype == np.uint16
    assert channels["image"].max() > 32767
    with source({"prefix": PREFIX, "dtype": "int16"}) as frames:
        ((channels, _, _),) = take(frames, 1)
    image = channels["image"]
    assert image.dtype == np.int16
    expected = expected_frame(frame_counter(image), WIDTH, HEIGHT).view(np.int16)
    np.testing.assert_array_equal(image, expected)


def test_a_dtype_of_another_size_drops_frames_with_a_report(ioc: CameraIoc, caplog) -> None:
    """A dtype that is no view of the PV's type is reported and its frames dropped, no crash."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with source({"prefix": PREFIX, "dtype": "uint32"}) as frames:
        wait_for(
            lambda: next(frames) is None and "is not a view of the PV's int16" in caplog.text,
            what="the dtype report",
        )


def test_width_and_height_changes_reshape_the_next_frames(ioc: CameraIoc) -> None:
    """After WIDTH and HEIGHT change on the IOC, frames arrive with the new shape, exact."""
    with source({"prefix": PREFIX}) as frames:
        take(frames, 2)
        try:
            assert epics.caput(f"{PREFIX}:WIDTH", 40, wait=True, timeout=5)
            assert epics.caput(f"{PREFIX}:HEIGHT", 30, wait=True, timeout=5)

            def new_shape() -> Any:
                channels, _, _ = take(frames, 1)[0]
                return channels if channels["image"].shape == (30, 40) else None

            channels = wait_for(new_shape, what="a 40x30 frame")
        finally:
            epics.caput(f"{PREFIX}:WIDTH", WIDTH, wait=True, timeout=5)
            epics.caput(f"{PREFIX}:HEIGHT", HEIGHT, wait=True, timeout=5)
    image = channels["image"]
    np.testing.assert_array_equal(image, expected_frame(frame_counter(image), 40, 30))
    assert (channels["width"], channels["height"]) == (40, 30)
    assert (len(channels["x_axis"]), len(channels["y_axis"])) == (40, 30)


def test_latest_frame_wins_when_the_reader_is_slow(ioc: CameraIoc, caplog, monkeypatch) -> None:
    """A reader that falls behind gets the newest frame next; the replaced ones are reported."""
    monkeypatch.setattr(camera_epics, "_REPORT", 0.0)
    caplog.set_level(logging.INFO, logger=LOGGER)
    published: list[int] = []  # what the IOC sends, seen by a monitor of our own

    def watch(value: Any = None, **_: Any) -> None:
        published.append(frame_counter(value))

    watcher = epics.PV(f"{PREFIX}:FPICTURE", auto_monitor=True, callback=watch)
    try:
        with source({"prefix": PREFIX}) as frames:
            ((first, _, _),) = take(frames, 1)
            start = frame_counter(first["image"])
            wait_for(lambda: published and published[-1] >= start + 20, what="20 more frames")
            behind = published[-1]
            (channels, _, _), (after, _, _) = take(frames, 2)
    finally:
        watcher.disconnect()
    # The newest frame, not start + 1 (our monitor may see it an instant before the source).
    assert frame_counter(channels["image"]) >= behind - 1
    assert frame_counter(after["image"]) > frame_counter(channels["image"])
    reports = [r for r in caplog.records if "replaced before they were read" in r.message]
    assert reports, caplog.text
    assert reports[-1].camera_drops >= behind - start - 2


def test_a_size_mismatch_drops_the_frame_and_a_longer_waveform_is_cut(ioc, caplog) -> None:
    """Too few pixels for width x height: reported and dropped; more pixels: cut, as CamServer."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    width = f"{PREFIX}:WIDTH"
    parameters = {"prefix": PREFIX, "width_pv": width, "height_pv": width}  # 64 x 64 pixels
    with source(parameters) as frames:
        wait_for(
            lambda: (
                next(frames) is None
                and "3072 pixels do not fill width 64 x height 64" in caplog.text
            ),
            what="the size report",
        )
        parameters.update(width_pv=f"{PREFIX}:HEIGHT", height_pv=f"{PREFIX}:HEIGHT")  # live
        ((channels, _, _),) = take(frames, 1)
    image = channels["image"]
    assert image.shape == (HEIGHT, HEIGHT)
    full = expected_frame(frame_counter(image), WIDTH, HEIGHT).reshape(-1)
    np.testing.assert_array_equal(image.reshape(-1), full[: HEIGHT * HEIGHT])


def test_camera_geometry_applies_to_epics_frames(ioc: CameraIoc) -> None:
    """mirror, rotate, roi and calibration shape the frame and its axes as the geometry says."""
    options = {"mirror_x": True, "rotate": 1, "roi": [0, 20, 0, 30],
               "camera_calibration": {"reference_marker": [0, 0, 40, 20],
               "reference_marker_width": 40.0}}  # fmt: skip
    with source({"prefix": PREFIX, **options}) as frames:
        ((channels, _, _),) = take(frames, 1)
    geometry = CameraGeometry(options)
    image = channels["image"]
    # Mirrored then turned, the counter pixels (row 0, columns 0 and 1) are now column 0.
    counter = int(image[0, 0]) | int(image[1, 0]) << 16
    np.testing.assert_array_equal(image, geometry.apply(expected_frame(counter, WIDTH, HEIGHT)))
    x_axis, y_axis = geometry.axes(WIDTH, HEIGHT)
    np.testing.assert_array_equal(channels["x_axis"], x_axis)
    np.testing.assert_array_equal(channels["y_axis"], y_axis)
    assert x_axis[0] == 20.0  # calibrated: origin 20, pixel size 40 / 40, inverted
    assert image.shape == (30, 20)
    assert (channels["width"], channels["height"]) == (20, 30)


def test_unknown_pvs_yield_idle_ticks_and_are_reported(ioc: CameraIoc, caplog) -> None:
    """PVs that never connect: the generator keeps ticking within 50 ms and names them."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with source({"prefix": "UT-NO-SUCH-CAM", "connection_timeout": 0.3}) as frames:
        ticks = []
        deadline = time.monotonic() + 5
        while "not connected after 0.3 s" not in caplog.text and time.monotonic() < deadline:
            start = time.perf_counter()
            assert next(frames) is None
            ticks.append(time.perf_counter() - start)
    assert "UT-NO-SUCH-CAM:WIDTH, UT-NO-SUCH-CAM:HEIGHT, UT-NO-SUCH-CAM:FPICTURE" in caplog.text
    assert max(ticks) < 0.1


NO_REPEATER = """
import json, logging, sys, time
import epics
from builtin_pipelines.camera_epics import generate
records = []
logging.basicConfig(level=logging.WARNING)
logging.getLogger().addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r.getMessage())})())
frames = generate({"prefix": "NO-REPEATER-CAM"})
items = [next(frames) for _ in range(10)]
frames.close()
print(json.dumps({"items": [i is None for i in items], "libca": epics.ca.libca is not None, "logs": records}))
"""  # noqa: E501


def test_no_ca_call_before_a_repeater_listens(tmp_path: Path) -> None:
    """Without a repeater on EPICS_CA_REPEATER_PORT the source waits: no libca, so no spawn."""
    env = {**client_env([free_port()], free_port()), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", NO_REPEATER], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    report = json.loads(result.stdout)
    assert report["items"] == [True] * 10
    assert report["libca"] is False
    assert "no Channel Access repeater listens on UDP port" in report["logs"][0]
    assert "****" not in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "image_pv must be a PV name \\(or set prefix\\), got None"),
        ({"prefix": ""}, "prefix must be a PV name prefix, got ''"),
        ({"prefix": "CAM", "width_pv": 7}, "width_pv must be a PV name \\(or set prefix\\), got 7"),
        ({"prefix": "CAM", "pulse_id_pv": ""}, "pulse_id_pv must be a PV name, got ''"),
        ({"prefix": "CAM", "dtype": "complex64"}, "dtype must be one of .*, got 'complex64'"),
        ({"prefix": "CAM", "connection_timeout": 0}, "connection_timeout must be a positive"),
        ({"prefix": "CAM", "rotate": 0.5}, "rotate must be a whole number of quarter turns"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(options: dict, message: str) -> None:
    """configure() refuses invalid options, quoting the bad value."""
    with pytest.raises(ValueError, match=message):
        configure(options)


def test_explicit_pvs_need_no_prefix() -> None:
    """image_pv, width_pv and height_pv alone are a valid configuration."""
    configure({"image_pv": "A:IMG", "width_pv": "A:W", "height_pv": "A:H", "dtype": "uint16"})
