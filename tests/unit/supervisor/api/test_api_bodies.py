"""The JSON body layer: bad input is a 4xx quoting the field and the reason, and loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cluster import routes as cluster_routes
from supervisor.api import create_app
from supervisor.api.body import MAX_JSON_BYTES, JSONBodyRoute
from supervisor.audit import AuditLog
from supervisor.testing import FakeNode

API = "/api/v1"
JSON = {"content-type": "application/json"}


def post_raw(client: TestClient, path: str, body: bytes, method: str = "POST") -> Any:
    """Send ``body`` as it is: the test client would refuse to encode most of these."""
    return client.request(method, f"{API}{path}", content=body, headers=JSON)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"name": "\\ud800", "entry": "camera"}', "body: name: the string '\\ud800'"),
        (
            b'{"name": "x", "entry": "camera", "config": {"a": [1, {"b": "ok\\udfff"}]}}',
            "body: config.a[1].b: the string 'ok\\udfff'",
        ),
        (b'{"name": "x", "entry": "camera", "config": {"\\ud800k": 1}}', "body: config: the key"),
    ],
)
def test_a_lone_surrogate_anywhere_is_422_quoting_its_path_and_nothing_is_created(
    client: TestClient, running: dict, body: bytes, where: str
) -> None:
    """A string that cannot be UTF-8 (name, config value at any depth, key) is refused with
    its path; the instances list still answers and holds only what was there."""
    response = post_raw(client, "/instances", body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(where)
    assert "lone surrogate" in response.json()["detail"]
    listed = client.get(f"{API}/instances")
    assert listed.status_code == 200
    assert [i["name"] for i in listed.json()] == ["cam1"]


def test_a_surrogate_in_a_config_change_is_refused_and_the_config_kept(
    client: TestClient, running: dict
) -> None:
    """PATCH and PUT of a config with a lone surrogate: 422, the config unchanged."""
    before = client.get(f"{API}/instances/cam1/config").json()
    for method in ("PATCH", "PUT"):
        response = post_raw(client, "/instances/cam1/config", b'{"x": "\\ud800"}', method)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("body: x: the string")
    assert client.get(f"{API}/instances/cam1/config").json() == before


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        (b'{"x": NaN}', "body: x: NaN is not a JSON number"),
        (b'{"x": {"y": [Infinity]}}', "body: x.y[0]: Infinity is not a JSON number"),
        (b'{"x": -Infinity}', "body: x: -Infinity is not a JSON number"),
        (b'{"x": 1e400}', "body: x: 1e400 is not a JSON number"),
    ],
)
def test_non_finite_numbers_are_refused_anywhere(
    client: TestClient, running: dict, body: bytes, quoted: str
) -> None:
    """NaN, infinities and numbers that overflow a double are 422 quoting the field."""
    response = post_raw(client, "/instances/cam1/config", body, "PUT")
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(quoted)


@pytest.mark.parametrize(
    ("extra", "loc", "msg"),
    [
        ({"start": "yes"}, ["body", "start"], "valid boolean"),
        ({"permanent": 1}, ["body", "permanent"], "valid boolean"),
        ({"restart": {"stop_grace": 1e300}}, ["body", "restart", "stop_grace"], "3600"),
        ({"restart": {"stop_grace": -1}}, ["body", "restart", "stop_grace"], "0"),
        ({"restart": {"backoff_factor": 1e308}}, ["body", "restart", "backoff_factor"], "100"),
        ({"restart": {"backoff_initial": 3601}}, ["body", "restart", "backoff_initial"], "3600"),
        ({"restart": {"backoff_max": 1e10}}, ["body", "restart", "backoff_max"], "3600"),
        ({"restart": {"stable_after": 1e10}}, ["body", "restart", "stable_after"], "3600"),
        ({"output": {"enabled": "no"}}, ["body", "output", "enabled"], "valid boolean"),
    ],
)
def test_create_fields_are_strict_and_bounded(
    client: TestClient, extra: dict[str, Any], loc: list[str], msg: str
) -> None:
    """Booleans are booleans; durations and factors are finite within their documented range."""
    body = {"name": "x", "entry": "camera", **extra}
    response = client.post(f"{API}/instances", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [e["loc"] for e in errors] == [loc], errors
    assert msg in errors[0]["msg"]


def test_infinity_in_a_restart_policy_is_refused_before_the_model(client: TestClient) -> None:
    """``backoff_initial: Infinity`` never reaches the model: 422 quoting the field."""
    body = b'{"name": "x", "entry": "camera", "restart": {"backoff_initial": Infinity}}'
    response = post_raw(client, "/instances", body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: restart.backoff_initial: Infinity")


def test_a_body_past_the_limit_is_413_with_the_limit(client: TestClient, running: dict) -> None:
    """A JSON body over 1 MiB is refused with 413 naming the limit; the config is unchanged."""
    big = b'{"x": "' + b"a" * MAX_JSON_BYTES + b'"}'
    response = post_raw(client, "/instances/cam1/config", big, "PUT")
    assert response.status_code == 413
    assert f"limit of {MAX_JSON_BYTES} bytes" in response.json()["detail"]
    assert "x" not in client.get(f"{API}/instances/cam1/config").json()


def test_a_streamed_body_is_cut_at_the_limit(fake: FakeNode, audit: AuditLog) -> None:
    """Without a content-length the body is read only up to the app's limit, then 413."""
    chunks_read = 0

    def chunks() -> Iterator[bytes]:
        nonlocal chunks_read
        yield b'{"x": "'
        for _ in range(1000):
            chunks_read += 1
            yield b"a" * 1024
        yield b'"}'

    with TestClient(create_app(fake, audit=audit, max_json_bytes=10_000)) as client:
        client.post(f"{API}/instances", json={"name": "cam1", "entry": "camera"})
        response = client.put(f"{API}/instances/cam1/config", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert "more than the JSON body limit of 10000 bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"x": "\xff"}', "body: not valid UTF-8 at byte 7 (invalid start byte)"),
        (b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "body: JSON nested deeper than 64 levels"),
        (b'{"x": ' + b"[" * 70 + b"]" * 70 + b"}", "body: JSON nested deeper than 64 levels at x"),
        (b'{"x": ', "body: not valid JSON: Expecting value at line 1 column 7 (char 6)"),
    ],
)
def test_unreadable_bodies_are_400_saying_why(
    client: TestClient, running: dict, body: bytes, detail: str
) -> None:
    """Bytes that are not UTF-8, JSON too deep, or broken JSON: 400 with the reason."""
    response = post_raw(client, "/instances/cam1/config", body, "PUT")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


def test_a_surrogate_in_a_refused_request_is_audited_escaped(
    client: TestClient, audit: AuditLog
) -> None:
    """The audit log keeps the refused request, with the bad string escaped."""
    response = post_raw(client, "/instances", b'{"name": "\\ud800", "entry": "camera"}')
    assert response.status_code == 422
    record = audit.tail(1)[0]
    assert record.status == 422
    assert record.model_dump_json()


def test_an_acquisition_body_goes_through_the_same_layer(client: TestClient, running: dict) -> None:
    """The acquisition routes refuse a NaN like every JSON route."""
    body = b'{"output_file": "a.h5", "start_pulse_id": NaN}'
    response = post_raw(client, "/instances/cam1/acquisitions", body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: start_pulse_id: NaN")


def _json_routes(routes: list[Any]) -> list[APIRoute]:
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's lazily included router
        if included is not None:
            found += _json_routes(included.routes)
        elif isinstance(route, APIRoute) and route.body_field is not None:
            found.append(route)
    return found


def test_every_json_route_goes_through_the_layer(app: FastAPI) -> None:
    """Every route of the node's app and of the manager's cluster views that takes a body is
    a JSONBodyRoute: no route parses JSON on its own."""
    routes = _json_routes(app.routes) + _json_routes(cluster_routes.router.routes)
    assert len(routes) >= 6
    assert [r.path for r in routes if not isinstance(r, JSONBodyRoute)] == []
