"""Serving a node API: the service and its REST API on one event loop, for a node and a manager.

uvicorn's own signal handling re-raises the signal after its shutdown, which would end the
process before the service has stopped what it runs; here a signal only sets flags and the main
coroutine acts. First signal: graceful (``interrupt(forced=False)``); second: forced (but never
a SIGHUP).

SIGINT, SIGTERM and SIGHUP all stop gracefully. SIGHUP is what a closed terminal or SSH session
sends: it used to end the process at once (its default action) with no log line, and the guard
then SIGKILLed every program without a SIGTERM. Ignoring it instead would leave a node running
that nobody started on purpose, so a hangup is a stop; run it under systemd, or
``nohup``/``setsid`` it, to keep it past a session (started with SIGHUP ignored, as by
``nohup``, it keeps ignoring it). Once the terminal is gone, writing the log to
it fails (EIO), which would break the shutdown half way: at a hangup, standard output and error
that are a terminal are pointed at ``/dev/null``, after the event is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import stat
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol

import structlog
import uvicorn
from fastapi import FastAPI

from .logconfig import configure_logging
from .nodeapi.errors import SupervisorError
from .settings import ServiceSettings

__all__ = ["Service", "run", "serve"]

log = structlog.get_logger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each stops gracefully; a second SIGINT or SIGTERM forces."""


class Service(Protocol):
    """What is served: started before the API answers, closed after it stopped."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def interrupt(self, forced: bool) -> None:
        """A signal came: end long requests (log follows); ``forced``: a second signal."""
        ...


class _Server(uvicorn.Server):
    """uvicorn, with signal handling that only sets flags (the main coroutine acts)."""

    service: Service | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def on_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        with contextlib.suppress(OSError):  # a terminal already gone
            log.info("signal_received", signal=sig.name, graceful=not self.should_exit)
        if sig == signal.SIGHUP:
            _detach_terminal()
            if self.should_exit:
                # A hangup comes twice (from the kernel and from the shell that got it): it
                # never forces, the programs keep their grace period.
                return
        forced = self.should_exit
        if forced:
            self.force_exit = True
            log.warning("forced_shutdown")
        self.should_exit = True
        if self.service is not None:
            self.service.interrupt(forced)


async def run(
    service: Service,
    app: FastAPI,
    settings: ServiceSettings,
    *,
    listening_event: str,
    beside: Callable[[str], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Start ``service``, serve ``app`` until a signal, then close the service.

    Args:
        listening_event: The event logged once the API answers.
        beside: A task to run while serving, given the API's address (a node's registration
            with its manager); cancelled at the end.
    """
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
    server.service = service
    # Bind the API first: a port in use must stop us before anything has started.
    sockets = [config.bind_socket()]
    loop = asyncio.get_running_loop()
    # Started with nohup (SIGHUP ignored): a hangup stays ignored, as nohup promised.
    # (Only SIGHUP: a shell script's `cmd &` ignores SIGINT, and SIGINT must still stop it.)
    nohup = signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    signals = [s for s in _SIGNALS if not (nohup and s == signal.SIGHUP)]
    for sig in signals:
        loop.add_signal_handler(sig, server.on_signal, sig)
    task: asyncio.Task[None] | None = None
    try:
        await service.start()
        # What start-up built lives as long as the service: kept out of the collector's full
        # passes, which otherwise paused the loop ~85 ms at 500 instances (bench_cluster's p99).
        gc.freeze()
        address = f"http://{settings.api_host}:{sockets[0].getsockname()[1]}"
        log.info(
            listening_event,
            page=f"{address}/",
            docs=f"{address}/docs",
            token=bool(settings.token),
        )
        if beside is not None:
            task = asyncio.create_task(beside(address))
        try:
            await server.serve(sockets=sockets)
        finally:
            if task is not None:
                task.cancel()
            await service.close()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _detach_terminal() -> None:
    """Point standard output and error at /dev/null where they are a terminal (hung up: every
    write would fail with EIO); a file or a pipe (a journal) keeps the log. A character device
    is taken for a terminal: ``isatty`` itself fails with EIO on a hung-up one."""
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if stat.S_ISCHR(os.fstat(fd).st_mode):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)


def serve(
    main: Callable[[], Coroutine[Any, Any, None]], settings: ServiceSettings, *, name: str
) -> int:
    """Run ``main()`` (a ``run`` above) on uvloop until it returns; the process exit code."""
    configure_logging(settings.log_format)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except SupervisorError as exc:
        log.error(f"{name}_not_started", reason=exc.message)
        return 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed: the API answers in about half the time."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
