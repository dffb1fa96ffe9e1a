"""The manager's client of one node: a node's refusal comes back as the same domain error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cluster.nodeclient import NodeClient
from supervisor.nodeapi.errors import (
    ConflictError,
    InvalidConfigError,
    NotFoundError,
    PayloadTooLargeError,
    SupervisorError,
    UnavailableError,
)

Handler = Callable[[httpx.Request], httpx.Response]


def call(handler: Handler, method: str = "GET", path: str = "/instances/x", **kw: Any) -> Any:
    """The JSON a NodeClient of node 'n1' at http://n1:8080 returns for one call."""

    async def scenario() -> Any:
        client = NodeClient("n1", "http://n1:8080", "tok", transport=httpx.MockTransport(handler))
        try:
            return await client.json(method, path, **kw)
        finally:
            await client.close()

    return asyncio.run(scenario())


def answer(status: int, body: Any) -> Handler:
    """A node that answers every call with ``status`` and the JSON ``body``."""
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, InvalidConfigError),
        (400, SupervisorError),
    ],
)
def test_a_node_refusal_is_the_same_error_with_the_nodes_detail(
    status: int, error: type[SupervisorError]
) -> None:
    """404, 409, 413 and 422 become the domain errors the manager maps back to that status."""
    with pytest.raises(error) as caught:
        call(answer(status, {"detail": "no instance named 'x'"}))
    assert type(caught.value) is error
    assert caught.value.message == "no instance named 'x'"


def test_validation_errors_are_joined_with_their_fields() -> None:
    """FastAPI's list of validation errors becomes one sentence naming each field."""
    detail = [
        {"loc": ["body", "name"], "msg": "String should match pattern"},
        {"loc": ["body", "input", "url"], "msg": "Field required"},
    ]
    with pytest.raises(InvalidConfigError) as caught:
        call(answer(422, {"detail": detail}), "POST", "/instances", json={})
    assert caught.value.message == "name: String should match pattern; input.url: Field required"


def test_a_refused_token_is_unavailable_naming_the_node() -> None:
    """A 401 from a node is the manager's problem (503), not the client's: it names the node."""
    with pytest.raises(UnavailableError, match="node 'n1' refused the manager's token: bad token"):
        call(answer(401, {"detail": "bad token"}), "DELETE")


def test_a_failing_node_is_unavailable_with_its_status() -> None:
    """A 500 from a node is a 503 of the manager naming the node and the node's status."""
    with pytest.raises(UnavailableError, match=r"node 'n1' failed \(500\): internal error"):
        call(answer(500, {"detail": "internal error"}))


def test_a_node_that_does_not_answer_is_unavailable_naming_it() -> None:
    """A refused connection names the node and its URL."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(UnavailableError) as caught:
        call(refuse)
    assert caught.value.message.startswith("node 'n1' (http://n1:8080) does not answer: ")
    assert "ConnectError connection refused" in caught.value.message


def test_an_answer_that_is_not_json_is_unavailable() -> None:
    """A node answering with something that is not JSON is an error naming the call."""
    with pytest.raises(UnavailableError, match="answered GET /instances/x with something that"):
        call(lambda request: httpx.Response(200, text="<html>proxy</html>"))


def test_the_token_is_sent_and_the_api_prefix_added() -> None:
    """Calls go to the node's /api/v1 with the bearer token; a 204 is None."""
    seen: list[httpx.Request] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    assert call(node, "DELETE", "/instances/cam1") is None
    assert str(seen[0].url) == "http://n1:8080/api/v1/instances/cam1"
    assert seen[0].headers["Authorization"] == "Bearer tok"
