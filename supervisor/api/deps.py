"""What the routes need from the node, and how they get it: from ``app.state``, never a global."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi import Request

from ..audit import AuditLog

if TYPE_CHECKING:
    from ..backgrounds import BackgroundInfo, BackgroundStore
    from ..logring import LogEntry
    from ..preview import Preview
    from ..registry import Registry
    from ..settings import Settings
    from ..views import ConfigResult, CreateInstance, InstanceInfo

__all__ = ["API_PREFIX", "SupervisorAPI", "get_audit", "get_supervisor", "resolve"]

T = TypeVar("T")

API_PREFIX = "/api/v1"


class SupervisorAPI(Protocol):
    """The face of ``supervisor.node.Supervisor`` that the REST API uses.

    A cluster manager serves the same API: its ``get_instance``, ``get_config`` and
    ``tail_logs`` ask a node, so they may return awaitables (the routes ``resolve`` them).
    """

    settings: Settings
    registry: Registry
    backgrounds: BackgroundStore
    started_at: float

    def list_instances(self) -> list[InstanceInfo]: ...
    def list_instances_json(self) -> bytes: ...
    def get_instance(self, name: str) -> InstanceInfo | Awaitable[InstanceInfo]: ...
    async def create_instance(self, req: CreateInstance) -> InstanceInfo: ...
    async def start_instance(self, name: str) -> InstanceInfo: ...
    async def request_stream(self, name: str) -> InstanceInfo: ...
    async def stop_instance(self, name: str) -> InstanceInfo: ...
    async def restart_instance(self, name: str) -> InstanceInfo: ...
    async def delete_instance(self, name: str) -> None: ...
    def get_config(self, name: str) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...
    async def update_config(self, name: str, patch: dict[str, Any]) -> ConfigResult: ...
    async def set_config(self, name: str, config: dict[str, Any]) -> ConfigResult: ...
    def tail_logs(
        self, name: str, n: int = 100, since_seq: int | None = None
    ) -> list[LogEntry] | Awaitable[list[LogEntry]]: ...
    def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]: ...
    def log_stream_url(self) -> str: ...
    def node_info(self) -> dict[str, Any]: ...
    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo: ...
    async def preview(
        self,
        name: str,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview: ...


async def get_supervisor(request: Request) -> SupervisorAPI:
    """The node this app serves."""
    return request.app.state.supervisor


async def get_audit(request: Request) -> AuditLog:
    """The audit log of this app."""
    return request.app.state.audit


async def resolve(value: T | Awaitable[T]) -> T:
    """``value``, awaited if the supervisor answered with an awaitable (a manager asks a node)."""
    if inspect.isawaitable(value):
        return await value
    return value
