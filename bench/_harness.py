"""What the benchmarks share: a real supervisor on loopback, statistics, and cleanup.

Every process a benchmark starts goes through here or is killed with its process group in the
benchmark's own ``finally``; :func:`check_clean` says whether anything was left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import psutil

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

__all__ = [
    "PYTHON",
    "ROOT",
    "SupervisorServer",
    "add_sleeper_entry",
    "check_clean",
    "free_port",
    "kill_tree",
    "percentile",
    "port_free",
    "start_sleepers",
    "summary",
    "wait_for",
]


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Call ``probe`` until truthy; at the deadline, raise with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # not up yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"timed out after {timeout} s waiting for {what}; last seen: {last!r}"
            )
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p95, p99, min, max."""
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


def kill_tree(procs: Iterable[psutil.Process | subprocess.Popen[Any] | int]) -> int:
    """SIGKILL each process, its process group and every descendant; returns how many were alive."""
    items = list(procs)
    targets: dict[int, psutil.Process] = {}
    for item in items:
        pid = item if isinstance(item, int) else item.pid
        try:
            proc = psutil.Process(pid)
            targets[pid] = proc
            for child in proc.children(recursive=True):
                targets[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    alive = 0
    for pid, proc in targets.items():
        try:
            pgid = os.getpgid(pid)
            if pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
            proc.kill()
            alive += 1
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    psutil.wait_procs(list(targets.values()), timeout=5)
    for item in items:
        if isinstance(item, subprocess.Popen):
            item.poll()
    return alive


def check_clean(ports: Iterable[int] = ()) -> str:
    """'ok', or what this benchmark left behind (children of this process, ports in use)."""
    problems = []
    children = psutil.Process().children(recursive=True)
    if children:
        problems.append("children left: " + ", ".join(f"{c.pid}:{c.name()}" for c in children))
        kill_tree(children)
    busy = [p for p in ports if not port_free(p)]
    if busy:
        problems.append(f"ports still listening: {busy}")
    return "; ".join(problems) or "ok"


@dataclass
class SupervisorServer:
    """A real ``pipevisor serve`` on loopback in its own session, with an API client."""

    command: ClassVar[str] = "serve"
    """The sub-command (``manager`` for a cluster manager, which takes the same options)."""
    log_name: ClassVar[str] = "supervisor"

    registry: Path
    state_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None
    log_path: Path | None = None
    launcher: str = ""
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self, timeout: float = 30.0) -> SupervisorServer:
        self.registry.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir.parent / f"{self.log_name}-{self.port}.log"
        head = [PYTHON, "-m", "supervisor.cli"]
        self.launcher = f"python -m supervisor.cli {self.command}"
        args = [
            *head,
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
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

        def healthy() -> bool:
            assert self.proc is not None
            assert self.client is not None
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"{self.log_name} exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
                )
            return self.client.get("/health").status_code == 200

        try:
            wait_for(healthy, timeout=timeout, what="GET /api/v1/health")
        except RuntimeError as exc:
            raise SystemExit(f"{exc}\n{self.log_name} log:\n{self.logs()[-3000:]}") from None
        return self

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the supervisor stops its instances); SIGKILL the whole tree if it hangs."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(
                    f"warning: {self.log_name} did not stop within {timeout} s; killing it",
                    file=sys.stderr,
                )
        leftovers = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        kill_tree([self.proc, *leftovers])
        self.proc.wait()


SLEEPER = "#!/bin/sh\nexec sleep 3600\n"


def add_sleeper_entry(registry: Path) -> str:
    """Write the ``sleeper`` entry (a shell script that sleeps, no output); returns its name."""
    registry.mkdir(parents=True, exist_ok=True)
    script = registry / "sleeper.sh"
    script.write_text(SLEEPER)
    script.chmod(0o755)
    (registry / "sleeper.json").write_text(
        '{"description": "sleeps an hour", "program": "sleeper.sh", "output": {"enabled": false}}'
    )
    return "sleeper"


def start_sleepers(
    sup: SupervisorServer, count: int, timeout: float = 120.0
) -> tuple[float, float]:
    """Create ``count`` started instances of ``sleeper``; wait until all are running.

    Returns (seconds to create them, seconds until the API shows them all running).
    """
    t0 = time.monotonic()
    for i in range(count):
        sup.api(
            "POST",
            "/instances",
            json={"name": f"sleeper{i:04d}", "entry": "sleeper", "start": True},
        )
    created = time.monotonic() - t0

    def all_running() -> bool:
        states = [i["state"] for i in sup.api("GET", "/instances").json()]
        return sum(s == "running" for s in states) >= count

    wait_for(all_running, timeout=timeout, interval=0.25, what=f"{count} sleepers running")
    return created, time.monotonic() - t0
