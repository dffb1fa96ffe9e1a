"""A small client of a supervisor's REST API: JSON calls, raw uploads and Server-Sent Events."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

__all__ = [
    "API_PREFIX",
    "DEFAULT_URL",
    "TOKEN_ENV",
    "URL_ENV",
    "CliError",
    "Client",
    "error_detail",
]

DEFAULT_URL = "http://127.0.0.1:8090"
URL_ENV = "PIPEVISOR_URL"
TOKEN_ENV = "PIPEVISOR_TOKEN"  # noqa: S105 (the name of a variable, not a secret)
API_PREFIX = "/api/v1"
FOLLOW_TIMEOUT = 60.0  # s without a byte (the server sends a keep-alive every ~15 s)


class CliError(Exception):
    """A failure to report in one line, with the exit code to leave with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- talking to the supervisor ---------------------------------------------------------------


def error_detail(body: bytes) -> str:
    """The ``detail`` of an error answer; a validation error becomes 'field: reason; ...'."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", errors="replace").strip()[:500]
    if isinstance(detail, list):
        parts = []
        for item in detail:
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts)
    return str(detail)


class Client:
    """A small client of one supervisor's REST API."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise CliError(
                f"the supervisor URL must start with http:// or https://, not {url!r}", 2
            )
        self.url = url.rstrip("/")
        self.token = token or None
        self.timeout = timeout

    def open(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request; returns the open response. Raises CliError (codes 1 and 2)."""
        url = self.url + API_PREFIX + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            url += "?" + urllib.parse.urlencode(pairs)
        headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # S310: the scheme is checked to be http(s) in __init__.
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            with exc:
                raise CliError(f"{exc.code} {exc.reason}: {error_detail(exc.read())}", 1) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (TimeoutError, ConnectionError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, reason: object) -> CliError:
        if isinstance(reason, ConnectionRefusedError):
            return CliError(
                f"cannot connect to {self.url}: connection refused; is `pipevisor serve` running "
                f"there? (set --url or {URL_ENV})",
                2,
            )
        return CliError(f"cannot reach the supervisor at {self.url}: {reason}", 2)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode the JSON answer (None for an empty one)."""
        with self.open(method, path, **kwargs) as response:
            try:
                payload = response.read()
            except (TimeoutError, ConnectionError) as exc:
                raise self._unreachable(exc) from None
        return json.loads(payload) if payload else None

    def events(self, path: str, query: dict[str, Any]) -> Iterator[dict[str, str]]:
        """Server-Sent Events of ``path``, as dicts of their fields, until the stream ends."""
        response = self.open(
            "GET",
            path,
            query=query,
            headers={"Accept": "text/event-stream"},
            timeout=FOLLOW_TIMEOUT,
        )
        with response:
            event: dict[str, str] = {}
            try:
                for raw in response:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    if not line:
                        if "data" in event:
                            yield event
                        event = {}
                    elif not line.startswith(":"):
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        event[field] = event[field] + "\n" + value if field in event else value
            except (TimeoutError, ConnectionError) as exc:
                raise self._unreachable(exc) from None
