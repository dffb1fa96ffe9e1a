"""Calls about one instance's logs, previews and backgrounds, asked of the node that holds it.

Each function turns a node's REST answer back into the node API's model, so the manager answers
exactly what the node would have.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from supervisor.nodeapi import BackgroundInfo, LogEntry, Preview, UnavailableError

from .nodeclient import NodeClient

__all__ = ["collect_background", "follow_logs", "preview", "tail_logs"]

log = structlog.get_logger(__name__)


async def tail_logs(client: NodeClient, name: str, n: int, since_seq: int | None) -> list[LogEntry]:
    """The last ``n`` log entries of instance ``name`` (after ``since_seq``)."""
    params: dict[str, Any] = {"tail": n}
    if since_seq is not None:
        params["since"] = since_seq
    entries = await client.json("GET", f"/instances/{name}/logs", params=params)
    return [LogEntry(**e) for e in entries]


async def follow_logs(
    client: NodeClient, node: str, name: str, since_seq: int | None
) -> AsyncIterator[LogEntry]:
    """The node's Server-Sent Events of the log of ``name``, as entries, until it goes away."""
    params = {"since": since_seq} if since_seq is not None else {}
    try:
        async with client.stream(f"/instances/{name}/logs/follow", params) as lines:
            async for line in lines:
                if line.startswith("data: "):
                    yield LogEntry(**json.loads(line[6:]))
    except UnavailableError as exc:
        # The node went away: the follow ends; the client's EventSource asks again.
        log.info("log_follow_ended", instance=name, node=node, reason=exc.message)


async def preview(
    client: NodeClient,
    name: str,
    channel: str,
    colormap: str,
    width: int,
    vmin: float | None,
    vmax: float | None,
) -> Preview:
    """The node's PNG preview of ``name``, with the figures its headers carry."""
    params: dict[str, Any] = {"channel": channel, "colormap": colormap, "width": width}
    if vmin is not None:
        params["min"] = vmin
    if vmax is not None:
        params["max"] = vmax
    answer = await client.request("GET", f"/instances/{name}/preview", params=params)
    height, _, across = answer.headers["X-Image-Shape"].partition("x")
    low, _, high = answer.headers["X-Image-Range"].partition(",")
    timing = answer.headers.get("Server-Timing", "dur=0").rpartition("dur=")[2]
    return Preview(
        png=answer.content,
        pulse_id=int(answer.headers["X-Pulse-Id"]),
        shape=(int(height), int(across)),
        vmin=float(low),
        vmax=float(high),
        time=time.time(),
        render_seconds=float(timing) / 1000,
    )


async def collect_background(
    client: NodeClient, name: str, n_images: int, timeout: float | None
) -> tuple[BackgroundInfo, bytes]:
    """A background collected by the node from ``name``, and its ``.npy`` file."""
    params: dict[str, Any] = {"n_images": n_images}
    if timeout is not None:
        params["timeout"] = timeout
    answer = await client.json(
        "POST",
        f"/instances/{name}/backgrounds",
        params=params,
        timeout=(timeout or 10 + n_images) + 10,
    )
    info = BackgroundInfo.model_validate(answer)
    data = await client.request("GET", f"/backgrounds/{info.id}/data")
    return info, data.content
