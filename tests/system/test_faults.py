"""Trustworthy under faults: a hung-up terminal, a killed guard, racing requests, two nodes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import termios
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import free_port, pid_alive, wait_for

from .conftest import serve_argv, serve_once, shell

pytestmark = pytest.mark.system

IDLE = shell("exec sleep 600")


def _traps(folder: Path) -> str:
    """A program that notes its pid when it starts, and again when SIGTERM reaches it."""
    return shell(f"""
echo $$ >> {folder}/started
trap 'sleep 0.3; echo $$ >> {folder}/termed; exit 0' TERM
while :; do sleep 0.05; done
""")


def _pids(path: Path) -> set[int]:
    return {int(line) for line in path.read_text().split()} if path.exists() else set()


def _take_terminal() -> None:
    """In the child: the pty on stdin becomes the controlling terminal of its new session
    (and a hangup does what it does by default, even if pytest runs under nohup)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_hung_up_terminal_stops_every_program_gracefully(write_entry, registry, tmp_path):
    """Close the terminal a supervisor runs in: every program gets SIGTERM, it exits 0.

    The supervisor is the controlling process of a pty, its log on it; closing the master end
    is what a closed terminal window or SSH session does (the kernel sends SIGHUP, and writes
    to the terminal fail from then on)."""
    write_entry("trap.sh", _traps(tmp_path), executable=True)
    port = free_port()
    master, slave = os.openpty()
    proc = subprocess.Popen(
        serve_argv(registry, tmp_path / "state", port),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_take_terminal,
    )
    os.close(slave)
    os.set_blocking(master, False)
    seen = bytearray()

    def drain() -> None:
        try:
            while chunk := os.read(master, 65536):
                seen.extend(chunk)
        except (BlockingIOError, OSError):
            pass

    client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=15)
    children: list[psutil.Process] = []
    try:

        def healthy() -> bool:
            drain()
            assert proc.poll() is None, seen.decode(errors="replace")
            try:
                return client.get("/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, what="the supervisor on a terminal")
        for name in ("a", "b", "c"):
            body = {"name": name, "entry": "trap"}
            client.post("/instances", json=body).raise_for_status()
        wait_for(lambda: (drain(), len(_pids(tmp_path / "started")) == 3)[1], what="3 programs")
        children = psutil.Process(proc.pid).children(recursive=True)
        guard = client.get("/node").json()["guard"]["pid"]
        os.close(master)  # the terminal is gone
        master = -1
        assert proc.wait(20) == 0
        started = _pids(tmp_path / "started")
        assert _pids(tmp_path / "termed") == started
        wait_for(lambda: not pid_alive(guard), timeout=5, what=f"guard {guard} gone")
        assert not any(pid_alive(p) for p in started)
    finally:
        client.close()
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in children:
            if child.is_running():
                child.kill()


def test_sighup_is_a_graceful_stop_and_is_logged(start_supervisor, write_entry, tmp_path):
    """SIGHUP, twice: the event is logged, every program gets SIGTERM and its grace period,
    the supervisor exits 0."""
    write_entry("trap.sh", _traps(tmp_path), executable=True)
    # Inherited as is: a supervisor started under nohup keeps ignoring SIGHUP, on purpose.
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        sup = start_supervisor()
    finally:
        signal.signal(signal.SIGHUP, previous)
    sup.api("POST", "/instances", json={"name": "a", "entry": "trap"}).raise_for_status()
    wait_for(lambda: _pids(tmp_path / "started"), what="the program started")
    assert sup.proc is not None
    sup.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "signal_received" in sup.logs(), what="the hangup logged")
    sup.proc.send_signal(signal.SIGHUP)  # the shell passes its own hangup on: not a forced stop
    assert sup.proc.wait(20) == 0
    assert _pids(tmp_path / "termed") == _pids(tmp_path / "started"), sup.logs()[-6000:]
    events = [json.loads(line) for line in sup.logs().splitlines() if line.startswith("{")]
    assert any(e["event"] == "signal_received" and e["signal"] == "SIGHUP" for e in events)


TREE = shell("""
sleep 600 &
echo "child $!"
setsid sleep 600 &
echo "escaped $!"
wait
""")


def test_a_killed_guard_is_replaced_and_still_kills_everything(start_supervisor, write_entry):
    """SIGKILL the guard: a new one starts at once with every group; SIGKILL the supervisor
    then, and no program is left."""
    write_entry("tree.sh", TREE, executable=True)
    sup = start_supervisor()
    for name in ("a", "b"):
        sup.api("POST", "/instances", json={"name": name, "entry": "tree"}).raise_for_status()
    pids = []
    for name in ("a", "b"):
        pids.append(sup.wait_state(name, "running")["pid"])

        def children(name=name):
            msgs = [e["message"].split() for e in sup.api("GET", f"/instances/{name}/logs").json()]
            found = [int(m[1]) for m in msgs if m and m[0] in ("child", "escaped")]
            return found if len(found) == 2 else None

        pids.extend(wait_for(children, what=f"{name}'s children"))
    first = sup.api("GET", "/node").json()["guard"]
    assert first["restarts"] == 0
    os.kill(first["pid"], signal.SIGKILL)

    def replaced():
        guard = sup.api("GET", "/node").json()["guard"]
        return (
            guard if guard["restarts"] == 1 and guard["pid"] not in (None, first["pid"]) else None
        )

    second = wait_for(replaced, timeout=5, what="a new guard")
    assert "guard_restarted" in sup.logs()
    # one more program after the restart: registered with the new guard as usual
    sup.api("POST", "/instances", json={"name": "c", "entry": "tree"}).raise_for_status()
    pids.append(sup.wait_state("c", "running")["pid"])
    assert all(pid_alive(p) for p in pids)
    assert sup.proc is not None
    sup.proc.send_signal(signal.SIGKILL)
    sup.proc.wait()
    wait_for(
        lambda: not any(pid_alive(p) for p in [*pids, second["pid"]]),
        timeout=3.0,
        what=f"no survivors among {pids} and guard {second['pid']}",
    )


def test_deletes_racing_starts_leave_no_process(start_supervisor, write_entry):
    """20 pipelines reading one camera, each deleted while a start of it is sent: none is
    listed afterwards and no process of theirs runs."""
    write_entry("idle.sh", IDLE, executable=True)
    write_entry("cam.json", json.dumps({"program": "idle.sh"}))
    write_entry("reader.json", json.dumps({"program": "idle.sh", "input": {"camera": "cam"}}))
    sup = start_supervisor()
    names = [f"p{i}" for i in range(20)]

    def create(name: str) -> None:
        response = sup.api("POST", "/instances", json={"name": name, "entry": "reader"})
        assert response.status_code == 201, response.text

    def race(call: tuple[str, str]) -> int:
        method, path = call
        return sup.api(method, path).status_code

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, names))
        calls = [
            c
            for n in names
            for c in (("DELETE", f"/instances/{n}"), ("POST", f"/instances/{n}/start"))
        ]
        calls.append(("DELETE", "/instances/cam"))
        codes = list(pool.map(race, calls))
    assert set(codes) <= {200, 204, 404}, codes
    guard = sup.api("GET", "/node").json()["guard"]["pid"]

    def programs():
        return [p.pid for p in sup.descendants() if p.pid != guard]

    # the camera may be started again by a start that came before its reader's delete
    for instance in sup.api("GET", "/instances").json():
        assert instance["name"] == "cam", instance
        sup.api("DELETE", "/instances/cam")
    assert sup.api("GET", "/instances").json() == []
    wait_for(lambda: programs() == [], timeout=10, what="no program left")
    assert sup.stop() == 0


def test_a_second_supervisor_on_the_same_registry_refuses_to_start(
    start_supervisor, write_entry, tmp_path
):
    """Another state folder, the same registry: the second exits 1, naming the holder's pid,
    and the permanent entry runs once."""
    write_entry("idle.json", '{"program": "idle.sh", "permanent": true}')
    write_entry("idle.sh", IDLE, executable=True)
    first = start_supervisor()
    pid = first.wait_state("idle", "running")["pid"]
    second = serve_once(first.registry, tmp_path / "other-state")
    assert second.returncode == 1
    assert first.proc is not None
    assert f"another supervisor (pid {first.proc.pid}) is using the registry" in second.stderr
    assert "sleep 600" not in second.stderr
    info = first.instance("idle")
    assert (info["pid"], info["run"]) == (pid, 1)
