"""The registry over REST on a live supervisor: hot pick-up, upload, download, delete, safety."""

from __future__ import annotations

import pytest

from tests.support import wait_for

from .conftest import shell

pytestmark = pytest.mark.system


def _entries(sup):
    return {e["name"]: e for e in sup.api("GET", "/registry").json()}


def test_dropped_and_removed_files_are_picked_up_without_a_restart(
    start_supervisor, write_entry, registry
):
    """A file dropped into the folder is listed within 2 s; a removed one disappears."""
    sup = start_supervisor()
    write_entry("late.sh", shell("exec sleep 600"), executable=True)
    wait_for(lambda: "late" in _entries(sup), timeout=2.0, what="new entry listed")
    (registry / "late.sh").unlink()
    wait_for(lambda: "late" not in _entries(sup), timeout=2.0, what="removed entry gone")


def test_invalid_entry_is_listed_with_its_error(start_supervisor, write_entry):
    """A broken JSON entry is listed as invalid with a readable error; the service keeps serving."""
    write_entry("broken.json", '{"builtin": "camera_simulation", "parameters": 3}')
    sup = start_supervisor()
    entry = _entries(sup)["broken"]
    assert entry["valid"] is False
    assert "parameters" in entry["error"]
    response = sup.api("POST", "/instances", json={"name": "b", "entry": "broken"})
    assert response.status_code == 422
    assert "broken" in response.json()["detail"]


def test_upload_run_download_and_delete_an_executable(start_supervisor, registry):
    """An uploaded script runs as an entry; download gives its bytes; delete removes it."""
    sup = start_supervisor()
    body = shell("echo uploaded\nexec sleep 600").encode()
    response = sup.api("PUT", "/registry/files/up.sh", params={"executable": "true"}, content=body)
    assert response.status_code in (200, 201), response.text
    assert (registry / "up.sh").read_bytes() == body
    sup.api("POST", "/instances", json={"name": "up", "entry": "up"}).raise_for_status()
    sup.wait_state("up", "running")
    assert sup.api("GET", "/registry/files/up.sh").content == body
    sup.api("DELETE", "/instances/up").raise_for_status()
    assert sup.api("DELETE", "/registry/files/up.sh").status_code in (200, 204)
    assert not (registry / "up.sh").exists()


@pytest.mark.parametrize("name", ["..", ".hidden", "a..b/../../etc", "%2e%2e"])
def test_uploads_cannot_escape_the_registry(start_supervisor, registry, name):
    """Traversal and hidden names are refused with a 4xx and nothing is written outside."""
    sup = start_supervisor()
    response = sup.api("PUT", f"/registry/files/{name}", content=b"#!/bin/sh\n")
    assert 400 <= response.status_code < 500
    assert not any(
        p.name not in (".pipevisor",)
        for p in registry.parent.iterdir()
        if p.name not in ("registry", "state") and not p.name.startswith("supervisor-")
    )


def test_unknown_names_are_404_and_bad_bodies_422(start_supervisor, write_entry):
    """Unknown instance -> 404; duplicate -> 409; a bad body names the field."""
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    sup = start_supervisor()
    assert sup.api("GET", "/instances/nope").status_code == 404
    assert sup.api("POST", "/instances/nope/start").status_code == 404
    assert sup.api("POST", "/instances", json={"name": "x", "entry": "nope"}).status_code == 404
    sup.api("POST", "/instances", json={"name": "x", "entry": "idle"}).raise_for_status()
    assert sup.api("POST", "/instances", json={"name": "x", "entry": "idle"}).status_code == 409
    bad = sup.api("POST", "/instances", json={"name": "y", "entry": "idle", "start": "maybe"})
    assert bad.status_code == 422
    assert "start" in bad.text
