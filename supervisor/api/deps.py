"""What the routes need from the node, and how they get it: from ``app.state``, never a global."""

from __future__ import annotations

from fastapi import Request

from ..audit import AuditLog
from ..nodeapi import NodeAPI

__all__ = ["API_PREFIX", "get_audit", "get_node"]

API_PREFIX = "/api/v1"


async def get_node(request: Request) -> NodeAPI:
    """The node (or manager) this app serves."""
    node: NodeAPI = request.app.state.node
    return node


async def get_audit(request: Request) -> AuditLog:
    """The audit log of this app."""
    audit: AuditLog = request.app.state.audit
    return audit
