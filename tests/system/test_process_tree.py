"""Nothing outlives the supervisor, and the desired state survives it."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support import pid_alive, wait_for

from .conftest import serve_once, shell

pytestmark = pytest.mark.system

TREE = shell("""
sleep 600 &
echo "child $!"
setsid sleep 600 &
echo "escaped $!"
wait
""")


def _pids(sup, name):
    def probe():
        msgs = [e["message"] for e in sup.api("GET", f"/instances/{name}/logs").json()]
        pids = [int(m.split()[1]) for m in msgs if m.split()[0] in ("child", "escaped")]
        return pids if len(pids) == 2 else None

    return wait_for(probe, what=f"{name} child pids")


def test_sigkill_of_the_supervisor_leaves_no_instance_process(start_supervisor, write_entry):
    """SIGKILL the supervisor: within 2 s every process of every instance tree is gone."""
    write_entry("tree.sh", TREE, executable=True)
    sup = start_supervisor()
    pids = []
    for name in ("a", "b", "c"):
        sup.api("POST", "/instances", json={"name": name, "entry": "tree"}).raise_for_status()
    for name in ("a", "b", "c"):
        pids.append(sup.wait_state(name, "running")["pid"])
        pids.extend(_pids(sup, name))
    assert all(pid_alive(p) for p in pids)
    sup.proc.send_signal(signal.SIGKILL)
    sup.proc.wait()
    wait_for(
        lambda: not any(pid_alive(p) for p in pids), timeout=2.0, what=f"no survivors among {pids}"
    )


def test_desired_state_survives_a_supervisor_restart(start_supervisor, write_entry, tmp_path):
    """After a restart, instances that should run run again and stopped ones stay stopped."""
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    sup = start_supervisor()
    for name in ("up", "down"):
        sup.api(
            "POST", "/instances", json={"name": name, "entry": "idle", "config": {"gain": 2}}
        ).raise_for_status()
    sup.wait_state("up", "running")
    sup.wait_state("down", "running")
    sup.api("POST", "/instances/down/stop").raise_for_status()
    sup.api("PATCH", "/instances/up/config", json={"gain": 3}).raise_for_status()
    assert sup.stop() == 0
    again = start_supervisor(state_dir=tmp_path / "state")
    up = again.wait_state("up", "running")
    assert up["config"] == {"gain": 3}
    assert again.instance("down")["state"] == "stopped"
    assert again.instance("down")["desired"] == "stopped"


def test_graceful_shutdown_stops_instances_but_keeps_them_desired(start_supervisor, write_entry):
    """SIGTERM to the supervisor stops every instance before it exits."""
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "idle", "entry": "idle"}).raise_for_status()
    pid = sup.wait_state("idle", "running")["pid"]
    assert sup.stop() == 0
    assert not pid_alive(pid)


def test_a_second_supervisor_on_the_same_state_refuses_to_start(
    start_supervisor, write_entry, tmp_path
):
    """Two supervisors never share a state folder: the second exits 1 and starts nothing."""
    write_entry("idle.json", '{"program": "idle.sh", "permanent": true}')
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    first = start_supervisor()
    pid = first.wait_state("idle", "running")["pid"]
    second = serve_once(first.registry, first.state_dir)
    assert second.returncode == 1
    assert f"is using {first.state_dir}" in second.stderr
    assert "sleep 600" not in second.stderr
    info = first.instance("idle")
    assert info["pid"] == pid
    assert info["run"] == 1


def test_an_instance_created_again_under_its_name_is_not_taken_for_an_escapee(
    start_supervisor, write_entry
):
    """Delete an instance and create it again at once: the new run 1 keeps running.

    What escaped the old run is looked for 0.2 s after its end; the new run has the same name
    and run number, and must not match."""
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "x", "entry": "idle"}).raise_for_status()
    sup.wait_state("x", "running")
    assert sup.api("DELETE", "/instances/x").status_code == 204
    sup.api("POST", "/instances", json={"name": "x", "entry": "idle"}).raise_for_status()
    pid = sup.wait_state("x", "running")["pid"]

    def two_seconds_in():
        info = sup.instance("x")
        return info if time.time() > info["started_at"] + 2.0 else None

    info = wait_for(two_seconds_in, what="two seconds of the new run")
    assert (info["pid"], info["run"], info["restarts"]) == (pid, 1, 0)
    assert pid_alive(pid)
