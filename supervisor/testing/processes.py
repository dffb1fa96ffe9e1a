"""Real processes on loopback: free ports, process trees, and ``pipevisor serve`` as a process.

``SupervisorProcess`` starts a real node (``python -m supervisor.cli serve``) on a free port of
127.0.0.1 with its own registry and state folders, waits for ``GET /api/v1/health`` with a
deadline, and stops it (SIGTERM; SIGKILL of its whole tree if it hangs). A subclass with
``command = "manager"`` starts a cluster manager, which takes the same options.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psutil

from .waiting import wait_for

__all__ = ["SupervisorProcess", "free_port", "kill_tree", "pid_alive", "port_free"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid(item: subprocess.Popen[Any] | int) -> int:
    return item if isinstance(item, int) else item.pid


def kill_tree(procs: Iterable[psutil.Process | subprocess.Popen[Any] | int]) -> int:
    """SIGKILL each process, its process group (unless it is ours) and every descendant; wait
    for them; returns how many were alive."""
    items = list(procs)
    targets: dict[int, psutil.Process] = {}
    for item in items:
        try:
            # a psutil.Process is itself: it knows its start time, a reused pid is not it
            proc = item if isinstance(item, psutil.Process) else psutil.Process(_pid(item))
            if not proc.is_running():
                continue
            targets[proc.pid] = proc
            for child in proc.children(recursive=True):
                targets[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    alive = len(targets)  # each was running when it was found
    for pid, proc in targets.items():
        try:
            pgid = os.getpgid(pid)
            if pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
            proc.kill()
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass  # gone already (its group's SIGKILL, or on its own)
    psutil.wait_procs(list(targets.values()), timeout=5)
    for item in items:
        if isinstance(item, subprocess.Popen):
            item.poll()
    return alive


@dataclass
class SupervisorProcess:
    """A real ``pipevisor serve`` on 127.0.0.1, with an ``httpx`` client of its API.

    Its output (JSON log lines) goes to ``state_dir.parent / "supervisor-PORT.log"``
    (``logs()``); ``token`` is passed as ``PIPEVISOR_TOKEN`` and sent by the client.
    """

    command: ClassVar[str] = "serve"
    """The sub-command (a cluster manager is ``manager``, with the same options)."""
    log_name: ClassVar[str] = "supervisor"

    registry: Path
    state_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    token: str | None = None
    cwd: Path | None = None
    """Working directory of the process (None: ours)."""
    new_session: bool = False
    """Start it in a session of its own (a terminal's Ctrl-C does not reach it)."""
    client_timeout: float = 15.0
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        """The server's root URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The API's base URL, ``http://127.0.0.1:PORT/api/v1`` (the client's base)."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def launcher(self) -> str:
        """How it is started, for reports."""
        return f"python -m supervisor.cli {self.command}"

    def args(self) -> list[str]:
        """Its command line."""
        return [
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

    def start(self, timeout: float = 20.0) -> SupervisorProcess:
        """Start it and wait until it is healthy; ``AssertionError`` with its log if it exits
        or is not healthy within ``timeout`` seconds (it is killed then)."""
        self.registry.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir.parent / f"{self.log_name}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.token:
            env["PIPEVISOR_TOKEN"] = self.token
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.args(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=self.new_session,
            )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(
            base_url=self.api_url, headers=headers, timeout=self.client_timeout
        )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.log_name} exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
                )
            if time.monotonic() > deadline:
                kill_tree([self.proc])
                raise AssertionError(
                    f"{self.log_name} not healthy (GET /api/v1/health) within {timeout} s:\n"
                    f"{self.logs()[-3000:]}"
                )
            time.sleep(0.02)
        return self

    def _healthy(self) -> bool:
        assert self.client is not None
        try:
            return self.client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        """Everything it has written so far."""
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def descendants(self) -> list[psutil.Process]:
        """Its processes now (its guard, its instances, their children)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True) if self.proc else []
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, and wait for its exit code (it stops its instances first).

        If it is still there after ``timeout`` seconds, SIGKILL it and every process of its
        tree, and raise ``AssertionError``. Processes that outlive a clean exit are left for
        the caller to judge (a test of orphans looks at them).
        """
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        children = self.descendants()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree([self.proc, *children])
            self.proc.wait()
            raise AssertionError(f"{self.log_name} did not stop within {timeout} s") from None

    # -- API shortcuts ---------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` (relative to ``/api/v1``), whatever the answer."""
        assert self.client is not None, f"{self.log_name} is not started"
        return self.client.request(method, path, **kwargs)

    def instance(self, name: str) -> dict[str, Any]:
        """``GET /instances/NAME``; raises on an error status."""
        response = self.api("GET", f"/instances/{name}")
        response.raise_for_status()
        info: dict[str, Any] = response.json()
        return info

    def wait_state(self, name: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until instance ``name`` is in one of ``states``; returns it."""

        def probe() -> dict[str, Any] | None:
            info = self.instance(name)
            return info if info["state"] in states else None

        return wait_for(probe, timeout=timeout, what=f"{name} in {states}")
