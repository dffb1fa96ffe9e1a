"""Server-Sent Events: log entries as ``id: <seq>`` / ``data: <json>`` events, with keep-alives.

The stream ends when the source ends, when the client goes away (noticed at the next event or
keep-alive at the latest), or when the instance disappears; the source generator is always
closed, so no follower is left behind in the log hub.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import structlog
from starlette.responses import StreamingResponse
from starlette.types import Send

from ..nodeapi.errors import NotFoundError

if TYPE_CHECKING:
    from ..nodeapi.models import LogEntry

__all__ = ["KEEPALIVE", "EventStream", "encode_event", "log_events"]

log = structlog.get_logger(__name__)

KEEPALIVE = b": keep-alive\n\n"


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that closes its source however the stream ends."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], status_code: int = 200) -> None:
        super().__init__(
            content,
            status_code=status_code,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except OSError:
            # ASGI 2.4 servers raise from send() once the client has gone: a normal end.
            log.debug("event_stream_client_gone")
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def encode_event(entry: LogEntry) -> bytes:
    """One log entry as an SSE event whose id is its sequence number."""
    data = json.dumps(entry.to_dict(), separators=(",", ":"), default=str)
    return f"id: {entry.seq}\ndata: {data}\n\n".encode()


async def log_events(
    entries: AsyncIterator[LogEntry],
    *,
    keepalive: float,
    is_disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """Encode ``entries`` as events; a comment every ``keepalive`` seconds without one.

    The next entry is awaited in a task of its own, so a keep-alive never cancels the source in
    the middle of a step.
    """
    pending: asyncio.Future[LogEntry] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(entries))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                if await is_disconnected():
                    return
                yield KEEPALIVE
                continue
            finished, pending = pending, None
            try:
                entry = finished.result()
            except StopAsyncIteration:
                return
            except NotFoundError:
                return  # the instance was deleted while followed
            yield encode_event(entry)
    finally:
        with anyio.CancelScope(shield=True):
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
                if not pending.cancelled():
                    pending.exception()  # retrieved, so asyncio does not warn about it
            aclose = getattr(entries, "aclose", None)
            if aclose is not None:
                await aclose()
