"""The demo path for real: simulated camera -> Python pipeline -> PSI's own bsread client."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.support import wait_for

pytestmark = [
    pytest.mark.system,
    # psi-bsread is a test-only peer; it warns about its own use of numpy/pyzmq APIs.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {
        "width": 64,
        "height": 48,
        "rate": 50,
        "noise": 0,
        "background": 0,
        "deterministic": True,
        "beam_x": 20,
        "beam_y": 30,
        "beam_sigma_x": 4,
        "beam_sigma_y": 3,
    },
}

PIPELINE = """
import logging
import numpy as np

log = logging.getLogger("centroid")

def configure(parameters):
    if parameters.get("scale", 1) <= 0:
        raise ValueError(f"scale must be positive, got {parameters['scale']!r}")

def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata):
    x_profile = image.sum(axis=0, dtype=np.int64)
    y_profile = image.sum(axis=1, dtype=np.int64)
    scale = parameters.get("scale", 1)
    return {
        "x_center_of_mass": float((x_profile * x_axis).sum() / x_profile.sum()) * scale,
        "y_center_of_mass": float((y_profile * y_axis).sum() / y_profile.sum()) * scale,
        "x_profile": x_profile,
        "width": len(x_axis),
        # A camera's own channels are arguments, never bsdata (CamServer's split).
        "extra_channels": len(bsdata),
    }
"""


@pytest.fixture
def camera_and_pipeline(start_supervisor, write_entry):
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("centroid.py", PIPELINE)
    write_entry("centroid.json", json.dumps({"program": "centroid.py", "input": "cam"}))
    sup = start_supervisor()
    for name in ("cam", "centroid"):
        response = sup.api("POST", "/instances", json={"name": name, "entry": name})
        assert response.status_code == 201, response.text
    for name in ("cam", "centroid"):
        wait_for(lambda n=name: sup.instance(n)["ready"], what=f"{name} ready")
    return sup


def _receive(stream: str, count: int, timeout: float = 15.0):
    from bsread import SUB, Source

    host, port = stream.removeprefix("tcp://").split(":")
    messages = []
    deadline = time.monotonic() + timeout
    with Source(host=host, port=int(port), mode=SUB, receive_timeout=200) as source:
        while len(messages) < count and time.monotonic() < deadline:
            message = source.receive()
            if message is not None:
                messages.append(message)
    assert len(messages) == count, f"got {len(messages)} of {count} messages from {stream}"
    return messages


def test_psi_bsread_client_receives_the_pipeline_output(camera_and_pipeline):
    """PSI's bsread Source subscribes to the pipeline and reads its channels and values."""
    sup = camera_and_pipeline
    info = sup.instance("centroid")
    assert info["stream"].startswith("tcp://127.0.0.1:")
    messages = _receive(info["stream"], 5)
    for message in messages:
        data = message.data.data
        assert list(data) == [
            "x_center_of_mass",
            "y_center_of_mass",
            "x_profile",
            "width",
            "extra_channels",
        ]
        assert data["x_center_of_mass"].value == pytest.approx(20, abs=0.5)
        assert data["y_center_of_mass"].value == pytest.approx(30, abs=0.5)
        assert data["x_profile"].value.shape == (64,)
        assert data["x_profile"].value.dtype == np.int64
        assert data["width"].value == 64
        assert data["extra_channels"].value == 0
    pulse_ids = [m.data.pulse_id for m in messages]
    assert pulse_ids == sorted(pulse_ids)
    stats = wait_for(
        lambda: (s := sup.instance("centroid")["stats"])["messages_in"] > 0 and s,
        what="pipeline status",
    )
    assert stats["rate_in"] >= 0
    assert stats["messages_out"] > 0


def test_live_config_change_reaches_the_function(camera_and_pipeline):
    """A PATCH is acknowledged by the runner and the next outputs use the new parameter."""
    sup = camera_and_pipeline
    response = sup.api("PATCH", "/instances/centroid/config", json={"scale": 2})
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == "live"
    stream = sup.instance("centroid")["stream"]
    messages = _receive(stream, 3)
    assert messages[-1].data.data["x_center_of_mass"].value == pytest.approx(40, abs=1)


def test_refused_config_is_a_422_quoting_the_program(camera_and_pipeline):
    """The pipeline's configure() refusal comes back as the HTTP answer; the old config stays."""
    sup = camera_and_pipeline
    response = sup.api("PATCH", "/instances/centroid/config", json={"scale": -1})
    assert response.status_code == 422
    assert "scale must be positive, got -1" in response.json()["detail"]
    assert "scale" not in sup.instance("centroid")["config"]


def test_killed_pipeline_is_restarted_and_flows_again(camera_and_pipeline):
    """SIGKILL of the pipeline process: the supervisor restarts it and output flows again."""
    import os
    import signal

    sup = camera_and_pipeline
    before = sup.instance("centroid")
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(
        lambda: (i := sup.instance("centroid"))["run"] == before["run"] + 1 and i["ready"] and i,
        what="restarted pipeline ready",
    )
    assert after["exit_signal"] == "SIGKILL"
    assert after["stream"] == before["stream"]
    _receive(after["stream"], 2)


def test_a_restarted_camera_feeds_the_same_pipeline_again(camera_and_pipeline):
    """SIGKILL the camera: it comes back on its port and the running pipeline resumes."""
    import os
    import signal

    sup = camera_and_pipeline
    pipeline_before = sup.instance("centroid")
    camera_before = sup.instance("cam")
    os.kill(camera_before["pid"], signal.SIGKILL)
    wait_for(
        lambda: (i := sup.instance("cam"))["run"] == camera_before["run"] + 1 and i["ready"],
        what="camera back",
    )
    before = sup.instance("centroid")["stats"]["messages_in"]
    wait_for(
        lambda: sup.instance("centroid")["stats"]["messages_in"] > before + 5,
        what="pipeline input flowing again",
    )
    pipeline_after = sup.instance("centroid")
    assert pipeline_after["run"] == pipeline_before["run"]
    assert pipeline_after["pid"] == pipeline_before["pid"]
    _receive(pipeline_after["stream"], 2)
