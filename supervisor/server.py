"""``pipevisor serve``: the supervisor and its REST API on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import structlog
import uvicorn

from .api import create_app
from .audit import AuditLog
from .errors import SupervisorError
from .logconfig import configure_logging
from .node import Supervisor
from .registration import register_forever
from .settings import Settings

__all__ = ["serve"]

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, with signal handling that only sets flags (the main coroutine acts).

    uvicorn's own handling re-raises the signal after its shutdown, which would end the process
    before the supervisor has stopped its instances. First signal: graceful; second: forced.
    """

    supervisor: Supervisor | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def on_signal(self) -> None:
        if self.should_exit:
            self.force_exit = True
            if self.supervisor is not None:
                log.warning("forced_shutdown")
                self.supervisor.kill_all()
        self.should_exit = True
        if self.supervisor is not None:
            # uvicorn waits for open connections before it returns: end the log follows.
            self.supervisor.loghub.end_followers()


async def run(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Start the supervisor, serve the API until a signal, then stop everything."""
    supervisor = Supervisor(settings)
    assert settings.state_dir is not None
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(settings.state_dir / "audit.jsonl")
    app = create_app(supervisor, token=settings.token, audit=audit)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="off",
        # A backstop: the log follows are ended at the signal, any other stream after this.
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    server.supervisor = supervisor
    # Bind the API first: a port in use must stop us before any instance has started.
    sockets = [config.bind_socket()]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.on_signal)
    await supervisor.start()
    address = f"http://{settings.api_host}:{sockets[0].getsockname()[1]}"
    log.info(
        "api_listening", page=f"{address}/", docs=f"{address}/docs", token=bool(app.state.token)
    )
    registering = None
    if settings.manager is not None:
        registering = asyncio.create_task(
            register_forever(
                settings.manager,
                settings.node_name or socket.gethostname(),
                settings.node_url or address,
                settings.token,
            )
        )
    try:
        await server.serve(sockets=sockets)
    finally:
        if registering is not None:
            registering.cancel()
        await supervisor.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def serve(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    configure_logging(settings.log_format)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run(settings))
    except SupervisorError as exc:
        log.error("supervisor_not_started", reason=exc.message)
        return 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed: the API answers in about half the time."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
