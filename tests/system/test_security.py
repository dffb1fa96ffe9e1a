"""With a token, mutating calls need it, and every one is audited."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_tokens_from_files_roles_origins_and_hosts_of_a_real_node(
    start_supervisor, write_entry, tmp_path, monkeypatch
):
    """A node given its tokens in files: neither is on its command line; viewers read (with
    secrets redacted) but do not change; a cross-site or text/plain stop is refused even with the
    operator's token; an unknown Host is refused."""
    monkeypatch.delenv("PIPEVISOR_TOKEN", raising=False)
    monkeypatch.delenv("PIPEVISOR_VIEWER_TOKEN", raising=False)
    write_entry("idle.sh", shell("exec sleep 600"), executable=True)
    (tmp_path / "op.token").write_text("op-s3cret\n")
    (tmp_path / "viewer.token").write_text("view-s3cret\n")
    sup = start_supervisor(
        "--token-file",
        str(tmp_path / "op.token"),
        "--viewer-token-file",
        str(tmp_path / "viewer.token"),
    )
    assert sup.proc is not None
    cmdline = Path(f"/proc/{sup.proc.pid}/cmdline").read_bytes()
    assert b"op-s3cret" not in cmdline
    assert b"view-s3cret" not in cmdline
    operator = {"Authorization": "Bearer op-s3cret"}
    viewer = {"Authorization": "Bearer view-s3cret"}
    with httpx.Client(base_url=sup.url + "/api/v1") as c:
        assert c.get("/instances").status_code == 401
        created = c.post(
            "/instances",
            json={"name": "i", "entry": "idle", "config": {"password": "hunter2"}},
            headers=operator,
        )
        assert created.status_code == 201, created.text
        assert c.get("/instances/i/config", headers=viewer).json() == {"password": "<redacted>"}
        assert c.get("/instances/i/config", headers=operator).json() == {"password": "hunter2"}
        assert c.post("/instances/i/stop", headers=viewer).status_code == 401
        cross = c.post("/instances/i/stop", headers={"Origin": "http://evil.example", **operator})
        assert cross.status_code == 403
        simple = c.post(
            "/instances/i/stop", content=b"x", headers={"Content-Type": "text/plain", **operator}
        )
        assert simple.status_code == 415
        rebound = c.get("/health", headers={"Host": f"evil.example:{sup.port}"})
        assert rebound.status_code == 421
        assert c.get("/instances/i", headers=operator).json()["desired"] == "running"
        own = c.post(
            "/instances/i/stop", headers={"Origin": f"http://localhost:{sup.port}", **operator}
        )
        # The Host is 127.0.0.1 (the client's URL), so localhost is another origin.
        assert own.status_code == 403
        same = c.post("/instances/i/stop", headers={"Origin": sup.url, **operator})
        assert same.status_code == 200, same.text


def test_the_log_stream_binds_where_the_api_does(start_supervisor):
    """An API on loopback keeps the log PUB on loopback even with --stream-host 0.0.0.0."""
    import psutil

    sup = start_supervisor("--stream-host", "0.0.0.0")
    node = sup.api("GET", "/node").json()
    url = node["log_stream_url"]
    assert url.startswith("tcp://127.0.0.1:")
    port = int(url.rpartition(":")[2])
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(node["pid"]).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert ("127.0.0.1", port) in listening
    assert ("0.0.0.0", port) not in listening
