"""The cluster's merged log stream: every node's log PUB, relayed on one PUB of the manager.

A client subscribes to the manager's stream (``GET /api/v1/logs/stream``) exactly as to a
node's; topics and messages pass unchanged. ZMQ reconnects to a node that restarts by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit

import structlog
import zmq
import zmq.asyncio

__all__ = ["LogRelay"]

log = structlog.get_logger(__name__)


class LogRelay:
    """A SUB connected to each node's log stream, forwarding to one bound PUB."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.url = ""
        self.relayed = 0
        self._ctx = zmq.asyncio.Context()
        self._sub: zmq.asyncio.Socket | None = None
        self._pub: zmq.asyncio.Socket | None = None
        self._connected: dict[str, str] = {}  # node -> URL its SUB is connected to
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, 10_000)
        self._pub.bind(f"tcp://{self.host}:*")
        self.url = self._pub.get_string(zmq.LAST_ENDPOINT)
        if self.host in ("0.0.0.0", "*"):  # bound everywhere: name this host to clients
            self.url = f"tcp://{socket.getfqdn()}:{self.url.rpartition(':')[2]}"
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._task = asyncio.create_task(self._forward())
        log.info("log_relay_started", url=self.url)

    def follow(self, node: str, stream_url: str | None, node_api_url: str | None) -> None:
        """Relay ``node``'s log stream (again, if its URL changed)."""
        if not stream_url or self._sub is None:
            return
        parts = urlsplit(stream_url)
        if parts.hostname in ("0.0.0.0", "*") and node_api_url:
            # Bound on every interface: reach it where the node's API is.
            stream_url = f"tcp://{urlsplit(node_api_url).hostname}:{parts.port}"
        old = self._connected.get(node)
        if old == stream_url:
            return
        if old is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sub.disconnect(old)
        self._sub.connect(stream_url)
        self._connected[node] = stream_url
        log.info("log_relay_follows", node=node, url=stream_url)

    async def _forward(self) -> None:
        assert self._sub is not None
        assert self._pub is not None
        while True:
            frames = await self._sub.recv_multipart(copy=False)
            await self._pub.send_multipart(frames, copy=False)
            self.relayed += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sock in (self._sub, self._pub):
            if sock is not None:
                sock.close(linger=0)
        self._ctx.term()
