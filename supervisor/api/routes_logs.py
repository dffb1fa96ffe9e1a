"""Instance logs: the newest entries (JSON or text), and live following as Server-Sent Events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import PlainTextResponse

from ..nodeapi import NodeAPI
from .deps import get_node
from .sse import EventStream, log_events

__all__ = ["format_entry", "router"]

router = APIRouter(prefix="/instances/{name}/logs", tags=["logs"])

Sup = Annotated[NodeAPI, Depends(get_node)]

_SINCE = "Only entries after this sequence number (the ``seq`` of an entry)."


def format_entry(entry: dict[str, Any]) -> str:
    """One entry as the line ``time source level message`` (local time), traceback after it."""
    when = datetime.fromtimestamp(entry.get("time") or 0).astimezone()
    line = (
        f"{when.isoformat(timespec='milliseconds')} {entry.get('source', '-')} "
        f"{str(entry.get('level', '-')).upper()} {entry.get('message', '')}"
    )
    exc = entry.get("exc")
    return f"{line}\n{exc.rstrip()}" if exc else line


@router.get(
    "",
    responses={200: {"content": {"text/plain": {}}, "description": "Entries, oldest first."}},
)
async def tail_logs(
    sup: Sup,
    name: str,
    tail: Annotated[int, Query(ge=1, le=100_000, description="Entries to return.")] = 100,
    since: Annotated[int | None, Query(ge=0, description=_SINCE)] = None,
    fmt: Annotated[
        Literal["json", "text"],
        Query(alias="format", description="'json' (entries) or 'text' (one line per entry)."),
    ] = "json",
) -> Any:
    """The newest ``tail`` entries, or with ``since`` the first ``tail`` entries after it.

    A poller pages forward without gaps by passing the last ``seq`` it has seen as ``since``.
    """
    entries = [e.to_dict() for e in await sup.tail_logs(name, tail, since)]
    if fmt == "text":
        return PlainTextResponse("".join(format_entry(e) + "\n" for e in entries))
    return entries


@router.get(
    "/follow",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Log events."}},
)
async def follow_logs(
    sup: Sup,
    request: Request,
    name: str,
    since: Annotated[int | None, Query(ge=0, description=_SINCE)] = None,
    last_event_id: Annotated[
        int | None,
        Header(ge=0, description="Set by a reconnecting EventSource; wins over ``since``."),
    ] = None,
) -> EventStream:
    """Follow the log as Server-Sent Events: stored entries after ``since``, then live ones.

    Each event is ``id: <seq>`` and ``data: <entry as JSON>``; a comment line is sent every
    ~15 s without entries. A client that reconnects with ``Last-Event-ID`` resumes after it.
    """
    await sup.get_instance(name)  # 404 now, before the stream starts
    start = last_event_id if last_event_id is not None else since
    entries = await sup.follow_logs(name, start)
    return EventStream(
        log_events(
            entries,
            keepalive=request.app.state.sse_keepalive,
            is_disconnected=request.is_disconnected,
        )
    )
