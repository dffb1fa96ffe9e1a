"""With a token, mutating calls need it, and every one is audited."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import wait_for

from .conftest import shell

pytestmark = pytest.mark.system


def test_token_protects_mutations_and_the_audit_log_records_them(
    start_supervisor, write_entry, tmp_path
):
    """Without the token a POST is 401; with it, 201; both are in the audit log; GETs stay open."""
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    sup = start_supervisor(token="s3cret")
    anonymous = httpx.Client(base_url=sup.url + "/api/v1")
    try:
        assert anonymous.get("/instances").status_code == 200
        refused = anonymous.post("/instances", json={"name": "i", "entry": "idle"})
        assert refused.status_code == 401
        wrong = anonymous.post(
            "/instances",
            json={"name": "i", "entry": "idle"},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401
    finally:
        anonymous.close()
    assert sup.api("POST", "/instances", json={"name": "i", "entry": "idle"}).status_code == 201
    assert sup.api("POST", "/instances/i/stop").status_code == 200
    records = [
        json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    ]
    outcomes = [(r.get("method"), r.get("path"), r.get("status")) for r in records]
    assert ("POST", "/api/v1/instances", 401) in outcomes
    assert ("POST", "/api/v1/instances", 201) in outcomes
    assert ("POST", "/api/v1/instances/i/stop", 200) in outcomes


def test_the_api_token_never_reaches_a_program(
    start_supervisor, write_entry, monkeypatch, tmp_path
):
    """Programs do not inherit the supervisor's token from its environment; the writers' data
    folder, shared on purpose, does reach them."""
    write_entry(
        "env.sh",
        shell(
            'echo "token=${PIPEVISOR_TOKEN:-unset}"\necho "data=${PIPEVISOR_DATA_DIR:-unset}"\n'
            "exec sleep 600"
        ),
        executable=True,
    )
    monkeypatch.setenv("PIPEVISOR_DATA_DIR", str(tmp_path / "data"))
    sup = start_supervisor(token="s3cret")
    assert sup.api("POST", "/instances", json={"name": "env", "entry": "env"}).status_code == 201

    def line():
        entries = sup.api("GET", "/instances/env/logs").json()
        return next((e["message"] for e in entries if e["message"].startswith("token=")), None)

    assert wait_for(line, what="the token line") == "token=unset"
    data_line = wait_for(
        lambda: next(
            (
                e["message"]
                for e in sup.api("GET", "/instances/env/logs").json()
                if e["message"].startswith("data=")
            ),
            None,
        ),
        what="the data folder line",
    )
    assert data_line == f"data={tmp_path / 'data'}"
