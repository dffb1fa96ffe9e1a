"""Instance routes: create, list, get, start, stop, restart, delete and config."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from supervisor.nodeapi.models import InstanceState
from supervisor.testing import FakeNode

API = "/api/v1"


def test_create_returns_201_and_the_instance(client: TestClient) -> None:
    """POST /instances creates and starts an instance; config overrides merge into parameters."""
    response = client.post(
        f"{API}/instances",
        json={"name": "cam1", "entry": "camera", "config": {"roi": {"y": 5}}},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "cam1"
    assert body["state"] == "running"
    assert body["config"] == {"exposure": 1, "roi": {"x": 0, "y": 5}}


def test_create_with_start_false_leaves_it_stopped(client: TestClient) -> None:
    """start=false creates the instance without starting it."""
    body = client.post(
        f"{API}/instances", json={"name": "cam2", "entry": "camera", "start": False}
    ).json()
    assert body["state"] == "stopped"


def test_create_with_a_taken_name_is_409(client: TestClient, running: dict) -> None:
    """Creating an instance whose name is taken is a 409 quoting the name."""
    response = client.post(f"{API}/instances", json={"name": "cam1", "entry": "camera"})
    assert response.status_code == 409
    assert response.json() == {"detail": "an instance named 'cam1' already exists"}


def test_create_of_an_unknown_entry_is_404(client: TestClient) -> None:
    """Creating an instance of an entry that does not exist is a 404 quoting the entry."""
    response = client.post(f"{API}/instances", json={"name": "x", "entry": "ghost"})
    assert response.status_code == 404
    assert "'ghost'" in response.json()["detail"]


def test_create_of_an_invalid_entry_is_422(client: TestClient) -> None:
    """Creating an instance of a broken entry is a 422 that says the entry is invalid."""
    response = client.post(f"{API}/instances", json={"name": "x", "entry": "broken"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("entry 'broken' is invalid")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entry": "camera"}, "name"),
        ({"name": "bad name!", "entry": "camera"}, "name"),
        ({"name": "ok", "entry": "camera", "colour": "red"}, "colour"),
        ({"name": "ok", "entry": "camera", "restart": {"mode": "sometimes"}}, "restart"),
    ],
)
def test_bad_create_body_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    """A CreateInstance body that does not validate is FastAPI's 422 with the field's path."""
    response = client.post(f"{API}/instances", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(field in error["loc"] for error in errors), errors
    assert all(error["msg"] for error in errors)


def test_list_returns_every_instance(client: TestClient, running: dict) -> None:
    """GET /instances lists the instances."""
    assert [i["name"] for i in client.get(f"{API}/instances").json()] == ["cam1"]


def test_get_returns_one_instance(client: TestClient, running: dict) -> None:
    """GET /instances/{name} returns the instance in detail."""
    body = client.get(f"{API}/instances/cam1").json()
    assert body["entry"] == "camera"
    assert body["stream"].startswith("tcp://")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/restart"),
        ("GET", "/config"),
        ("PATCH", "/config"),
        ("PUT", "/config"),
        ("GET", "/logs"),
        ("GET", "/logs/follow"),
    ],
)
def test_unknown_instance_is_404_on_every_route(
    client: TestClient, method: str, suffix: str
) -> None:
    """Every instance route answers 404 quoting the name of an instance that does not exist."""
    kwargs = {"json": {}} if method in ("PATCH", "PUT") else {}
    response = client.request(method, f"{API}/instances/ghost{suffix}", **kwargs)
    assert response.status_code == 404
    assert response.json() == {"detail": "no instance named 'ghost'"}


def test_stop_then_start_changes_the_state(client: TestClient, running: dict) -> None:
    """POST stop answers the stopped instance; POST start the running one."""
    stopped = client.post(f"{API}/instances/cam1/stop").json()
    assert (stopped["state"], stopped["pid"]) == ("stopped", None)
    started = client.post(f"{API}/instances/cam1/start").json()
    assert (started["state"], started["pid"]) == ("running", 4242)


def test_restart_counts_a_restart(client: TestClient, running: dict) -> None:
    """POST restart answers the instance running again."""
    body = client.post(f"{API}/instances/cam1/restart").json()
    assert body["state"] == "running"
    assert body["restarts"] == 1


def test_start_of_an_instance_whose_entry_broke_is_409(
    fake: FakeNode, client: TestClient, running: dict
) -> None:
    """Starting an instance whose entry became invalid is a 409."""
    fake.registry.files["camera.json"] = b"{broken"
    response = client.post(f"{API}/instances/cam1/start")
    assert response.status_code == 409
    assert "invalid" in response.json()["detail"]


def test_delete_is_204_and_the_instance_is_gone(client: TestClient, running: dict) -> None:
    """DELETE /instances/{name} answers 204; the instance is no longer found."""
    response = client.delete(f"{API}/instances/cam1")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"{API}/instances/cam1").status_code == 404


def test_get_config_returns_the_config(client: TestClient, running: dict) -> None:
    """GET config returns the configuration in force."""
    assert client.get(f"{API}/instances/cam1/config").json() == {"exposure": 1, "roi": {"x": 0}}


@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json"])
def test_patch_config_merges_the_patch(
    client: TestClient, running: dict, content_type: str
) -> None:
    """PATCH config applies a JSON merge patch: nested keys merge, null deletes."""
    response = client.patch(
        f"{API}/instances/cam1/config",
        content=b'{"roi": {"y": 2}, "exposure": null, "gain": 3}',
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["config"] == {"roi": {"x": 0, "y": 2}, "gain": 3}
    assert (body["seq"], body["applied"]) == (1, "live")


def test_put_config_replaces_the_whole_config(client: TestClient, running: dict) -> None:
    """PUT config replaces the configuration."""
    body = client.put(f"{API}/instances/cam1/config", json={"gain": 7}).json()
    assert body["config"] == {"gain": 7}
    assert client.get(f"{API}/instances/cam1/config").json() == {"gain": 7}


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_config_refused_by_the_program_is_422_quoting_it(
    client: TestClient, running: dict, method: str
) -> None:
    """A config the program refuses is a 422 whose detail quotes the refusal."""
    response = client.request(method, f"{API}/instances/cam1/config", json={"exposure": -1})
    assert response.status_code == 422
    assert response.json() == {"detail": "'cam1' refused the config: exposure -1 < 0"}


@pytest.mark.parametrize("body", [[1, 2], "text", 3])
def test_config_body_that_is_not_an_object_is_422(
    client: TestClient, running: dict, body: Any
) -> None:
    """A config body that is not a JSON object is refused by validation with 422."""
    response = client.patch(f"{API}/instances/cam1/config", json=body)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_config_change_while_stopping_is_409(
    fake: FakeNode, client: TestClient, running: dict
) -> None:
    """Changing the config of a stopping instance is a 409."""
    fake.instances["cam1"].state = InstanceState.STOPPING
    response = client.patch(f"{API}/instances/cam1/config", json={"gain": 1})
    assert response.status_code == 409
    assert "stopping" in response.json()["detail"]


def test_a_stream_is_requested_by_entry_name_and_started_on_demand(client: TestClient) -> None:
    """POST /streams/camera: an on-demand instance of the entry, running, with its URL."""
    response = client.post("/api/v1/streams/camera")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["state"], body["on_demand"]) == ("camera", "running", True)
    assert body["stream"].startswith("tcp://127.0.0.1:")
    again = client.post("/api/v1/streams/camera").json()
    assert again["stream"] == body["stream"]


def test_a_stream_of_nothing_is_404_quoting_the_name(client: TestClient) -> None:
    response = client.post("/api/v1/streams/ghost")
    assert response.status_code == 404
    assert "ghost" in response.json()["detail"]


def test_requesting_a_stream_needs_the_token(secured: TestClient) -> None:
    """It may start a process: with a token configured, a call without it is refused."""
    assert secured.post("/api/v1/streams/camera").status_code == 401
