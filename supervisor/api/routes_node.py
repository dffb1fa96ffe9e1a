"""The node itself: health, version, node info, the log stream address and the audit log."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from .. import __version__
from ..audit import AuditLog, AuditRecord
from ..nodeapi import NodeAPI
from .deps import get_audit, get_node
from .schemas import Health, StreamUrl, Version

__all__ = ["router"]

router = APIRouter(tags=["node"])

Sup = Annotated[NodeAPI, Depends(get_node)]


@router.get("/health")
async def health(sup: Sup) -> Health:
    """Liveness probe: answers while the node's event loop runs; ``store`` says whether its
    state is saved (``status`` is 'degraded' while it is not: changes are refused with 507)."""
    store = str((await sup.node_health()).get("store", "ok"))
    return Health(
        status="ok" if store == "ok" else "degraded",
        version=__version__,
        uptime=time.time() - sup.started_at,
        store=store,
    )


@router.get("/version")
async def version() -> Version:
    """The pipevisor version of this node."""
    return Version(version=__version__)


@router.get("/node")
async def node(sup: Sup) -> dict[str, Any]:
    """Node information: version, uptime, host name, and instance counts by state."""
    return await sup.node_info()


@router.get("/logs/stream")
async def log_stream(sup: Sup) -> StreamUrl:
    """Address of the ZMQ PUB that re-publishes every log entry (topic: the instance name)."""
    return StreamUrl(url=await sup.log_stream_url())


@router.get("/audit")
async def audit(
    log: Annotated[AuditLog, Depends(get_audit)],
    tail: Annotated[int, Query(ge=1, le=100_000, description="Newest records to return.")] = 100,
) -> list[AuditRecord]:
    """The newest mutating calls (allowed and refused), oldest first."""
    return log.tail(tail)
