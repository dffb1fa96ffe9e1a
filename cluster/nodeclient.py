"""The manager's HTTP client of one node: pooled keep-alive connections, domain errors back.

A node's refusal comes back as the domain error the node raised (its ``detail`` unchanged), so
the manager's own edge maps it to the same status code: a client cannot tell the difference.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from supervisor.nodeapi.errors import (
    ConflictError,
    InvalidConfigError,
    NotFoundError,
    PayloadTooLargeError,
    SupervisorError,
    UnavailableError,
)

__all__ = ["API", "NodeClient", "error_for"]

API = "/api/v1"

_BY_STATUS: dict[int, type[SupervisorError]] = {
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidConfigError,
}


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return answer.text[:500]
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()) if p != 'body')}: {item.get('msg')}"
            for item in detail
        )
    return str(detail)


def error_for(node: str, answer: httpx.Response) -> SupervisorError:
    """The domain error a node's error answer stands for."""
    detail = _detail(answer)
    if answer.status_code in (401, 403):
        return UnavailableError(f"node {node!r} refused the manager's token: {detail}")
    if answer.status_code >= 500:
        return UnavailableError(f"node {node!r} failed ({answer.status_code}): {detail}")
    return _BY_STATUS.get(answer.status_code, SupervisorError)(detail)


class NodeClient:
    """Calls one node's REST API; every failure is a domain error naming the node."""

    def __init__(
        self,
        name: str,
        url: str,
        token: str | None,
        timeout: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=url + API,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            transport=transport,  # tests: in-process nodes; None: the network
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The node's answer to one call; an error answer or no answer raises."""
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            answer = await self._http.request(method, path, **kwargs, **extra)
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"node {self.name!r} ({self.url}) does not answer: {type(exc).__name__} {exc}"
            ) from None
        if answer.status_code >= 400:
            raise error_for(self.name, answer)
        return answer

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON of the node's answer (None for 204)."""
        answer = await self.request(method, path, **kwargs)
        if answer.status_code == 204 or not answer.content:
            return None
        try:
            return json.loads(answer.content)
        except ValueError:
            raise UnavailableError(
                f"node {self.name!r} answered {method} {path} with something that is not JSON"
            ) from None

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
        """The lines of a streamed answer (Server-Sent Events), with no read timeout."""
        timeout = httpx.Timeout(10.0, read=None)
        try:
            async with self._http.stream("GET", path, params=params, timeout=timeout) as answer:
                if answer.status_code >= 400:
                    await answer.aread()
                    raise error_for(self.name, answer)
                yield answer.aiter_lines()
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"node {self.name!r} ({self.url}) does not answer: {type(exc).__name__} {exc}"
            ) from None
