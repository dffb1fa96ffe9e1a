"""A minimal keep-alive HTTP/1.1 server on raw asyncio streams, for the fake cluster nodes.

Content-Length or chunked request bodies, answers with a Content-Length, keep-alive until the
client closes; nothing else. It can stop answering in two ways, as a dead node would:
:meth:`HttpServer.close` (the port closes and every connection is reset, as after a SIGKILL)
and :meth:`HttpServer.hang` (it accepts and reads but never answers, as a frozen process).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HOST", "Handler", "HttpError", "HttpServer", "json_body"]

HOST = "127.0.0.1"

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found", 409: "Conflict"}
_REASONS |= {400: "Bad Request", 422: "Unprocessable Entity", 503: "Service Unavailable"}


class HttpError(Exception):
    """An error answer: status and the ``detail`` a node's API would give."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


Handler = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, bytes]]


def _response(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from httpx
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class HttpServer:
    """A minimal keep-alive HTTP/1.1 server on one port, answering through ``handler``."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        self.handler = handler
        self.port = port
        self.hanging = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._resume = asyncio.Event()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._connection, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def listening(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        """Stop listening and reset every connection (what a killed process's peers see)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_connections()

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def hang(self) -> None:
        self.hanging = True
        self._resume.clear()

    def resume(self) -> None:
        self.hanging = False
        self._resume.set()
        self.drop_connections()  # requests that waited were given up by their clients

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.decode("latin-1").partition("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {}
                for item in rest.split("\r\n"):
                    key, sep, value = item.partition(":")
                    if sep:
                        headers[key.strip().lower()] = value.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                if self.hanging:
                    await self._resume.wait()
                    return
                parts = urlsplit(target)
                status, payload = self.handler(
                    method, unquote(parts.path), parse_qs(parts.query), body
                )
                writer.write(_response(status, payload))
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except ValueError:  # a request line this server cannot read
            writer.write(_response(400, b'{"detail":"bad request"}'))
        finally:
            self._writers.discard(writer)
            writer.close()


def json_body(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()
