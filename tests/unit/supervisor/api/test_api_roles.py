"""Viewer and operator tokens, redaction of secrets for viewers, cross-site refusals (Origin,
simple content types) and the Host check against DNS rebinding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from supervisor.api import create_app
from supervisor.api.auth import REDACTED, is_secret_key, redact
from supervisor.audit import AuditLog
from supervisor.testing import FakeNode
from tests.live_server import TOKEN

API = "/api/v1"
VIEWER = "viewer-t0ken"
OPERATOR_H = {"Authorization": f"Bearer {TOKEN}"}
VIEWER_H = {"Authorization": f"Bearer {VIEWER}"}
SECRET_CONFIG = {"gain": 2, "db_password": "hunter2", "camera": {"api_key": "k1", "keyframe": 3}}


@pytest.fixture
def roles(fake: FakeNode, audit: AuditLog) -> Iterator[TestClient]:
    """An app with an operator token ``TOKEN`` and a viewer token ``VIEWER``, with ``cam1``
    created with a secret-bearing config, and an entry ``db`` whose ``env`` holds a password."""
    fake.add_entry(
        "db", {"builtin": "camera_simulation", "env": {"DB_PASSWORD": "pw", "MODE": "fast"}}
    )
    with TestClient(create_app(fake, token=TOKEN, viewer_token=VIEWER, audit=audit)) as c:
        created = c.post(
            f"{API}/instances",
            json={"name": "cam1", "entry": "camera", "config": SECRET_CONFIG},
            headers=OPERATOR_H,
        )
        assert created.status_code == 201, created.text
        yield c


@pytest.mark.parametrize(
    "path", ["/instances", "/instances/cam1", "/instances/cam1/config", "/registry", "/audit"]
)
def test_reads_need_a_token_once_a_viewer_token_is_configured(roles: TestClient, path: str) -> None:
    assert roles.get(API + path).status_code == 401
    assert roles.get(API + path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert roles.get(API + path, headers=VIEWER_H).status_code == 200
    assert roles.get(API + path, headers=OPERATOR_H).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/version", "/openapi.json"])
def test_health_version_and_the_schema_stay_open(roles: TestClient, path: str) -> None:
    assert roles.get(API + path).status_code == 200
    assert roles.get("/metrics").status_code == 200


def test_a_viewer_may_request_a_stream_but_not_change_anything(
    roles: TestClient, fake: FakeNode
) -> None:
    assert roles.post(f"{API}/streams/camera").status_code == 401
    assert roles.post(f"{API}/streams/camera", headers=VIEWER_H).status_code == 200
    for method, path, kwargs in [
        ("POST", "/instances/cam1/stop", {}),
        ("PUT", "/instances/cam1/config", {"json": {"gain": 1}}),
        ("DELETE", "/instances/cam1", {}),
    ]:
        refused = roles.request(method, API + path, headers=VIEWER_H, **kwargs)
        assert refused.status_code == 401, (method, path)
    assert fake.instances["cam1"].config["gain"] == 2
    assert roles.post(f"{API}/instances/cam1/stop", headers=OPERATOR_H).status_code == 200


def test_a_stream_request_needs_a_token_when_only_the_operator_has_one(
    secured: TestClient,
) -> None:
    assert secured.post(f"{API}/streams/camera").status_code == 401
    assert secured.post(f"{API}/streams/camera", headers=OPERATOR_H).status_code == 200


def test_viewers_see_secrets_redacted_and_operators_see_them(roles: TestClient) -> None:
    config = roles.get(f"{API}/instances/cam1/config", headers=VIEWER_H).json()
    assert config["db_password"] == REDACTED
    assert config["camera"] == {"api_key": REDACTED, "keyframe": 3}
    assert config["gain"] == 2
    info = roles.get(f"{API}/instances/cam1", headers=VIEWER_H).json()
    assert info["config"]["db_password"] == REDACTED
    listed = roles.get(f"{API}/instances", headers=VIEWER_H)
    assert "hunter2" not in listed.text
    assert int(listed.headers["content-length"]) == len(listed.content)
    full = roles.get(f"{API}/instances/cam1/config", headers=OPERATOR_H).json()
    assert full["db_password"] == "hunter2"
    assert full["camera"]["api_key"] == "k1"


def test_viewers_see_entries_env_secrets_redacted(roles: TestClient) -> None:
    entry = roles.get(f"{API}/registry/db", headers=VIEWER_H).json()
    assert "pw" not in roles.get(f"{API}/registry", headers=VIEWER_H).text
    assert entry["spec"]["env"] == {"DB_PASSWORD": REDACTED, "MODE": "fast"}
    full = roles.get(f"{API}/registry/db", headers=OPERATOR_H).json()
    assert full["spec"]["env"]["DB_PASSWORD"] == "pw"


def test_viewers_see_audit_bodies_redacted(roles: TestClient) -> None:
    viewed = roles.get(f"{API}/audit", headers=VIEWER_H)
    assert "hunter2" not in viewed.text
    assert "k1" not in viewed.text
    assert "hunter2" in roles.get(f"{API}/audit", headers=OPERATOR_H).text


def test_the_audit_names_the_role(roles: TestClient) -> None:
    roles.post(f"{API}/streams/camera", headers=VIEWER_H)
    roles.post(f"{API}/instances/cam1/stop", headers=VIEWER_H)
    records = roles.get(f"{API}/audit", headers=OPERATOR_H).json()
    auths = {(r["path"], r["auth"], r["status"]) for r in records}
    assert (f"{API}/instances", "token", 201) in auths
    assert (f"{API}/streams/camera", "viewer", 200) in auths
    assert (f"{API}/instances/cam1/stop", "viewer", 401) in auths


def test_a_viewer_token_needs_an_operator_token(fake: FakeNode) -> None:
    with pytest.raises(ValueError, match="operator"):
        create_app(fake, viewer_token=VIEWER)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("DB_PASSWORD", True),
        ("db_pass", True),
        ("client_secret", True),
        ("AUTH_TOKEN", True),
        ("aws_credentials", True),
        ("apiKey", True),
        ("key", True),
        ("ssh_key", True),
        ("Authorization", True),
        ("keyframe", False),
        ("monkey", False),
        ("bypass", False),
        ("gain", False),
        ("name", False),
    ],
)
def test_the_secret_key_rule(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redact_walks_lists_and_audit_bodies() -> None:
    value: Any = [{"x": {"token": "t", "n": None}}, {"body": '{"password": "p", "a": 1}'}]
    assert redact(value) == [
        {"x": {"token": REDACTED, "n": None}},
        {"body": '{"password": "<redacted>", "a": 1}'},
    ]
    assert redact({"body": '{"password": "p", "a'}) == {"body": REDACTED}


# -- cross-site requests ------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN])
def test_a_cross_site_origin_is_refused_403_even_without_a_token(
    fake: FakeNode, audit: AuditLog, token: str | None, running: dict[str, Any]
) -> None:
    with TestClient(create_app(fake, token=token, audit=audit)) as c:
        headers = {"Origin": "http://evil.example", **OPERATOR_H}
        refused = c.post(f"{API}/instances/cam1/stop", headers=headers)
        assert refused.status_code == 403
        assert "http://evil.example" in refused.json()["detail"]
        assert fake.instances["cam1"].state == "running"
        assert [r.status for r in audit.tail(1)] == [403]


def test_the_apis_own_origin_and_no_origin_pass(client: TestClient, running: dict) -> None:
    own = client.post(f"{API}/instances/cam1/stop", headers={"Origin": "http://testserver"})
    assert own.status_code == 200
    assert client.post(f"{API}/instances/cam1/start").status_code == 200


@pytest.mark.parametrize(
    "kind",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_a_simple_content_type_is_refused_415(
    client: TestClient, fake: FakeNode, running: dict, kind: str
) -> None:
    refused = client.post(
        f"{API}/instances/cam1/stop", content=b"{}", headers={"Content-Type": kind}
    )
    assert refused.status_code == 415
    assert kind.split(";")[0] in refused.json()["detail"]
    assert fake.instances["cam1"].state == "running"


def test_json_and_octet_stream_bodies_pass(client: TestClient, running: dict) -> None:
    assert client.patch(f"{API}/instances/cam1/config", json={"gain": 3}).status_code == 200
    upload = client.put(
        f"{API}/registry/files/new.py",
        content=b"print(1)\n",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 200, upload.text


# -- Host ----------------------------------------------------------------------------------------


@pytest.fixture
def loopback(fake: FakeNode, audit: AuditLog) -> Iterator[TestClient]:
    """An app that answers to loopback names and ``pipevisor.lab`` only."""
    hosts = ["127.0.0.1", "localhost", "::1", "pipevisor.lab"]
    with TestClient(create_app(fake, audit=audit, allowed_hosts=hosts)) as c:
        yield c


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8090", "localhost:8090", "[::1]:8090", "localhost", "PipeVisor.lab:80"]
)
def test_known_host_names_pass(loopback: TestClient, host: str) -> None:
    assert loopback.get(f"{API}/instances", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8090", "evil.example", "127.0.0.2:8090", ""])
def test_an_unknown_host_is_refused_421(loopback: TestClient, fake: FakeNode, host: str) -> None:
    refused = loopback.get(f"{API}/instances", headers={"Host": host})
    assert refused.status_code == 421
    assert repr(host) in refused.json()["detail"]
    stop = loopback.post(f"{API}/streams/camera", headers={"Host": host})
    assert stop.status_code == 421
    assert "camera" not in fake.instances


# -- tokens from files and the environment -----------------------------------------------------


def _settings(argv: list[str]) -> Any:
    from supervisor.cli.parser import build_parser
    from supervisor.cli.service import service_settings
    from supervisor.settings import Settings

    args = build_parser().parse_args(argv)
    return service_settings(Settings, args)


def test_tokens_from_files_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.cli.client import CliError

    (tmp_path / "op").write_text(f"{TOKEN}\n")
    (tmp_path / "view").write_text(f"  {VIEWER}\n")
    (tmp_path / "empty").write_text("\n")
    reg = str(tmp_path)
    monkeypatch.delenv("PIPEVISOR_TOKEN", raising=False)
    monkeypatch.delenv("PIPEVISOR_VIEWER_TOKEN", raising=False)
    s = _settings(
        [
            "serve",
            "--registry",
            reg,
            "--token-file",
            str(tmp_path / "op"),
            "--viewer-token-file",
            str(tmp_path / "view"),
        ]
    )
    assert (s.token, s.viewer_token) == (TOKEN, VIEWER)
    monkeypatch.setenv("PIPEVISOR_TOKEN", "from-env")
    monkeypatch.setenv("PIPEVISOR_VIEWER_TOKEN", "viewer-env")
    s = _settings(["serve", "--registry", reg])
    assert (s.token, s.viewer_token) == ("from-env", "viewer-env")
    for argv, message in [
        (["--token-file", str(tmp_path / "empty")], "empty"),
        (["--token-file", str(tmp_path / "missing")], "cannot read"),
        (["--token", "x", "--token-file", str(tmp_path / "op")], "not both"),
    ]:
        with pytest.raises(CliError, match=message):
            _settings(["serve", "--registry", reg, *argv])
    monkeypatch.delenv("PIPEVISOR_TOKEN")
    with pytest.raises(CliError, match="operator token"):
        _settings(["serve", "--registry", reg])


def test_accepted_hosts_only_when_bound_to_loopback(tmp_path: Path) -> None:
    from supervisor.settings import Settings

    local = Settings(registry=tmp_path, allowed_hosts=["Lab.Example"])
    assert local.accepted_hosts == {"127.0.0.1", "localhost", "::1", "lab.example"}
    assert Settings(registry=tmp_path, api_host="0.0.0.0").accepted_hosts is None
