"""The beam-metrics builtin for real: camera -> pipeline over ZMQ, backgrounds over REST."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Decoder, Message
from tests import camserver_reference
from tests.support import wait_for

pytestmark = pytest.mark.system

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {
        "width": 80,
        "height": 60,
        "rate": 20,
        "noise": 0,
        "background": 10,
        "deterministic": True,
        "beam_x": 30.0,
        "beam_y": 25.0,
        "beam_sigma_x": 6.0,
        "beam_sigma_y": 4.0,
    },
}
BEAM = {"builtin": "beam_metrics", "input": {"camera": "cam"}}
LEADING = ["x_axis", "y_axis", "image", "width", "height", "processing_parameters"]


def receive(url: str, count: int = 1, timeout: float = 15.0) -> list[Message]:
    """The next ``count`` messages of the stream at ``url``, decoded by our decoder."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(url)
    decoder = Decoder()
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            if socket.poll(100):
                message = decoder.decode(socket.recv_multipart())
                if message is not None:
                    messages.append(message)
    finally:
        socket.close(linger=0)
        context.term()
    assert len(messages) == count, f"got {len(messages)} of {count} messages from {url}"
    return messages


@pytest.fixture
def node(write_entry, start_supervisor):
    """A supervisor whose pipeline 'beam' reads the camera 'cam' (started on demand)."""
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("beam.json", json.dumps(BEAM))
    sup = start_supervisor()
    response = sup.api("POST", "/instances", json={"name": "beam", "entry": "beam"})
    assert response.status_code == 201, response.text
    wait_for(lambda: sup.instance("beam")["stats"]["messages_out"] > 0, what="beam output")
    return sup


def test_the_output_is_camserver_s_channels_with_its_numbers(node) -> None:
    """Channel names, order, dtypes and values match the reference formulas on the same frame."""
    camera = receive(node.instance("cam")["stream"])[0].data
    out = receive(node.instance("beam")["stream"])[0].data
    expected = camserver_reference.process_image(
        camera["image"], camera["x_axis"], camera["y_axis"], (0, 0), {}
    )
    assert list(out)[:6] == LEADING
    assert list(out) == list(expected)
    for key in ("x_profile", "y_profile"):
        assert out[key].dtype == np.int64
        np.testing.assert_array_equal(out[key], expected[key])
    assert out["intensity"] == expected["intensity"]
    for key in ("x_fit_mean", "y_fit_mean", "x_fit_standard_deviation", "x_center_of_mass"):
        assert out[key] == pytest.approx(expected[key], rel=1e-6), key
    assert out["x_fwhm"] == expected["x_fwhm"]
    assert out["x_fit_mean"] == pytest.approx(30.0, abs=0.05)
    assert json.loads(out["processing_parameters"])["image_background_enable"] is False


def test_a_collected_background_is_subtracted(node) -> None:
    """Collect a background of the (noiseless) camera, enable it: the image becomes zero."""
    response = node.api("POST", "/instances/cam/backgrounds", params={"n_images": 3})
    assert response.status_code == 201, response.text
    background = response.json()["id"]
    assert background.startswith("cam_")
    patch = {"image_background": background, "image_background_enable": True}
    response = node.api("PATCH", "/instances/beam/config", json=patch)
    assert response.status_code == 200, response.text

    def subtracted() -> dict[str, Any] | None:
        data = receive(node.instance("beam")["stream"])[0].data
        return data if data["intensity"] == 0 else None

    data = wait_for(subtracted, what="a zero image after the subtraction")
    assert not data["image"].any()
    assert node.instance("beam")["stats"]["errors"] == 0


def _upload(node, background: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    response = node.api("PUT", f"/backgrounds/{background}/data", content=buffer.getvalue())
    assert response.status_code == 200, response.text


def test_a_background_of_the_wrong_shape_is_an_error_in_the_api(node) -> None:
    """A wrong-shape background: frames fail, and the API's last_error says why."""
    _upload(node, "wrong", np.zeros((10, 10), np.uint16))
    patch = {"image_background": "wrong", "image_background_enable": True}
    assert node.api("PATCH", "/instances/beam/config", json=patch).status_code == 200
    stats = wait_for(
        lambda: (s := node.instance("beam")["stats"])["last_error"] and s, what="last_error"
    )
    assert (
        "Bad background image size: background 'wrong' is 10x10, the image is 60x80"
        in (stats["last_error"])
    )
    assert stats["errors"] > 0
    assert node.instance("beam")["state"] == "running"


def test_notify_on_error_keeps_the_stream_going_flagged(node) -> None:
    """A screen-panel instance (_sp) sends the six leading channels with the error flagged."""
    _upload(node, "wrong", np.zeros((10, 10), np.uint16))
    config = {"image_background": "wrong", "image_background_enable": True}
    response = node.api(
        "POST", "/instances", json={"name": "beam_sp", "entry": "beam", "config": config}
    )
    assert response.status_code == 201, response.text
    wait_for(lambda: node.instance("beam_sp")["stats"]["messages_out"] > 0, what="_sp output")
    data = receive(node.instance("beam_sp")["stream"])[0].data
    assert list(data) == LEADING
    assert not data["image"].any()
    error = json.loads(data["processing_parameters"])["processing_error"]
    assert error.startswith("Bad background image size")
    assert node.instance("beam_sp")["stats"]["last_error"] == error


def test_a_bad_config_is_refused_with_the_key_quoted(node) -> None:
    """A malformed region of interest is a 422 quoting it; the old config stays."""
    response = node.api(
        "PATCH", "/instances/beam/config", json={"image_region_of_interest": [0, -5, 0, 10]}
    )
    assert response.status_code == 422
    assert "image_region_of_interest must be" in response.json()["detail"]
    assert "[0, -5, 0, 10]" in response.json()["detail"]
