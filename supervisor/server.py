"""``pipevisor serve``: the supervisor and its REST API on one event loop."""

from __future__ import annotations

import socket

from . import serving
from .api import create_app
from .audit import AuditLog
from .node import Supervisor
from .nodeapi.errors import StorageError
from .registration import register_forever
from .settings import Settings

__all__ = ["serve"]


async def run(settings: Settings) -> None:
    """Start the supervisor, serve the API until a signal, then stop everything."""
    supervisor = Supervisor.from_settings(settings)
    assert settings.state_dir is not None
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        audit = AuditLog(settings.state_dir / "audit.jsonl")
    except OSError as exc:  # a read-only or full state folder: one clear line, no traceback
        raise StorageError(
            f"the state folder {settings.state_dir} is not usable: {exc.strerror or exc}"
        ) from None
    app = create_app(
        supervisor,
        token=settings.token,
        audit=audit,
        viewer_token=settings.viewer_token,
        allowed_hosts=settings.accepted_hosts,
    )

    async def register(address: str) -> None:
        assert settings.manager is not None
        await register_forever(
            settings.manager,
            settings.node_name or socket.gethostname(),
            settings.node_url or address,
            settings.token,
        )

    await serving.run(
        supervisor,
        app,
        settings,
        listening_event="api_listening",
        beside=register if settings.manager is not None else None,
    )


def serve(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    return serving.serve(lambda: run(settings), settings, name="supervisor")
