"""What the benchmarks share: a real supervisor on loopback, statistics, and cleanup.

Every process a benchmark starts goes through here or is killed with its process group in the
benchmark's own ``finally``; :func:`check_clean` says whether anything was left behind.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from supervisor.testing import SupervisorProcess, free_port, kill_tree, port_free, wait_for

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
class SupervisorServer(SupervisorProcess):
    """``supervisor.testing.SupervisorProcess`` as the benchmarks use it: in a session of its
    own, run from the repository, ``url`` is the API's base, an error answer raises, and a
    failure to start or stop ends the benchmark with the supervisor's log."""

    cwd: Path | None = ROOT
    new_session: bool = True
    client_timeout: float = 30.0

    @property
    def url(self) -> str:
        """The API's base URL (the benchmarks' requests are relative to it)."""
        return self.api_url

    def start(self, timeout: float = 30.0) -> SupervisorServer:
        try:
            super().start(timeout)
        except AssertionError as exc:
            raise SystemExit(str(exc)) from None
        return self

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = super().api(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the supervisor stops its instances); SIGKILL the whole tree if it hangs,
        and whatever of its tree outlived it in any case."""
        tree = self.descendants()
        try:
            code = super().stop(timeout)
        except AssertionError as exc:
            print(f"warning: {exc}; killed it", file=sys.stderr)
            code = None
        kill_tree(tree)
        return code


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
