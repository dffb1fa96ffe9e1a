"""``pipevisor manager``: the cluster manager and its REST API on one event loop."""

from __future__ import annotations

from supervisor import serving
from supervisor.audit import AuditLog

from .app import create_manager_app
from .config import ClusterConfig, load_config
from .manager import ClusterManager
from .settings import ManagerSettings

__all__ = ["run", "serve_manager"]


async def run(settings: ManagerSettings) -> None:
    """Start the manager, serve until a signal, then stop checking (nodes keep running)."""
    rules = load_config(settings.config) if settings.config else ClusterConfig()
    manager = ClusterManager(settings, rules)
    assert settings.state_dir is not None
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_manager_app(
        manager,
        token=settings.token,
        audit=AuditLog(settings.state_dir / "audit.jsonl"),
        viewer_token=settings.viewer_token,
        allowed_hosts=settings.accepted_hosts,
    )
    await serving.run(manager, app, settings, listening_event="manager_listening")


def serve_manager(settings: ManagerSettings) -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    return serving.serve(lambda: run(settings), settings, name="manager")
