"""A permanent buffer and its acquisitions over REST, for real: exact pulse ranges to HDF5.

The simulated camera numbers its frames with consecutive pulse ids; the buffer keeps the last
500; acquisitions ask for ranges in the past, across now and open-ended; the files are read
back with h5py. A buffer killed with SIGKILL leaves a readable file up to its last flush.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle for h5py, as users read the images)
import numpy as np
import pytest

from tests.support import SupervisorProcess, wait_for

pytestmark = pytest.mark.system

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {
        "width": 32,
        "height": 24,
        "rate": 100,
        "deterministic": True,
        "pulse_id_start": 7000,
    },
}
BUFFER = {
    "builtin": "pulse_buffer",
    "input": "cam",
    "output": {"enabled": False},
    "permanent": True,
    "parameters": {"buffer_size": 500, "queue_size": 100},
}


@pytest.fixture
def node(start_supervisor, write_entry) -> SupervisorProcess:
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("buffer.json", json.dumps(BUFFER))
    sup: SupervisorProcess = start_supervisor()
    wait_for(lambda: sup.instance("buffer")["ready"], what="the permanent buffer ready")
    return sup


def newest(sup: SupervisorProcess, at_least: int = 0) -> int:
    def probe() -> int | None:
        buffered = sup.instance("buffer")["report"].get("buffer", {})
        pulse = buffered.get("newest_pulse_id")
        return pulse if pulse is not None and pulse >= at_least else None

    return wait_for(probe, timeout=20, what=f"the buffer past pulse {at_least}")


def finished(sup: SupervisorProcess, acquisition: str) -> dict:
    def probe() -> dict | None:
        found = sup.api("GET", f"/instances/buffer/acquisitions/{acquisition}").json()
        return found if found["state"] in ("done", "failed", "aborted") else None

    return wait_for(probe, timeout=30, what=f"acquisition {acquisition} finished")


def pulse_ids(path: Path, **options) -> list[int]:
    with h5py.File(path, "r", **options) as f:
        ids = f["/data/image/pulse_id"][()].tolist()
        images = f["/data/image/data"][()]
        assert images.shape[1:] == (24, 32)
        assert images.dtype == np.uint16
    return ids


def test_past_and_future_pulses_are_written_exactly_and_reported(
    node: SupervisorProcess, tmp_path: Path
) -> None:
    now = newest(node, at_least=7000 + 300)
    start, stop = now - 200, now + 100  # 200 from the buffer, 100 still to come
    path = tmp_path / "data" / "across.h5"
    body = {
        "id": "across",
        "start_pulse_id": start,
        "stop_pulse_id": stop,
        "output_file": str(path),
        "general": {"user": "p12345", "process": "test"},
    }
    created = node.api("POST", "/instances/buffer/acquisitions", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "across"
    report = finished(node, "across")
    assert report["state"] == "done", report
    assert pulse_ids(path) == list(range(start, stop + 1))
    assert (report["first_pulse_id"], report["last_pulse_id"]) == (start, stop)
    assert report["pulses"] == stop - start + 1
    assert report["missing_count"] == 0
    with h5py.File(path, "r") as f:
        assert f["/general/user"][()] == b"p12345"

    # The same file again: refused with the program's reason, and nothing overwritten.
    body["id"] = "again"
    refused = node.api("POST", "/instances/buffer/acquisitions", json=body)
    assert refused.status_code == 422
    assert "exists; nothing is overwritten" in refused.json()["detail"]
    assert pulse_ids(path) == list(range(start, stop + 1))

    audit = node.api("GET", "/audit").json()
    assert any(r["path"].endswith("/acquisitions") and "across" in (r["body"] or "") for r in audit)


def test_an_open_acquisition_from_now_ends_at_a_stop_request(
    node: SupervisorProcess, tmp_path: Path
) -> None:
    newest(node, at_least=7000 + 50)
    path = tmp_path / "open.h5"
    body = {"id": "open", "start_pulse_id": "now", "output_file": str(path)}
    assert node.api("POST", "/instances/buffer/acquisitions", json=body).status_code == 201
    started = wait_for(
        lambda: (
            (a := node.api("GET", "/instances/buffer/acquisitions/open").json())["start_pulse_id"]
            is not None
            and a
        ),
        what="the start resolved",
    )
    newest(node, at_least=started["start_pulse_id"] + 30)
    stopped = node.api("POST", "/instances/buffer/acquisitions/open/stop", json={})
    assert stopped.status_code == 200, stopped.text
    report = finished(node, "open")
    ids = pulse_ids(path)
    assert ids == list(range(report["start_pulse_id"], report["stop_pulse_id"] + 1))
    assert len(ids) > 30
    assert report["requested"] == {"start": "now", "stop": "now"}


def test_a_buffer_killed_mid_acquisition_leaves_a_readable_file(
    node: SupervisorProcess, tmp_path: Path
) -> None:
    newest(node, at_least=7000 + 10)
    path = tmp_path / "killed.h5"
    body = {"id": "killed", "start_pulse_id": "now", "output_file": str(path)}
    assert node.api("POST", "/instances/buffer/acquisitions", json=body).status_code == 201
    wait_for(
        lambda: node.api("GET", "/instances/buffer/acquisitions/killed").json()["pulses"] > 250,
        timeout=20,
        what="pulses written",
    )
    os.kill(node.instance("buffer")["pid"], signal.SIGKILL)
    ids = wait_for(lambda: pulse_ids(path, swmr=True) or None, what="the file readable")
    # Everything up to the last flush (every 100 rows or 1 s) is there, consecutive.
    assert len(ids) >= 200
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    # The permanent buffer is back; its restart does not touch the file.
    wait_for(lambda: node.instance("buffer")["run"] == 2, what="the buffer restarted")
    assert pulse_ids(path, swmr=True)[: len(ids)] == ids


def test_finished_acquisitions_beyond_keep_finished_leave_the_report_then_the_config(
    node: SupervisorProcess, tmp_path: Path
) -> None:
    """keep_finished 1: the older done acquisition leaves the report, and the next POST takes
    it out of the buffer's config; its file stays."""
    patched = node.api("PATCH", "/instances/buffer/config", json={"keep_finished": 1})
    assert patched.status_code == 200, patched.text
    now = newest(node, at_least=7000 + 100)
    for index, name in enumerate(("first", "second")):
        start = now - 50 + 10 * index
        body = {
            "id": name,
            "start_pulse_id": start,
            "stop_pulse_id": start + 5,
            "output_file": str(tmp_path / f"{name}.h5"),
        }
        assert node.api("POST", "/instances/buffer/acquisitions", json=body).status_code == 201
        assert finished(node, name)["state"] == "done"
    wait_for(
        lambda: node.instance("buffer")["report"].get("pruned") == ["first"],
        what="'first' pruned from the report",
    )
    listed = node.api("GET", "/instances/buffer/acquisitions").json()
    assert sorted(listed) == ["second"]
    assert "first" in node.instance("buffer")["config"]["acquisitions"]
    body = {"id": "third", "start_pulse_id": now, "stop_pulse_id": now + 2}
    body["output_file"] = str(tmp_path / "third.h5")
    assert node.api("POST", "/instances/buffer/acquisitions", json=body).status_code == 201
    assert sorted(node.instance("buffer")["config"]["acquisitions"]) == ["second", "third"]
    assert pulse_ids(tmp_path / "first.h5") == list(range(now - 50, now - 44))
