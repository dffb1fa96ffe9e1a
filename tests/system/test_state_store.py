"""The node's state on a disk that fills up or is read-only: changes refused whole with 507,
stops still stop, /health says why; a read-only state folder at start is one clear line."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.testing import SupervisorProcess, pid_alive, wait_for
from tests.system.conftest import shell

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs"
)


@contextlib.contextmanager
def _tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (a disk we can fill, or mount read-only)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=4m", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the disk is full."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_a_full_state_disk_refuses_changes_but_a_stop_stops(
    write_entry, start_supervisor, tmp_path: Path
) -> None:
    """With its state disk full: a create is a 507 naming the reason and is not listed, a stop
    stops the process, /health reports the store; once there is room, changes save again."""
    write_entry("worker.sh", shell("exec sleep 60"), executable=True)
    with _tmpfs(tmp_path / "state") as state:
        sup = start_supervisor(state_dir=state)
        try:
            assert sup.api("POST", "/instances", json={"name": "w", "entry": "worker"}).is_success
            pid = sup.wait_state("w", "running", timeout=15)["pid"]
            assert sup.api("GET", "/health").json()["store"] == "ok"
            filler = _fill(state)

            refused = sup.api("POST", "/instances", json={"name": "x", "entry": "worker"})
            assert refused.status_code == 507, refused.text
            assert "SQLITE_FULL" in refused.json()["detail"]
            assert [i["name"] for i in sup.api("GET", "/instances").json()] == ["w"]

            stopped = sup.api("POST", "/instances/w/stop")
            assert stopped.status_code == 200, stopped.text
            assert stopped.json()["state"] == "stopped"
            wait_for(lambda: not pid_alive(pid), timeout=10, what="the stopped process gone")

            health = sup.api("GET", "/health").json()
            assert health["status"] == "degraded"
            assert "SQLITE_FULL" in health["store"]
            assert "not saved: w" in health["store"]

            filler.unlink()
            again = sup.api(
                "POST", "/instances", json={"name": "x", "entry": "worker", "start": False}
            )
            assert again.status_code == 201, again.text
            assert sup.api("GET", "/health").json() | {"uptime": 0} == {
                "status": "ok",
                "version": health["version"],
                "uptime": 0,
                "store": "ok",
            }
        finally:
            sup.stop()


def test_a_read_only_state_folder_at_start_is_one_clear_line(
    registry: Path, tmp_path: Path
) -> None:
    """``pipevisor serve`` on a read-only state folder exits 1 with one error line naming the
    folder and the reason, no traceback."""
    with _tmpfs(tmp_path / "state", "ro") as state:
        sup = SupervisorProcess(registry=registry, state_dir=state)
        done = subprocess.run(sup.args(), capture_output=True, text=True, timeout=30, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out
    (line,) = [x for x in out.splitlines() if "supervisor_not_started" in x]
    assert "is not usable: Read-only file system" in line
    assert str(state) in line
