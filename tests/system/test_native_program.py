"""A pipeline in C, for real: the example program of runners/c as a registry executable.

The compiled ``threshold_projections`` is copied into the registry, started by the supervisor on
the simulated camera, read by our decoder and by psi-bsread, reconfigured live, its logs read
over REST, and SIGKILLed to be restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Decoder, Message
from tests.support import SupervisorProcess, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(bsread|mflow)"),
]

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "runners" / "c"
DEADLINE = 30.0


@pytest.fixture(scope="module")
def program() -> Path:
    """The example program, built by the project's own make (a no-op when up to date)."""
    subprocess.run(["make", "-s", "-C", str(LIBRARY)], check=True, timeout=300)
    return LIBRARY / "build" / "threshold_projections"


@pytest.fixture
def node(program: Path, registry: Path, start_supervisor) -> SupervisorProcess:
    """A camera (deterministic frames) and the C program reading it, as registry entries."""
    shutil.copy(program, registry / "threshold_projections")
    camera = {
        "builtin": "camera_simulation",
        "parameters": {"width": 64, "height": 48, "rate": 50, "deterministic": True},
    }
    pipeline = {
        "program": "threshold_projections",
        "input": {"camera": "cam"},
        "parameters": {"threshold": 10},
        "restart": {"mode": "always"},
    }
    (registry / "cam.json").write_text(json.dumps(camera))
    (registry / "proj.json").write_text(json.dumps(pipeline))
    sup = start_supervisor()
    response = sup.api("POST", "/instances", json={"name": "proj", "entry": "proj"})
    assert response.status_code == 201, response.text
    wait_for(lambda: sup.instance("proj")["ready"], timeout=DEADLINE, what="the C program ready")
    return sup


def expected(image: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    kept = np.where(image >= threshold, image, 0).astype(np.int64)
    return {
        "x_profile": kept.sum(axis=0),
        "y_profile": kept.sum(axis=1),
        "intensity": kept.sum(),
        "max_value": kept.max(),
    }


def pairs(sup: SupervisorProcess, count: int, where=lambda camera, result: True) -> list:
    """``count`` (camera message, program message) pairs of the same pulse id meeting ``where``."""
    context = zmq.Context()
    sockets = []
    for name in ("cam", "proj"):
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(sup.instance(name)["stream"])
        sockets.append(sock)
    decoder = Decoder()
    images: dict[int, Message] = {}
    found: list[tuple[Message, Message]] = []
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    try:
        deadline = time.monotonic() + DEADLINE
        while len(found) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} pairs"
            for sock, _ in poller.poll(100):
                message = decoder.decode(sock.recv_multipart())
                if message is None:
                    continue
                if sock is sockets[0]:
                    images[message.pulse_id] = message
                elif message.pulse_id in images and where(images[message.pulse_id], message):
                    found.append((images[message.pulse_id], message))
    finally:
        for sock in sockets:
            sock.close()
        context.term()
    return found[:count]


def logs(sup: SupervisorProcess, name: str) -> str:
    entries = sup.api("GET", f"/instances/{name}/logs", params={"n": 500}).json()
    return "\n".join(entry["message"] for entry in entries)


def test_the_c_program_s_projections_equal_numpy_s(node: SupervisorProcess) -> None:
    """Every output of the C program is numpy's result on the camera's image of that pulse."""
    for camera, result in pairs(node, 5):
        want = expected(camera.data["image"], 10)
        assert list(result.data) == list(want)
        for name, value in want.items():
            np.testing.assert_array_equal(result.data[name], value, err_msg=name)
        assert result.global_timestamp == camera.global_timestamp


def test_psi_bsread_reads_the_c_program_s_output(node: SupervisorProcess) -> None:
    """PSI's reference receiver decodes what the C library encodes."""
    from bsread import SUB, Source

    host, port = node.instance("proj")["stream"].removeprefix("tcp://").rsplit(":", 1)
    with Source(host=host, port=int(port), mode=SUB, receive_timeout=1000) as source:
        message = wait_for(source.receive, timeout=DEADLINE, what="a message through psi-bsread")
    data = message.data.data
    assert list(data) == ["x_profile", "y_profile", "intensity", "max_value"]
    assert data["x_profile"].value.shape == (64,)
    assert data["y_profile"].value.shape == (48,)
    assert data["intensity"].value == data["x_profile"].value.sum()


def test_a_live_change_is_acknowledged_and_applied_and_a_bad_one_refused(
    node: SupervisorProcess,
) -> None:
    """threshold 300: acked (200), logged by the program, and the outputs follow it."""
    response = node.api("PATCH", "/instances/proj/config", json={"threshold": 300})
    assert response.status_code == 200, response.text

    def under_300(camera: Message, result: Message) -> bool:  # sent after the change
        return result.data["intensity"] == expected(camera.data["image"], 300)["intensity"]

    for camera, result in pairs(node, 3, where=under_300):
        want = expected(camera.data["image"], 300)
        for name in ("x_profile", "y_profile", "max_value"):
            np.testing.assert_array_equal(result.data[name], want[name], err_msg=name)
    assert "threshold changes from 10 to 300" in logs(node, "proj")
    response = node.api("PATCH", "/instances/proj/config", json={"threshold": "high"})
    assert response.status_code == 422
    assert "config key 'threshold' must be a number >= 0, got \"high\"" in response.json()["detail"]
    assert node.instance("proj")["config"]["threshold"] == 300


def test_sigkill_makes_the_supervisor_restart_it(node: SupervisorProcess) -> None:
    """The C program killed with SIGKILL comes back with a new pid and processes again."""
    before = node.instance("proj")
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(
        lambda: (
            (i := node.instance("proj"))["pid"] not in (None, before["pid"]) and i["ready"] and i
        ),
        timeout=DEADLINE,
        what="the restarted C program",
    )
    assert after["restarts"] == before["restarts"] + 1
    assert "killed by SIGKILL" in logs(node, "proj")
    assert pairs(node, 2)
