"""The manager's app: a node's REST API, served by the manager, plus the cluster views."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI

from supervisor.api import API_PREFIX, create_app
from supervisor.audit import AuditLog

from . import routes
from .manager import ClusterManager

__all__ = ["create_manager_app"]


def create_manager_app(
    manager: ClusterManager,
    *,
    token: str | None = None,
    audit: AuditLog | None = None,
    viewer_token: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> FastAPI:
    """The node API over the whole cluster, and ``/api/v1/cluster/...`` (arguments: those of
    ``create_app``)."""
    app = create_app(
        manager, token=token, audit=audit, viewer_token=viewer_token, allowed_hosts=allowed_hosts
    )
    app.state.manager = manager  # the cluster views need more than the node API
    app.title = "pipevisor manager"
    app.include_router(routes.router, prefix=API_PREFIX)
    return app
