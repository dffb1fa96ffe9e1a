"""The bearer token on mutating calls, and the audit trail of every mutating call."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from supervisor.api import create_app
from supervisor.api.auth import AUDIT_BODY_LIMIT, token_matches
from supervisor.audit import AuditLog
from supervisor.testing import FakeNode
from tests.live_server import TOKEN

API = "/api/v1"
GOOD = {"Authorization": f"Bearer {TOKEN}"}

MUTATING = [
    ("POST", "/instances", {"json": {"name": "cam1", "entry": "camera"}}),
    ("POST", "/instances/cam0/start", {}),
    ("POST", "/instances/cam0/stop", {}),
    ("POST", "/instances/cam0/restart", {}),
    ("PATCH", "/instances/cam0/config", {"json": {"gain": 1}}),
    ("PUT", "/instances/cam0/config", {"json": {"gain": 1}}),
    ("DELETE", "/instances/cam0", {}),
    ("PUT", "/registry/files/new.py", {"content": b"print(1)\n"}),
    ("DELETE", "/registry/files/camera.json", {}),
]


def _snapshot(fake: FakeNode) -> tuple[dict[str, bytes], dict[str, Any], list[dict[str, Any]]]:
    """The fake's registry files, cam0's config and every instance, copied."""
    config = copy.deepcopy(asyncio.run(fake.get_config("cam0")))
    instances = [i.model_dump() for i in asyncio.run(fake.list_instances())]
    return dict(fake.registry.files), config, instances


@pytest.fixture
def cam0(fake: FakeNode, secured: TestClient) -> None:
    """An instance ``cam0`` created with the token."""
    response = secured.post(
        f"{API}/instances", json={"name": "cam0", "entry": "camera"}, headers=GOOD
    )
    assert response.status_code == 201


@pytest.mark.parametrize(("method", "path", "kwargs"), MUTATING)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
    ids=["none", "wrong", "no-scheme", "basic"],
)
def test_mutating_call_without_the_token_is_401_and_changes_nothing(
    fake: FakeNode,
    secured: TestClient,
    cam0: None,
    method: str,
    path: str,
    kwargs: dict,
    headers: dict,
) -> None:
    """POST, PUT, PATCH and DELETE without the right bearer token are refused with 401."""
    before = _snapshot(fake)
    response = secured.request(method, API + path, headers=headers, **kwargs)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]
    assert _snapshot(fake) == before


@pytest.mark.parametrize(("method", "path", "kwargs"), MUTATING)
def test_mutating_call_with_the_token_is_allowed(
    secured: TestClient, cam0: None, method: str, path: str, kwargs: dict
) -> None:
    """The same calls with the right bearer token succeed."""
    response = secured.request(method, API + path, headers=GOOD, **kwargs)
    assert response.status_code < 300, response.text


@pytest.mark.parametrize(
    "path", ["/health", "/node", "/instances", "/instances/cam0", "/registry", "/audit"]
)
def test_reads_stay_open_with_a_token_configured(
    secured: TestClient, cam0: None, path: str
) -> None:
    """GET requests need no token."""
    assert secured.get(API + path).status_code == 200


def test_token_matches_only_the_exact_bearer_token() -> None:
    """The header check accepts 'Bearer <token>' (any case of the scheme) and nothing else."""
    assert token_matches(b"Bearer abc", "abc")
    assert token_matches(b"bearer abc", "abc")
    assert not token_matches(b"Bearer abcd", "abc")
    assert not token_matches(b"Bearer ", "abc")
    assert not token_matches(b"abc", "abc")
    assert not token_matches(None, "abc")


def test_empty_token_leaves_the_api_open(fake: FakeNode) -> None:
    """create_app with an empty token protects nothing (an unset environment variable)."""
    with TestClient(create_app(fake, token="")) as c:
        assert c.post(f"{API}/instances", json={"name": "a", "entry": "camera"}).status_code == 201


def _file_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_allowed_call_is_audited_in_file_and_memory(secured: TestClient, audit_path: Path) -> None:
    """An allowed config change is recorded with who, what, when, the patch and the outcome."""
    secured.post(f"{API}/instances", json={"name": "cam9", "entry": "camera"}, headers=GOOD)
    secured.patch(f"{API}/instances/cam9/config", json={"gain": 4}, headers=GOOD)
    memory = secured.get(f"{API}/audit").json()
    assert memory == _file_records(audit_path)
    create, patch = memory
    assert create["target"] == "cam9"
    assert create["status"] == 201
    assert patch["method"] == "PATCH"
    assert patch["path"] == "/api/v1/instances/cam9/config"
    assert patch["target"] == "cam9"
    assert patch["auth"] == "token"
    assert json.loads(patch["body"]) == {"gain": 4}
    assert patch["status"] == 200
    assert patch["client"].startswith("testclient:")
    assert patch["iso_time"].startswith("20")
    assert patch["time"] > 1.7e9


def test_refused_call_is_audited_with_401_and_the_attempted_patch(
    secured: TestClient, cam0: None, audit_path: Path
) -> None:
    """A refused config change is recorded as anonymous with status 401 and its body."""
    secured.patch(
        f"{API}/instances/cam0/config", json={"gain": 9}, headers={"Authorization": "Bearer no"}
    )
    record = secured.get(f"{API}/audit").json()[-1]
    assert record["auth"] == "anonymous"
    assert record["status"] == 401
    assert record["target"] == "cam0"
    assert json.loads(record["body"]) == {"gain": 9}
    assert _file_records(audit_path)[-1] == record


def test_failed_call_is_audited_with_its_status(client: TestClient) -> None:
    """A mutating call that fails (404) is recorded with that status; reads are not recorded."""
    client.get(f"{API}/instances")
    client.post(f"{API}/instances/ghost/start")
    records = client.get(f"{API}/audit").json()
    assert [(r["method"], r["target"], r["status"], r["auth"]) for r in records] == [
        ("POST", "ghost", 404, "anonymous")
    ]


def test_upload_is_audited_with_the_file_name_but_not_its_content(
    secured: TestClient,
) -> None:
    """An upload is recorded with the file name and without the uploaded code."""
    secured.put(f"{API}/registry/files/tool.py", content=b"SECRET = 1\n", headers=GOOD)
    record = secured.get(f"{API}/audit").json()[-1]
    assert (record["target"], record["status"], record["body"]) == ("tool.py", 200, None)


def test_audited_patch_body_is_truncated(client: TestClient, running: dict) -> None:
    """A large config patch is kept up to the limit and flagged as truncated."""
    big = {"blob": "x" * (3 * AUDIT_BODY_LIMIT)}
    assert client.patch(f"{API}/instances/cam1/config", json=big).status_code == 200
    record = client.get(f"{API}/audit").json()[-1]
    assert len(record["body"].encode()) == AUDIT_BODY_LIMIT
    assert record["body_truncated"] is True


def test_crash_in_a_mutating_call_is_audited_as_500(
    fake: FakeNode, client: TestClient, running: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error during a mutating call answers 500 and is recorded as 500."""

    async def boom(name: str) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fake, "stop_instance", boom)
    with capture_logs() as logs:
        response = client.post(f"{API}/instances/cam1/stop")
    assert response.status_code == 500
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["api_unexpected_error"]
    assert "disk on fire" not in response.text
    assert client.get(f"{API}/audit").json()[-1]["status"] == 500


def test_audit_tail_limits_the_records(fake: FakeNode) -> None:
    """GET /audit?tail=n returns the newest n records."""
    with TestClient(create_app(fake, audit=AuditLog(None))) as c:
        for n in range(5):
            c.post(f"{API}/instances/x{n}/start")
        records = c.get(f"{API}/audit", params={"tail": 2}).json()
    assert [r["target"] for r in records] == ["x3", "x4"]
