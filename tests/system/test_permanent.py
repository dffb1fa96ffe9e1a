"""Permanent instances declared over REST: they start with the supervisor and always run."""

from __future__ import annotations

from pathlib import Path

from tests.system.conftest import shell


def test_a_permanent_instance_runs_again_after_a_supervisor_restart(
    write_entry, start_supervisor, tmp_path: Path
) -> None:
    """Created permanent (even with start false): running, restart 'always'; stopped by an
    operator, it is back when the supervisor starts again with the same state."""
    write_entry("worker.sh", shell("exec sleep 60"), executable=True)
    state = tmp_path / "state"
    sup = start_supervisor(state_dir=state)
    body = {"name": "w", "entry": "worker", "permanent": True, "start": False}
    response = sup.api("POST", "/instances", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["permanent"] is True
    assert created["restart_policy"]["mode"] == "always"
    sup.wait_state("w", "running", timeout=15)
    assert sup.api("POST", "/instances/w/stop").status_code == 200
    sup.stop()

    again = start_supervisor(state_dir=state)
    info = again.wait_state("w", "running", timeout=15)
    assert info["permanent"] is True
    assert info["on_demand"] is False
