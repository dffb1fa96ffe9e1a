"""A real uvicorn server around the API of a fake node, for tests of API clients (the CLI).

``TOKEN`` and ``UPLOAD_LIMIT`` are what the unit tests' fake nodes and secured apps use.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from supervisor.api import create_app
from supervisor.testing import FakeNode, wait_for

__all__ = ["TOKEN", "UPLOAD_LIMIT", "LiveServer", "Run", "serve", "stop"]

TOKEN = "s3cret-token"
"""The bearer token of the secured servers and apps."""
UPLOAD_LIMIT = 4096
"""The fake nodes' upload limit (registry files, backgrounds): small, to test the 413s."""

Run = Callable[..., tuple[int, str, str]]  # pipevisor ARGS -> (exit code, stdout, stderr)


@dataclass
class LiveServer:
    """The app around ``fake``, served by uvicorn in a thread on a free loopback port."""

    fake: FakeNode
    server: uvicorn.Server
    thread: threading.Thread
    url: str


def serve(fake: FakeNode, token: str | None) -> LiveServer:
    app = create_app(fake, token=token)
    app.state.sse_keepalive = 0.05
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=10, what="uvicorn start")
    assert thread.is_alive(), "uvicorn stopped during startup"
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=2) as response:
            return response.status == 200

    wait_for(healthy, timeout=10, what=f"health of {url}")
    return LiveServer(fake, server, thread, url)


def stop(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)
    assert not live.thread.is_alive(), "uvicorn did not stop"
