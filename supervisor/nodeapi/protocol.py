"""The node API: everything a node offers, as one async Protocol.

A node (``supervisor.node.Supervisor``) implements it over its own processes, the cluster
manager (``cluster.manager.ClusterManager``) over many nodes, and ``supervisor.testing`` fakes it
in memory. The REST API (``supervisor.api.create_app``) serves any of them, and adapters (the
CLI, CamServer's routes) are written against it alone: a client cannot tell a manager from a
node.

Every method is a coroutine. Errors are the domain errors of ``supervisor.nodeapi.errors``
(``InstanceNotFoundError``, ``ConflictError``, ...); only the edge maps them to HTTP codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from .models import (
    BackgroundInfo,
    ConfigResult,
    CreateInstance,
    Entry,
    InstanceInfo,
    LogEntry,
    Preview,
    RegistryFile,
)

__all__ = ["NodeAPI"]


class NodeAPI(Protocol):
    """What a node (or a manager of nodes) offers its clients."""

    @property
    def started_at(self) -> float:
        """Unix time the service started."""
        ...

    @property
    def max_upload_bytes(self) -> int:
        """The largest registry file or background an upload may send."""
        ...

    # -- instances ---------------------------------------------------------------------------

    async def list_instances(self) -> list[InstanceInfo]:
        """Every instance, sorted by name."""
        ...

    async def list_instances_json(self) -> bytes:
        """``list_instances`` as a JSON array, rendered from caches (the hot listing path)."""
        ...

    async def get_instance(self, name: str) -> InstanceInfo:
        """One instance. Raises ``InstanceNotFoundError``."""
        ...

    async def create_instance(self, req: CreateInstance) -> InstanceInfo:
        """A new instance of a registry entry, started unless ``req.start`` is false."""
        ...

    async def request_stream(self, name: str) -> InstanceInfo:
        """The instance ``name`` with its stream, started if needed: else a new on-demand
        instance of the registry entry of that name (CamServer's ``GET /instance/<name>``)."""
        ...

    async def start_instance(self, name: str) -> InstanceInfo:
        """Steer towards running (a manual start also clears a crash loop)."""
        ...

    async def stop_instance(self, name: str) -> InstanceInfo:
        """Steer towards stopped: SIGTERM, SIGKILL after the grace period; returns once ended."""
        ...

    async def restart_instance(self, name: str) -> InstanceInfo:
        """Stop, then start."""
        ...

    async def delete_instance(self, name: str) -> None:
        """Stop and forget the instance."""
        ...

    # -- config ------------------------------------------------------------------------------

    async def get_config(self, name: str) -> dict[str, Any]:
        """The instance's current config."""
        ...

    async def update_config(self, name: str, patch: dict[str, Any]) -> ConfigResult:
        """Merge ``patch`` (RFC 7386) into the config and apply it live."""
        ...

    async def set_config(self, name: str, config: dict[str, Any]) -> ConfigResult:
        """Replace the config and apply it live."""
        ...

    # -- logs --------------------------------------------------------------------------------

    async def tail_logs(
        self, name: str, n: int = 100, since_seq: int | None = None
    ) -> list[LogEntry]:
        """The last ``n`` stored entries of the instance (after ``since_seq`` if given)."""
        ...

    async def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
        """Stored entries after ``since_seq``, then live ones, as an async iterator.

        Raises ``InstanceNotFoundError`` when awaited, before anything is iterated."""
        ...

    async def log_stream_url(self) -> str:
        """The ZMQ PUB URL where every instance's log entries are published."""
        ...

    # -- the node ----------------------------------------------------------------------------

    async def node_health(self) -> dict[str, Any]:
        """The condition of what the node depends on: ``{"store": "ok"}``, or the store's last
        error while its state cannot be saved."""
        ...

    async def node_info(self) -> dict[str, Any]:
        """Version, host, uptime, instance counts by state, channels and resources."""
        ...

    # -- the registry ------------------------------------------------------------------------

    async def list_entries(self) -> list[Entry]:
        """Every registry entry, valid or not (an invalid one says why)."""
        ...

    async def get_entry(self, name: str) -> Entry:
        """One registry entry. Raises ``EntryNotFoundError``."""
        ...

    async def list_files(self) -> list[RegistryFile]:
        """The files of the registry folder."""
        ...

    async def read_file(self, filename: str) -> bytes:
        """One registry file's content."""
        ...

    async def write_file(
        self, filename: str, data: bytes, *, executable: bool = False
    ) -> Entry | None:
        """Create or replace a registry file; the entry it makes, if any."""
        ...

    async def delete_file(self, filename: str) -> None:
        """Remove a registry file."""
        ...

    # -- backgrounds -------------------------------------------------------------------------

    async def list_backgrounds(self, camera: str | None = None) -> list[BackgroundInfo]:
        """Every background (of ``camera`` if given)."""
        ...

    async def get_background(self, background: str) -> BackgroundInfo:
        """One background. Raises ``BackgroundNotFoundError``."""
        ...

    async def latest_background(self, camera: str) -> BackgroundInfo:
        """The newest background collected from ``camera``."""
        ...

    async def read_background(self, background: str) -> bytes:
        """One background as a ``.npy`` file."""
        ...

    async def write_background(self, background: str, data: bytes) -> BackgroundInfo:
        """Store a ``.npy`` upload (never unpickled) as a background."""
        ...

    async def delete_background(self, background: str) -> None:
        """Remove a background."""
        ...

    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        """Average the next ``n_images`` images of camera instance ``name`` into a background."""
        ...

    # -- previews ----------------------------------------------------------------------------

    async def preview(
        self,
        name: str,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview:
        """A PNG of the latest ``channel`` image of instance ``name``, colour-mapped."""
        ...
