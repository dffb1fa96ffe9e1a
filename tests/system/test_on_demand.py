"""On-demand streams for real: asked for by name, stopped when their last client leaves."""

from __future__ import annotations

import json

import zmq

from supervisor.contract.bsread import Decoder
from tests.support import wait_for

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 32, "height": 24, "rate": 20},
    "no_client_timeout": 1,
}


def test_a_requested_stream_runs_while_read_and_stops_after_its_last_client(
    write_entry, start_supervisor
) -> None:
    write_entry("cam.json", json.dumps(CAMERA))
    sup = start_supervisor("--monitor-interval", "0.2")
    response = sup.api("POST", "/streams/cam")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["on_demand"] is True

    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(info["stream"])
    try:
        assert sock.poll(20_000), "no message from the requested stream"
        assert Decoder().decode(sock.recv_multipart()) is not None
        counted = wait_for(
            lambda: (i := sup.instance("cam"))["stats"]["clients"] == 1 and i,
            timeout=15,
            what="the client counted",
        )
        assert counted["idle_since"] is None
        assert counted["stops_at"] is None
    finally:
        sock.close()
        context.term()

    counting = wait_for(
        lambda: (i := sup.instance("cam"))["stops_at"] and i, timeout=15, what="the countdown"
    )
    assert counting["stops_at"] - counting["idle_since"] == 1  # no_client_timeout
    stopped = sup.wait_state("cam", "stopped", timeout=15)
    assert stopped["desired"] == "stopped"
    logs = sup.api("GET", "/instances/cam/logs").json()
    assert any("no client for 1 s: stopped (on demand)" in e["message"] for e in logs)

    again = sup.api("POST", "/streams/cam").json()
    assert again["stream"] == info["stream"]
    sup.wait_state("cam", "running", "starting", timeout=15)


def test_a_stream_of_an_entry_without_output_is_409_and_creates_nothing(
    write_entry, start_supervisor
) -> None:
    write_entry("quiet.sh", "#!/bin/sh\nexec sleep 60\n", executable=True)
    write_entry("quiet.json", json.dumps({"program": "quiet.sh", "output": {"enabled": False}}))
    sup = start_supervisor()
    response = sup.api("POST", "/streams/quiet")
    assert response.status_code == 409
    assert "entry 'quiet' has no output stream" in response.json()["detail"]
    assert sup.api("GET", "/instances").json() == []
