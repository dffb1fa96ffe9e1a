"""Helpers shared by the tests: waiting with a deadline, free ports, a supervisor process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import psutil

T = TypeVar("T")

__all__ = ["SupervisorProcess", "free_port", "pid_alive", "run", "wait_for", "wait_until"]


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it is truthy; at the deadline, fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # a probe may fail while the thing is not up yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; last seen: {last!r}"
            )
        time.sleep(interval)


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(
    predicate: Callable[[], bool],
    what: Callable[[], object] = lambda: None,
    timeout: float = 10.0,
) -> None:
    """The async ``wait_for``: poll ``predicate`` on the loop; at the deadline show ``what()``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last seen: {what()}")
        await asyncio.sleep(0.002)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SupervisorProcess:
    """A real ``pipevisor serve`` on loopback, with a client for its API."""

    command: ClassVar[str] = "serve"
    """The sub-command (a cluster manager is ``manager``, with the same options)."""
    log_name: ClassVar[str] = "supervisor"

    registry: Path
    state_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    token: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> SupervisorProcess:
        self.log_path = self.state_dir.parent / f"{self.log_name}-{self.port}.log"
        args = [
            sys.executable,
            "-m",
            "supervisor.cli",
            self.command,
            "--registry",
            str(self.registry),
            "--state-dir",
            str(self.state_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-format",
            "json",
            *self.extra_args,
        ]
        env = dict(os.environ)
        if self.token:
            env["PIPEVISOR_TOKEN"] = self.token
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=15.0)

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.log_name} exited {self.proc.returncode}: {self.logs()[-3000:]}"
                )
            return self.client.get("/health").status_code == 200  # type: ignore[union-attr]

        wait_for(healthy, timeout=timeout, what=f"{self.log_name} health")
        return self

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True) if self.proc else []
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL the supervisor and anything left if it hangs."""
        if self.client is not None:
            self.client.close()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        children = self.descendants()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            raise AssertionError(f"{self.log_name} did not stop within {timeout} s") from None

    # -- API shortcuts ---------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        return self.client.request(method, path, **kwargs)

    def instance(self, name: str) -> dict[str, Any]:
        response = self.api("GET", f"/instances/{name}")
        response.raise_for_status()
        return response.json()

    def wait_state(self, name: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            info = self.instance(name)
            return info if info["state"] in states else None

        return wait_for(probe, timeout=timeout, what=f"{name} in {states}")
