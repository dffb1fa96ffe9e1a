"""Live previews for real: a PNG of the simulated camera's latest frame over REST."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Decoder
from supervisor.preview import render_preview
from tests.png_reader import read_png
from tests.support import wait_for

pytestmark = pytest.mark.system

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {
        "width": 300,
        "height": 200,
        "rate": 20,
        "noise": 5,
        "deterministic": True,
        "pulse_id_start": 5000,
    },
}


@pytest.fixture
def node(write_entry, start_supervisor):
    """A supervisor with a PUB camera 'cam' running and a PUSH camera entry 'pushcam'."""
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("pushcam.json", json.dumps({**CAMERA, "output": {"mode": "PUSH"}}))
    sup = start_supervisor()
    response = sup.api("POST", "/instances", json={"name": "cam", "entry": "cam"})
    assert response.status_code == 201, response.text
    wait_for(lambda: sup.instance("cam")["ready"], timeout=15, what="camera ready")
    return sup


class Reader:
    """A socket on a stream that keeps every message it reads, by pulse id."""

    def __init__(self, url: str, kind: int) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(kind)
        self.socket.setsockopt(zmq.RCVHWM, 1000)
        if kind == zmq.SUB:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(url)
        self.decoder = Decoder()
        self.images: dict[int, np.ndarray] = {}

    def read_until(self, done, timeout: float = 15.0) -> None:
        """Read messages until ``done()`` is true; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"read pulses {sorted(self.images)[-5:]}"
            if self.socket.poll(100):
                message = self.decoder.decode(self.socket.recv_multipart())
                if message is not None:
                    self.images[message.pulse_id] = message.data["image"]

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


def test_the_preview_is_a_frame_the_camera_sent_rendered(node) -> None:
    """The PNG is 100 pixels wide for width=100, and is exactly the render of the frame whose
    pulse id it names, as a subscriber of the camera received it."""
    reader = Reader(node.instance("cam")["stream"], zmq.SUB)
    try:
        reader.read_until(lambda: reader.images)  # subscribed: it sees every frame from now
        first = min(reader.images)
        response = node.api("GET", "/instances/cam/preview", params={"width": 100})
        assert response.status_code == 200, response.text
        pulse_id = int(response.headers["x-pulse-id"])
        reader.read_until(lambda: max(reader.images) > pulse_id)
    finally:
        reader.close()
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-image-shape"] == "200x300"
    assert pulse_id >= first >= 5000
    png = read_png(response.content)
    assert png.rgb.shape == (66, 100, 3)  # 300 / 100: blocks of 3, 200 // 3 rows
    expected = render_preview(reader.images[pulse_id], colormap="viridis", width=100)
    np.testing.assert_array_equal(png.rgb, read_png(expected.png).rgb)
    assert response.headers["x-image-range"] == f"{expected.vmin!r},{expected.vmax!r}"


def test_a_push_output_is_refused_and_its_consumer_keeps_every_message(node) -> None:
    """409 for a PUSH camera: its one consumer still gets consecutive pulse ids across the call."""
    response = node.api("POST", "/instances", json={"name": "pushcam", "entry": "pushcam"})
    assert response.status_code == 201, response.text
    wait_for(lambda: node.instance("pushcam")["ready"], timeout=15, what="pushcam ready")
    reader = Reader(node.instance("pushcam")["stream"], zmq.PULL)
    try:
        reader.read_until(lambda: reader.images)
        refused = node.api("GET", "/instances/pushcam/preview")
        last = max(reader.images)
        reader.read_until(lambda: max(reader.images) >= last + 5)
    finally:
        reader.close()
    assert refused.status_code == 409
    assert "has no PUB output to preview" in refused.json()["detail"]
    pulses = sorted(reader.images)
    assert pulses == list(range(pulses[0], pulses[-1] + 1)), "a message went elsewhere"


def test_a_stopped_camera_is_409(node) -> None:
    """No preview of a stopped instance: 409 saying to start it."""
    assert node.api("POST", "/instances/cam/stop").status_code == 200
    response = node.api("GET", "/instances/cam/preview")
    assert response.status_code == 409
    assert "start it first" in response.json()["detail"]
