"""The EPICS camera under a real supervisor: the IOC's exact frames, and an IOC restart.

Every process of this module (repeater, IOCs, supervisor, runner) is started from inside a
private network namespace when this process may make one (``network`` fixture), so that libca's
repeater registration, which targets the host's own address after ~10 s, stays inside it.
Without one only the short test runs: its CA client lives a few seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq

from supervisor.contract.bsread import Decoder, Message
from tests.epics_ioc import CameraIoc, Repeater, client_env, expected_frame, frame_counter
from tests.netns import private_network_namespace, unavailable_reason
from tests.support import SupervisorProcess, free_port, wait_for

pytestmark = pytest.mark.system

WIDTH, HEIGHT = 64, 48
PREFIX = "SYS-EPICS-CAM"


@pytest.fixture(scope="module")
def network() -> Iterator[str | None]:
    """Run the module in a private network namespace; yields why not when it cannot."""
    reason = unavailable_reason()
    if reason is not None:
        yield reason
        return
    with private_network_namespace():
        yield None


@pytest.fixture(scope="module")
def repeater(network: str | None) -> Iterator[Repeater]:
    """The CA repeater every client of this module registers with."""
    started = Repeater(free_port()).start()
    yield started
    started.stop()


@pytest.fixture
def ioc(repeater: Repeater, tmp_path: Path) -> Iterator[CameraIoc]:
    """A 64x48 camera IOC at 50 Hz."""
    camera = CameraIoc(PREFIX, free_port(), repeater.port, tmp_path, WIDTH, HEIGHT, rate=50)
    yield camera.start()
    camera.stop()


@pytest.fixture
def camera(start_supervisor, write_entry, ioc: CameraIoc, repeater: Repeater) -> SupervisorProcess:
    """A supervisor running the ``cam`` instance of an EPICS camera entry, ready."""
    entry = {
        "builtin": "camera_epics",
        "parameters": {"prefix": PREFIX},
        "env": client_env([ioc.port], repeater.port),
        "output": {"mode": "PUB"},
    }
    write_entry("cam.json", json.dumps(entry))
    sup = start_supervisor()
    response = sup.api("POST", "/instances", json={"name": "cam", "entry": "cam"})
    assert response.status_code == 201, response.text
    wait_for(lambda: sup.instance("cam")["ready"], what="cam ready")
    return sup


def receive(stream: str, count: int, accept=lambda m: True, timeout: float = 15.0) -> list:
    """The next ``count`` messages of ``stream`` that ``accept`` takes, decoded by our codec."""
    context = zmq.Context()  # created here, so its I/O thread is in this test's namespace
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(stream)
    decoder, messages = Decoder(), []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            if sock.poll(100):
                message = decoder.decode(sock.recv_multipart(copy=False))
                if message is not None and accept(message):
                    messages.append(message)
    finally:
        sock.close(linger=0)
        context.term()
    assert len(messages) == count, f"got {len(messages)} of {count} messages from {stream}"
    return messages


def check_exact(message: Message) -> int:
    """Assert the message holds an exact IOC frame with camera channels; its frame number."""
    data = message.data
    image = data["image"]
    assert image.dtype == np.uint16
    counter = frame_counter(image)
    np.testing.assert_array_equal(image, expected_frame(counter, WIDTH, HEIGHT))
    assert (data["width"], data["height"]) == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(data["x_axis"], np.arange(WIDTH, dtype=np.float32))
    np.testing.assert_array_equal(data["y_axis"], np.arange(HEIGHT, dtype=np.float32))
    seconds, nanoseconds = message.global_timestamp
    assert data["timestamp"] == pytest.approx(seconds + nanoseconds * 1e-9)
    assert message.pulse_id == (seconds * 10**9 + nanoseconds) // 10**7
    return counter


def interfaces(pid: int) -> list[str]:
    """The network interfaces process ``pid`` sees."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines]


def stamp(message: Message) -> float:
    """The message's global timestamp in seconds."""
    seconds, nanoseconds = message.global_timestamp
    return seconds + nanoseconds * 1e-9


def logs(sup: SupervisorProcess) -> str:
    """The instance's log, as text."""
    response = sup.api("GET", "/instances/cam/logs", params={"tail": 1000, "format": "text"})
    response.raise_for_status()
    return response.text


def assert_no_stray_ca_process(sup: SupervisorProcess, *ours: Repeater | CameraIoc) -> None:
    """libca spawned nothing: no caRepeater anywhere, no other process with this test's CA env."""
    assert "****" not in logs(sup)  # libca's complaint when it fails to exec caRepeater
    assert "caRepeater" not in sup.logs()
    port = str(ours[0].repeater_port if isinstance(ours[0], CameraIoc) else ours[0].port)
    allowed = {started.proc.pid for started in ours if started.proc is not None}
    strays = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            environ = proc.environ()
        except (psutil.Error, OSError):
            continue
        with_our_env = environ.get("EPICS_CA_REPEATER_PORT") == port
        if proc.info["name"] == "caRepeater" or (with_our_env and proc.pid not in allowed):
            strays.append((proc.pid, proc.info["name"]))
    assert not strays


def stop_instance(sup: SupervisorProcess) -> None:
    """Stop ``cam`` and wait for it: its CA client is gone."""
    sup.api("POST", "/instances/cam/stop").raise_for_status()
    sup.wait_state("cam", "stopped")


def test_the_supervised_camera_streams_the_iocs_exact_frames(camera, ioc, repeater) -> None:
    """Frames read through supervisor + runner + bsread are the IOC's, pixel for pixel."""
    stream = camera.instance("cam")["stream"]
    counters = [check_exact(m) for m in receive(stream, 10)]
    assert counters == sorted(set(counters))
    stop_instance(camera)
    assert_no_stray_ca_process(camera, repeater, ioc)


@pytest.mark.skipif(
    unavailable_reason() is not None,
    reason=f"CA clients living over 10 s need a private network namespace: {unavailable_reason()}",
)
def test_frames_flow_again_after_the_ioc_restarts(camera, ioc, repeater) -> None:
    """Stop and restart the IOC: the same instance reconnects by itself and sends its frames."""
    before = camera.instance("cam")
    for pid in (camera.proc.pid, before["pid"], ioc.proc.pid, repeater.proc.pid):
        assert interfaces(pid) == ["lo"]  # all of them in the private namespace
    stream = before["stream"]
    for message in receive(stream, 5):
        check_exact(message)
    ioc.stop()
    wait_for(lambda: "disconnected" in logs(camera), timeout=10, what="the disconnect logged")
    restarted = time.time()
    ioc.start()  # on the same port
    # libca reconnects in 4-12 s: the new IOC's beacons reach it through the repeater only once
    # it has registered there, 10 s after it started. Stamps tell the new IOC's frames apart.
    (message,) = receive(stream, 1, accept=lambda m: stamp(m) >= restarted, timeout=30)
    check_exact(message)
    counters = [check_exact(m) for m in receive(stream, 5)]
    assert counters == sorted(set(counters))
    after = camera.instance("cam")
    assert (after["pid"], after["run"]) == (before["pid"], before["run"])
    assert "connected again" in logs(camera)
    stop_instance(camera)
    assert_no_stray_ca_process(camera, repeater, ioc)
