"""Manager latency: listing 500 instances across 20 nodes, and a call forwarded to one node.

A real ``pipevisor manager`` over 20 fake nodes (bench/_fakenodes.py, one asyncio process;
the rules and registry of sim_cluster.py), with 200 cameras and 300 pipelines created through
it. Latency is client-measured by bench/_loadgen.py (a separate light process: keep-alive
HTTP/1.1, pre-built request, body read by Content-Length and never parsed), ``--clients``
connections back to back. Per round, in turn:

- ``GET /api/v1/instances`` on the manager (500 instances merged from 20 nodes' last checks);
- the baselines, in the same run: the same GET on one fake node holding 500 instances (what
  one node's list costs with a server that does nothing), and on a real ``pipevisor serve``
  holding ``--real-instances`` stopped instances of a trivial entry (what a real node costs);
- ``GET /api/v1/instances/NAME`` through the manager (forwarded to the node that holds it)
  and on that node directly;
- ``GET /api/v1/health`` on the manager: the floor of this set-up.

Each phase also gets the server's CPU time per request (psutil over the phase, minus the
manager's background rate measured before: the health checks of 20 nodes). Target: p99 of
the manager's list under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _fakenodes import FakeNodes
from _harness import (
    SupervisorServer,
    add_sleeper_entry,
    check_clean,
    summary,
    wait_for,
)
from _manager import HOT_NODE, ManagerServer, cameras, cluster_rules, pipelines, write_registry
from bench_api import LoadGen


@dataclass
class Phase:
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    body_bytes: set[int] = field(default_factory=set)
    server_cpu: float = 0.0


def measure(gen: LoadGen, proc: psutil.Process, path: str, total: int, into: Phase) -> None:
    c0 = proc.cpu_times()
    out = gen.run(path, total)
    c1 = proc.cpu_times()
    into.latencies_ms += [ns / 1e6 for ns in out["latencies_ns"]]
    into.seconds += out["elapsed_ns"] / 1e9
    into.errors += out["errors"]
    into.body_bytes.update(out["body_bytes"])
    into.server_cpu += (c1.user - c0.user) + (c1.system - c0.system)


def background_rate(proc: psutil.Process, seconds: float) -> float:
    """CPU seconds per second ``proc`` spends with nobody calling it."""
    c0, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = proc.cpu_times(), time.monotonic()
    return ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--pipelines", type=int, default=300)
    parser.add_argument("--real-instances", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1, help="concurrent connections")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.cameras, args.pipelines, args.real_instances, args.requests, args.rounds = (
            50,
            75,
            50,
            50,
            1,
        )
    total = args.cameras + args.pipelines

    phases: dict[str, Phase] = {}
    gens: list[LoadGen] = []
    fake: FakeNodes | None = None
    mgr: ManagerServer | None = None
    real: SupervisorServer | None = None
    ports: list[int] = []
    background = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        cams = cameras(args.cameras)
        try:
            fake = FakeNodes(args.nodes + 1)  # the last one: the one-node baseline
            ports = list(fake.ports.values())
            names = sorted(fake.ports)
            members, alone = names[: args.nodes], names[args.nodes]
            fake.set_cpu(HOT_NODE, 93.0)
            fake.fill(alone, total, "i", permanent=True)
            rules = cluster_rules({n: fake.url(n) for n in members}, cams)
            (work / "rules.json").write_text(json.dumps(rules))
            write_registry(work / "registry", cams)
            mgr = ManagerServer(
                work / "registry", work / "state", config=work / "rules.json"
            ).start()
            ports.append(mgr.port)
            wait_for(
                lambda: all(v["status"] == "up" for v in mgr.nodes().values()),
                timeout=60,
                interval=0.1,
                what="every node up",
            )
            for cam in cams:
                mgr.api("POST", "/instances", json={"name": cam, "entry": cam, "permanent": True})
            for body in pipelines(cams, args.pipelines):
                mgr.api("POST", "/instances", json=body)
            listed = mgr.api("GET", "/instances").json()
            assert len(listed) == total, f"the manager lists {len(listed)}, not {total}"
            target = next(i for i in listed if i["name"].endswith("-beam"))
            holder = target["node"]

            add_sleeper_entry(work / "real-registry")
            real = SupervisorServer(work / "real-registry", work / "real-state").start()
            ports.append(real.port)
            for i in range(args.real_instances):
                real.api(
                    "POST",
                    "/instances",
                    json={"name": f"sleeper{i:04d}", "entry": "sleeper", "start": False},
                )

            time.sleep(2.0)  # the last creations' checks done: the manager at steady state
            mproc, fproc = mgr.ps, psutil.Process(fake.pid)
            assert real.proc is not None
            rproc = psutil.Process(real.proc.pid)
            background = background_rate(mproc, 5.0)
            g_mgr = LoadGen(mgr.port, args.clients)
            g_alone = LoadGen(fake.ports[alone], args.clients)
            g_holder = LoadGen(fake.ports[holder], args.clients)
            g_real = LoadGen(real.port, args.clients)
            gens = [g_mgr, g_alone, g_holder, g_real]
            plan = [
                ("manager list", g_mgr, mproc, "/api/v1/instances"),
                (f"1 fake node list ({total})", g_alone, fproc, "/api/v1/instances"),
                (f"real node list ({args.real_instances})", g_real, rproc, "/api/v1/instances"),
                ("manager get one", g_mgr, mproc, f"/api/v1/instances/{target['name']}"),
                ("fake node get one", g_holder, fproc, f"/api/v1/instances/{target['name']}"),
                ("manager health", g_mgr, mproc, "/api/v1/health"),
            ]
            for label, gen, proc, path in plan:  # warm-up
                measure(gen, proc, path, 10 * args.clients, Phase())
                phases[label] = Phase()
            for _ in range(args.rounds):
                for label, gen, proc, path in plan:
                    measure(gen, proc, path, args.requests, phases[label])
            listed = mgr.api("GET", "/instances").json()
            wrong = len(listed) != total
        finally:
            for gen in gens:
                gen.close()
            for server in (mgr, real):
                if server is not None:
                    server.stop()
            if fake is not None:
                fake.close()
            clean = check_clean(ports)

    stats = {label: summary(p.latencies_ms) for label, p in phases.items()}
    print(
        f"manager over {args.nodes} fake nodes holding {total} instances ({args.cameras} cameras, "
        f"{args.pipelines} pipelines); {args.clients} keep-alive connection(s), {args.rounds} "
        f"round(s) of {args.requests} per phase; latency in ms; manager background "
        f"(health checks) {background * 100:.1f} % of a core, subtracted from its srv ms/req"
    )
    print(
        f"{'GET':<30}{'n':>6}{'median':>8}{'p95':>8}{'p99':>8}{'max':>8}{'body kB':>9}"
        f"{'errors':>7}{'srv ms/req':>11}"
    )
    for label, p in phases.items():
        s = stats[label]
        cpu = p.server_cpu - (background * p.seconds if label.startswith("manager") else 0.0)
        print(
            f"{label:<30}{s['n']:>6}{s['median']:>8.2f}{s['p95']:>8.2f}{s['p99']:>8.2f}"
            f"{s['max']:>8.2f}{max(p.body_bytes) / 1e3:>9.0f}{p.errors:>7}"
            f"{cpu / s['n'] * 1e3:>11.3f}"
        )
    lm, lf = stats["manager list"], stats[f"1 fake node list ({total})"]
    lr = stats[f"real node list ({args.real_instances})"]
    gm, gf = stats["manager get one"], stats["fake node get one"]
    print(
        f"list p99: manager {lm['p99']:.2f} ms, one fake node {lf['p99']:.2f} ms "
        f"(ratio {lm['p99'] / lf['p99']:.1f}), a real node with {args.real_instances} "
        f"{lr['p99']:.2f} ms (ratio {lm['p99'] / lr['p99']:.2f}); forwarded get p99 "
        f"{gm['p99']:.2f} ms vs direct {gf['p99']:.2f} ms (ratio {gm['p99'] / gf['p99']:.1f})"
    )
    if wrong:
        print(f"WARNING: the manager's list did not hold {total} instances at the end")
    print(f"cleanup: {clean}")
    errors = sum(p.errors for p in phases.values()) + int(wrong)
    print(
        f"RESULT list_p50_ms={lm['median']:.2f} list_p99_ms={lm['p99']:.2f} "
        f"fake_list_p99_ms={lf['p99']:.2f} ratio_p99={lm['p99'] / lf['p99']:.2f} "
        f"real_list_p99_ms={lr['p99']:.2f} ratio_real_p99={lm['p99'] / lr['p99']:.2f} "
        f"get_p99_ms={gm['p99']:.2f} direct_get_p99_ms={gf['p99']:.2f} "
        f"get_ratio_p99={gm['p99'] / gf['p99']:.2f} instances={total} nodes={args.nodes} "
        f"clients={args.clients} errors={errors} target_p99_ms=100 "
        f"met={'yes' if lm['p99'] < 100 else 'no'}"
    )


if __name__ == "__main__":
    main()
