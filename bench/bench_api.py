"""API under load: latency of GET /api/v1/instances listing N instances, C concurrent clients.

One real ``pipevisor serve`` with N sleeping instances (shell ``exec sleep 3600``, no output).
The load comes from a separate, deliberately light process (bench/_loadgen.py): one asyncio
loop holding C keep-alive HTTP/1.1 connections, each writing a pre-built GET and reading the
answer by its Content-Length, back to back (closed loop) until the phase's total is done; each
latency is client-measured (perf_counter_ns), write of the request to the last body byte.
Baseline in the same run: GET /api/v1/health under the same load (same connections' set-up,
same supervisor), which costs the server almost nothing, so the ratio of p99s is what listing
the instances adds. Phases alternate health/list in rounds. The supervisor's CPU time per
request (psutil, over each phase) is printed too: that is the server's own cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _harness import (
    PYTHON,
    ROOT,
    SupervisorServer,
    add_sleeper_entry,
    check_clean,
    kill_tree,
    start_sleepers,
    summary,
)

LOADGEN = ROOT / "bench" / "_loadgen.py"


@dataclass
class Phase:
    """What the phases of one GET path add up to."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    body_bytes: set[int] = field(default_factory=set)
    head_bytes: int = 0
    server_cpu: float = 0.0  # s of supervisor CPU (user+system) over the phases
    client_cpu: float = 0.0  # s of load-generator CPU over the phases


class LoadGen:
    """The load-generator process: one phase per :meth:`run`, connections opened per phase."""

    def __init__(self, port: int, clients: int) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, str(LOADGEN), str(port), str(clients)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            start_new_session=True,
            text=True,
        )
        self.ps = psutil.Process(self.proc.pid)

    def run(self, path: str, total: int) -> dict:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{path} {total}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"load generator exited {self.proc.wait()} during GET {path}")
        return json.loads(line)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        kill_tree([self.proc])


def measure(sup: SupervisorServer, gen: LoadGen, path: str, total: int, into: Phase) -> None:
    """One phase of ``total`` GETs of ``path``, added to ``into``."""
    assert sup.proc is not None
    server = psutil.Process(sup.proc.pid)
    s0, c0 = server.cpu_times(), gen.cpu()
    out = gen.run(f"/api/v1{path}", total)
    s1, c1 = server.cpu_times(), gen.cpu()
    into.latencies_ms += [ns / 1e6 for ns in out["latencies_ns"]]
    into.seconds += out["elapsed_ns"] / 1e9
    into.errors += out["errors"]
    into.body_bytes.update(out["body_bytes"])
    into.head_bytes = out["head_bytes"]
    into.server_cpu += (s1.user - s0.user) + (s1.system - s0.system)
    into.client_cpu += c1 - c0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--list-requests", type=int, default=1000, help="GET /instances per round")
    parser.add_argument("--health-requests", type=int, default=2000, help="GET /health per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.list_requests, args.health_requests, args.rounds = 20, 200, 400, 1

    phases = {"health": Phase(), "instances": Phase()}
    listed: list[int] = []
    sup: SupervisorServer | None = None
    gen: LoadGen | None = None
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        add_sleeper_entry(work / "registry")
        try:
            sup = SupervisorServer(work / "registry", work / "state").start()
            start_sleepers(sup, args.instances)
            gen = LoadGen(sup.port, args.clients)
            measure(sup, gen, "/health", 20 * args.clients, Phase())  # warm-up
            measure(sup, gen, "/instances", 5 * args.clients, Phase())
            sizes = {"health": args.health_requests, "instances": args.list_requests}
            for _ in range(args.rounds):
                for what, n in sizes.items():
                    measure(sup, gen, f"/{what}", n, phases[what])
                # The load generator never parses a body: check what the list holds here.
                listed.append(len(sup.api("GET", "/instances").json()))
        finally:
            if gen is not None:
                gen.close()
            port = sup.port if sup else 0
            if sup is not None:
                sup.stop()
            clean = check_clean([port] if port else [])

    stats = {k: summary(p.latencies_ms) for k, p in phases.items()}
    wrong = sum(n != args.instances for n in listed)
    print(
        f"supervisor via {sup.launcher}; {args.instances} instances, {args.clients} concurrent "
        f"keep-alive connections from one asyncio process, {args.rounds} round(s); latency in ms"
    )
    print(
        f"{'GET':<13}{'n':>6}{'req/s':>7}{'median':>8}{'p95':>8}{'p99':>8}{'max':>8}"
        f"{'body B':>15}{'errors':>7}{'srv ms/req':>11}{'client cpu':>11}"
    )
    for what in ("health", "instances"):
        s, p = stats[what], phases[what]
        lo, hi = min(p.body_bytes), max(p.body_bytes)
        body = f"{lo}" if lo == hi else f"{lo}-{hi}"
        print(
            f"{'/' + what:<13}{s['n']:>6}{s['n'] / p.seconds:>7.0f}{s['median']:>8.2f}"
            f"{s['p95']:>8.2f}{s['p99']:>8.2f}{s['max']:>8.2f}{body:>15}{p.errors:>7}"
            f"{p.server_cpu / s['n'] * 1e3:>11.3f}{p.client_cpu / p.seconds:>10.0%}"
        )
    li, he = stats["instances"], stats["health"]
    pi, ph = phases["instances"], phases["health"]
    print(
        f"response size: /instances {max(pi.body_bytes)} B body + {pi.head_bytes} B head, "
        f"/health {max(ph.body_bytes)} B body + {ph.head_bytes} B head"
    )
    print(
        f"p99: /instances {li['p99']:.2f} ms, /health {he['p99']:.2f} ms, "
        f"ratio {li['p99'] / he['p99']:.2f}"
    )
    if wrong:
        print(f"WARNING: {wrong} check(s) of GET /instances did not list {args.instances}")
    print(f"cleanup: {clean}")
    print(
        f"RESULT list_p99_ms={li['p99']:.2f} list_median_ms={li['median']:.2f} "
        f"health_p99_ms={he['p99']:.2f} health_median_ms={he['median']:.2f} "
        f"ratio_p99={li['p99'] / he['p99']:.2f} list_rps={li['n'] / pi.seconds:.1f} "
        f"list_server_ms={pi.server_cpu / li['n'] * 1e3:.3f} "
        f"list_bytes={max(pi.body_bytes)} errors={ph.errors + pi.errors + wrong} "
        f"instances={args.instances} clients={args.clients} target_p99_ms=20"
    )


if __name__ == "__main__":
    main()
