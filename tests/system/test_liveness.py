"""Liveness for real: a frozen pipeline is seen unresponsive within a deadline, and recovers."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.support import wait_for

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 32, "height": 24, "rate": 20},
}


def _flowing(sup, name: str) -> dict:
    return wait_for(
        lambda: (i := sup.instance(name))["ready"] and i["stats"]["rate_out"] > 0 and i,
        timeout=30,
        what=f"{name} ready and sending",
    )


def test_a_stopped_program_is_unresponsive_within_two_intervals_and_recovers(
    write_entry, start_supervisor
) -> None:
    """SIGSTOP: unresponsive (state still running, rates 0) in under 2 status intervals plus
    slack; SIGCONT: responsive again, sending, the same run."""
    write_entry("cam.json", json.dumps(CAMERA))
    sup = start_supervisor()
    assert sup.api("POST", "/instances", json={"name": "cam", "entry": "cam"}).status_code == 201
    before = _flowing(sup, "cam")
    pid = before["pid"]
    os.killpg(pid, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        frozen = wait_for(
            lambda: (i := sup.instance("cam"))["unresponsive"] and i,
            timeout=10,
            what="cam unresponsive",
        )
        noticed = time.monotonic() - frozen_at
    finally:
        os.killpg(pid, signal.SIGCONT)
    assert noticed < 2 * 1.0 + 0.5  # status interval 1 s; the slack is the API poll's
    assert frozen["state"] == "running"
    assert frozen["reason"].startswith("unresponsive: no status for")
    assert (frozen["stats"]["rate_in"], frozen["stats"]["rate_out"]) == (0, 0)
    assert frozen["stats"]["messages_out"] > 0

    after = wait_for(
        lambda: (
            (i := sup.instance("cam"))["unresponsive"] is False and i["stats"]["rate_out"] > 0 and i
        ),
        timeout=15,
        what="cam responsive and sending again",
    )
    assert (after["run"], after["pid"], after["state"]) == (before["run"], pid, "running")
    assert after["reason"].startswith("responds again")


def test_restart_on_unresponsive_replaces_a_frozen_run(write_entry, start_supervisor) -> None:
    """With restart_on_unresponsive a frozen run is killed and the next one runs."""
    entry = dict(CAMERA, restart_on_unresponsive=True, restart={"stop_grace": 1})
    write_entry("cam.json", json.dumps(entry))
    sup = start_supervisor()
    assert sup.api("POST", "/instances", json={"name": "cam", "entry": "cam"}).status_code == 201
    before = _flowing(sup, "cam")
    os.killpg(before["pid"], signal.SIGSTOP)
    after = wait_for(
        lambda: (i := sup.instance("cam"))["run"] == before["run"] + 1 and i["ready"] and i,
        timeout=20,
        what="the next run ready",
    )
    assert after["state"] == "running"
    logs = sup.api("GET", "/instances/cam/logs").json()
    assert any(
        e["message"].startswith(f"run {before['run']} unresponsive: no status") for e in logs
    )
