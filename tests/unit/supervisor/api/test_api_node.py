"""Node routes, the docs, and the safety net for unexpected errors."""

from __future__ import annotations

from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from supervisor import __version__
from supervisor.nodeapi import StorageError
from supervisor.testing import FakeNode


def test_health_answers_ok_with_version_and_uptime(client: TestClient) -> None:
    """GET /health says ok, the version and a positive uptime."""
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["uptime"] >= 5.0


def test_health_reports_a_store_that_cannot_save(client: TestClient, fake: FakeNode) -> None:
    """While the node's state cannot be saved, /health says degraded and why."""
    assert client.get("/api/v1/health").json()["store"] == "ok"
    fake.store_error = "cannot write state.db: database or disk is full (SQLITE_FULL)"
    body = client.get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["store"] == fake.store_error


def test_a_change_that_cannot_be_saved_is_a_507_naming_the_reason(
    client: TestClient, fake: FakeNode
) -> None:
    """A StorageError of the node answers 507 Insufficient Storage with its message."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise StorageError("cannot write state.db: database or disk is full (SQLITE_FULL)")

    fake.create_instance = refuse  # type: ignore[method-assign]
    r = client.post("/api/v1/instances", json={"name": "x", "entry": "cam"})
    assert r.status_code == 507
    assert "SQLITE_FULL" in r.json()["detail"]


def test_version_answers_the_package_version(client: TestClient) -> None:
    """GET /version returns the pipevisor version and the API version."""
    assert client.get("/api/v1/version").json() == {"version": __version__, "api": "v1"}


def test_node_returns_node_info(client: TestClient, running: dict) -> None:
    """GET /node returns what the supervisor's node_info says, counts by state included."""
    body = client.get("/api/v1/node").json()
    assert body["hostname"] == "fakehost"
    assert body["states"] == {"running": 1}


def test_log_stream_returns_the_pub_url(client: TestClient) -> None:
    """GET /logs/stream names the ZMQ PUB where logs are re-published."""
    assert client.get("/api/v1/logs/stream").json() == {"url": "tcp://127.0.0.1:11099"}


def test_docs_and_openapi_are_served_with_route_docstrings(client: TestClient) -> None:
    """/docs serves the Swagger page; the OpenAPI text carries the route docstrings."""
    assert client.get("/docs").status_code == 200
    spec = client.get("/api/v1/openapi.json").json()
    create = spec["paths"]["/api/v1/instances"]["post"]
    assert "Create an instance of a registry entry" in create["description"]
    follow = spec["paths"]["/api/v1/instances/{name}/logs/follow"]["get"]
    assert "text/event-stream" in follow["responses"]["200"]["content"]


def test_unexpected_error_is_a_generic_500_logged_with_its_traceback(
    fake: FakeNode, client: TestClient
) -> None:
    """A crash inside the core answers 500 without its details; the log has the traceback."""
    fake.fail_node_info = True
    with capture_logs() as logs:
        response = client.get("/api/v1/node")
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["detail"].startswith("internal error")
    events = [e for e in logs if e["event"] == "api_unexpected_error"]
    assert len(events) == 1
    assert events[0]["path"] == "/api/v1/node"
    assert events[0]["exc_info"] is True


def test_unknown_route_is_404_with_detail(client: TestClient) -> None:
    """A path the API does not have is a 404 with a detail."""
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert "detail" in response.json()
