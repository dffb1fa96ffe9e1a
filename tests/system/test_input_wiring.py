"""Pipelines wired to their sources: cameras started on demand, shared, chained, no cycles."""

from __future__ import annotations

import json

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.system

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 32, "height": 24, "rate": 40, "noise": 0, "deterministic": True},
}

# A camera pipeline that reports the image sum, and a stream pipeline that passes one on.
SUM = """
import numpy as np

def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata):
    return {"sum": np.int64(image.sum(dtype=np.int64)), "tag": parameters.get("tag", "")}
"""
DOUBLE = """
def process(data, pulse_id, timestamp, parameters):
    return {"double": data["sum"] * 2}
"""


def _stats_out(sup, name: str) -> int:
    return sup.instance(name)["stats"]["messages_out"]


@pytest.fixture
def entries(write_entry):
    """A camera entry, a camera pipeline reading it, and a stream pipeline script."""
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("summer.py", SUM)
    write_entry("sum.json", json.dumps({"program": "summer.py", "input": {"camera": "cam"}}))
    write_entry("double.py", DOUBLE)


def test_a_pipeline_starts_its_camera_and_two_pipelines_share_it(entries, start_supervisor):
    """Creating a pipeline creates and starts the camera instance; a second one reuses it."""
    sup = start_supervisor()
    for name in ("p1", "p2"):
        response = sup.api("POST", "/instances", json={"name": name, "entry": "sum"})
        assert response.status_code == 201, response.text
    names = sorted(i["name"] for i in sup.api("GET", "/instances").json())
    assert names == ["cam", "p1", "p2"]
    camera = sup.wait_state("cam", "running")
    for name in ("p1", "p2"):
        assert sup.instance(name)["data_url"] == camera["stream"]
        wait_for(lambda n=name: _stats_out(sup, n) > 3, what=f"{name} output")
        assert sup.instance(name)["stats"]["errors"] == 0


def test_a_stopped_camera_is_started_again_by_its_pipeline(entries, start_supervisor):
    """An operator's stop of the camera is undone when a pipeline that needs it starts."""
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "p1", "entry": "sum"})
    sup.wait_state("cam", "running")
    sup.api("POST", "/instances/p1/stop")
    sup.api("POST", "/instances/cam/stop")
    sup.wait_state("cam", "stopped")
    assert sup.api("POST", "/instances/p1/start").status_code == 200
    sup.wait_state("cam", "running")
    wait_for(lambda: _stats_out(sup, "p1") > 0, what="p1 output after the restart")


def test_pipelines_chain_and_a_url_input_is_used_as_given(entries, start_supervisor):
    """A stream pipeline reads another pipeline's output; an explicit URL input is kept."""
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "p1", "entry": "sum"})
    response = sup.api(
        "POST",
        "/instances",
        json={"name": "d1", "entry": "double", "input": {"instance": "p1"}},
    )
    assert response.status_code == 201, response.text
    wait_for(lambda: _stats_out(sup, "d1") > 3, what="chained output")
    assert sup.instance("d1")["data_url"] == sup.instance("p1")["stream"]
    url = sup.instance("cam")["stream"]
    sup.api("POST", "/instances", json={"name": "p3", "entry": "summer", "input": url})
    assert sup.instance("p3")["data_url"] == url
    wait_for(lambda: _stats_out(sup, "p3") > 0, what="output of the URL-fed pipeline")


def test_camera_name_in_the_config_names_the_input(entries, start_supervisor):
    """A CamServer pipeline config with camera_name and no input reads that camera."""
    sup = start_supervisor()
    response = sup.api(
        "POST",
        "/instances",
        json={"name": "legacy", "entry": "summer", "config": {"camera_name": "cam"}},
    )
    assert response.status_code == 201, response.text
    camera = sup.wait_state("cam", "running")
    assert sup.instance("legacy")["data_url"] == camera["stream"]
    wait_for(lambda: _stats_out(sup, "legacy") > 0, what="legacy output")


def test_an_input_cycle_fails_both_with_the_cycle_named(write_entry, start_supervisor):
    """a reads b and b reads a: neither starts, and the reason names the cycle."""
    write_entry("double.py", DOUBLE)
    write_entry("a.json", json.dumps({"program": "double.py", "input": "b"}))
    write_entry("b.json", json.dumps({"program": "double.py", "input": "a"}))
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "a", "entry": "a"})
    a = sup.wait_state("a", "failed")
    assert "input cycle: a -> b -> a" in a["reason"]
    assert "input cycle: a -> b -> a" in sup.instance("b")["reason"]


def test_an_unknown_input_fails_the_instance_with_a_clear_reason(write_entry, start_supervisor):
    """An input that is neither an instance nor an entry: failed, and the reason says so."""
    write_entry("double.py", DOUBLE)
    write_entry("lost.json", json.dumps({"program": "double.py", "input": {"camera": "nocam"}}))
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "lost", "entry": "lost"})
    info = sup.wait_state("lost", "failed")
    assert "input 'nocam' is neither an instance nor a registry entry" in info["reason"]
