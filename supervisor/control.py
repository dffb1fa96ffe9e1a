"""The supervisor's end of the CONFIG channel: one ROUTER socket for all instances.

Programs connect a DEALER and speak first (``hello``); the ROUTER learns their routing id and can
then send them configs. Messages are routed to instances by name and run number, so a message of
an old run (a slow process from before a restart) is ignored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
import zmq
import zmq.asyncio

from .contract import ConfigUpdate, MessageError, dump_message, parse_program_message
from .contract.messages import ConfigAck, ConfigError, Hello, Ready, Report, Status

__all__ = ["ControlServer", "ProgramMessage", "ProgramMessageHandler"]

log = structlog.get_logger(__name__)

ProgramMessage = Hello | Ready | ConfigAck | ConfigError | Status | Report
ProgramMessageHandler = Callable[[bytes, ProgramMessage], None]


class ControlServer:
    """Receives program messages, hands them to ``handler``; sends configs to routing ids."""

    def __init__(self, ctx: zmq.asyncio.Context) -> None:
        self._ctx = ctx
        self._handler: ProgramMessageHandler | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""
        self.malformed = 0
        self._last_warning = 0.0

    async def start(self, handler: ProgramMessageHandler, host: str = "127.0.0.1") -> None:
        """Bind the ROUTER on ``host`` (any free port) and hand every message to ``handler``."""
        self._handler = handler
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.bind(f"tcp://{host}:*")
        self.url = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._task = asyncio.create_task(self._receive(), name="control-receive")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._sock is not None:
            self._sock.close(linger=0)

    async def _receive(self) -> None:
        assert self._sock is not None
        assert self._handler is not None
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2:
                self._malformed(f"expected [routing id, message], got {len(frames)} frames")
                continue
            routing_id, frame = frames
            try:
                message = parse_program_message(frame)
            except MessageError as exc:
                self._malformed(str(exc))
                continue
            try:
                self._handler(routing_id, message)
            except Exception:
                log.exception(
                    "control_handler_failed", kind=message.kind, instance=message.instance
                )

    def _malformed(self, reason: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now - self._last_warning > 1.0:
            self._last_warning = now
            log.warning("control_message_malformed", reason=reason[:300], total=self.malformed)

    def send_config(self, routing_id: bytes, update: ConfigUpdate) -> None:
        """Send a config to a program (fire and forget; the ack comes back through the handler)."""
        assert self._sock is not None
        self._sock.send_multipart([routing_id, dump_message(update)], flags=zmq.NOBLOCK)
