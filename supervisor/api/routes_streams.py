"""Streams by name: one call gives a client the URL, starting the instance if needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..nodeapi import NodeAPI
from ..nodeapi.models import InstanceInfo
from .deps import get_node

__all__ = ["router"]

router = APIRouter(prefix="/streams", tags=["instances"])

Sup = Annotated[NodeAPI, Depends(get_node)]


@router.post("/{name}")
async def request_stream(sup: Sup, name: str) -> InstanceInfo:
    """The stream of ``name``, started if needed: the instance of that name, or else a new
    on-demand instance of the registry entry of that name, which stops once it has had no
    client for its entry's ``no_client_timeout`` (10 s by default; ``stops_at`` shows the
    countdown). CamServer's ``GET /pipeline/instance/<name>``, as a POST: it may start a
    process, so a configured token guards it. 404 if ``name`` is neither an instance nor an
    entry, 409 if it has no output stream. The answer comes before the program is ready: a
    client connects to ``stream`` and waits for the first message."""
    return await sup.request_stream(name)
