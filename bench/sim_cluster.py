"""Scale simulation: a real ``pipevisor manager`` over 20 fake nodes, 200 cameras, 300 pipelines.

The nodes are fake (bench/_fakenodes.py: one asyncio process answering the node API on 20
loopback ports, machine figures that grow with what each runs); the manager is the real one,
started with a rules file: three beamlines with two dedicated nodes each, 14 generic nodes
(one of them busy: CPU above ``colocate_max_cpu``), three pins, two nodes preferring a few
cameras. Through the manager's REST API the script creates 200 cameras (permanent) and 300
pipelines reading them (the 200 ``beam`` ones permanent, 100 ``profile`` ones not), then
reports:

- how placement spread them: per node counts, colocation of pipelines with their camera,
  groups, pins and camera preferences honoured, the rules that decided;
- the manager at steady state: CPU % of a core and RSS (psutil on its pid), the health
  checks' requests/s and bytes/s (counted by the fake nodes), its list latency;
- failover: a generic node carrying ~25 permanent instances stops answering (its port
  closes, as after a SIGKILL): time until it is marked down and until every permanent
  instance it ran is created on another node (the fake nodes' own clock); then it answers
  again with its old instances (a healed partition): time until the duplicates are gone;
- the same for a beamline node that freezes (accepts, never answers) and holds a pinned
  instance: the pin waits, the node returns empty (restarted), the pin goes back;
- then the beamline's other node: its instances can only go to the first, where the pinned
  pipeline reads one of its cameras by URL and must follow it;
- after each: nothing runs twice, and which pipelines read a dead URL.

    .venv/bin/python bench/sim_cluster.py            # ~1.5 min
    .venv/bin/python bench/sim_cluster.py --quick    # 5 nodes, 40 + 60 instances
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil
from _fakenodes import FakeNodes
from _harness import check_clean, summary, wait_for
from _manager import (
    BEAMLINES,
    HOT_NODE,
    PINS,
    PREFERRED,
    ManagerServer,
    cameras,
    cluster_rules,
    pipelines,
    write_registry,
)

POLL = 0.05


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def create_all(mgr: ManagerServer, requests: list[dict[str, Any]]) -> list[float]:
    """POST each request to the manager; the latencies (s)."""
    latencies = []
    for body in requests:
        t = time.perf_counter()
        mgr.api("POST", "/instances", json=body)
        latencies.append(time.perf_counter() - t)
    return latencies


def where_runs(fake: FakeNodes) -> dict[str, list[str]]:
    """Instance -> the nodes that hold it (the fake nodes' ground truth)."""
    found: dict[str, list[str]] = defaultdict(list)
    for node, names in fake.instances().items():
        for name in names:
            found[name].append(node)
    return found


def report_placement(
    mgr: ManagerServer,
    fake: FakeNodes,
    cams: list[str],
    pipes: list[dict[str, Any]],
    rules: dict[str, Any],
) -> dict[str, float]:
    held = where_runs(fake)
    placements = {p["instance"]: p for p in mgr.api("GET", "/cluster/placements").json()}
    views = mgr.nodes()
    listed = {i["name"]: i for i in mgr.api("GET", "/instances").json()}
    node_of = {name: nodes[0] for name, nodes in held.items()}
    twice = sorted(n for n, nodes in held.items() if len(nodes) > 1)
    dedicated = {n: bl for bl, nodes in BEAMLINES.items() for n in nodes}

    per_node: dict[str, Counter[str]] = defaultdict(Counter)
    for cam in cams:
        per_node[node_of[cam]]["cameras"] += 1
    for p in pipes:
        per_node[node_of[p["name"]]]["pipelines"] += 1
    for p in placements.values():
        if p["permanent"] and p["node"]:
            per_node[p["node"]]["permanent"] += 1
    print("\nplacement: instances per node (from the fake nodes), the node's CPU and score")
    print(f"{'node':<8}{'role':<10}{'cameras':>8}{'pipes':>7}{'perm':>6}{'cpu %':>7}{'score':>7}")
    for node in sorted(views):
        c, v = per_node[node], views[node]
        role = dedicated.get(node, "hot" if node == HOT_NODE else "generic")
        cpu = (v.get("resources") or {}).get("cpu_percent", 0.0)
        score = v.get("score")
        print(
            f"{node:<8}{role:<10}{c['cameras']:>8}{c['pipelines']:>7}{c['permanent']:>6}"
            f"{cpu:>7.1f}{score if score is not None else float('nan'):>7.3f}"
        )
    counts = [c["cameras"] + c["pipelines"] for n, c in per_node.items() if n not in dedicated]
    generic = [n for n in views if n not in dedicated]
    counts += [0] * (len(generic) - len(counts))
    print(
        f"generic nodes: instances min {min(counts)} / max {max(counts)} "
        f"(hot {HOT_NODE}: {per_node[HOT_NODE]['cameras'] + per_node[HOT_NODE]['pipelines']})"
    )

    colocated = [p for p in pipes if node_of[p["name"]] == node_of[p["input"]["camera"]]]
    apart = [p for p in pipes if node_of[p["name"]] != node_of[p["input"]["camera"]]]
    print(
        f"pipelines next to their camera: {len(colocated)}/{len(pipes)} "
        f"({len(colocated) / len(pipes):.1%})"
    )
    for p in apart[:6]:
        why = placements[p["name"]]["why"]
        print(
            f"  apart: {p['name']} on {node_of[p['name']]}, its camera on "
            f"{node_of[p['input']['camera']]}: {why[:150]}"
        )

    group_cams = {c: g["cameras"] for c, g in rules["groups"].items()}
    wrong_group = []
    for name in list(cams) + [p["name"] for p in pipes]:
        source = next((p["input"]["camera"] for p in pipes if p["name"] == name), None)
        group = next(
            (bl for bl in BEAMLINES if name.startswith(f"{bl}-") or source in group_cams[bl]),
            None,
        )
        node = node_of[name]
        if name in PINS:
            continue
        if group is not None and node not in BEAMLINES[group]:
            wrong_group.append(f"{name} ({group}) on {node}")
        if group is None and node in dedicated:
            wrong_group.append(f"{name} (no group) on {node}")
    print(f"group rules broken: {len(wrong_group)} {wrong_group[:5]}")
    for inst, (node, port) in PINS.items():
        if inst not in node_of:
            continue
        stream = listed.get(inst, {}).get("stream", "")
        ok = node_of.get(inst) == node and (port is None or stream.endswith(f":{port}"))
        print(
            f"pin {inst} -> {node}{':' + str(port) if port else ''}: "
            f"{'honoured' if ok else 'BROKEN'} (runs on {node_of.get(inst)}, {stream})"
        )
    for node, cams_pref in PREFERRED.items():
        for cam in cams_pref:
            if cam not in node_of:
                continue
            print(
                f"camera preference {cam} -> {node}: runs on {node_of.get(cam)} "
                f"(rule {placements[cam]['rule']})"
            )
    rules_used = Counter(p["rule"] for p in placements.values())
    print(f"placement rules that decided: {dict(sorted(rules_used.items()))}")
    for rule in sorted(rules_used):
        p = next(p for name, p in sorted(placements.items()) if p["rule"] == rule)
        print(f"  why, e.g. {p['instance']} on {p['node']}: {p['why'][:160]}")
    print(f"instances held twice: {len(twice)}; listed by the manager: {len(listed)}")
    return {
        "colocated": len(colocated) / len(pipes),
        "group_broken": len(wrong_group),
        "twice": len(twice),
        "listed": len(listed),
    }


def steady_state(mgr: ManagerServer, fake: FakeNodes, window: float) -> dict[str, float]:
    """Manager and fake-node CPU, manager RSS, health-check traffic over ``window`` s."""
    server, fakeproc = mgr.ps, psutil.Process(fake.pid)

    def totals() -> tuple[Counter[str], int]:
        routes: Counter[str] = Counter()
        sent = 0
        for node in fake.nodes():
            routes.update(node["requests"])
            sent += node["bytes_out"]
        return routes, sent

    r0, b0 = totals()
    m0, f0, t0 = server.cpu_times(), fakeproc.cpu_times(), time.monotonic()
    time.sleep(window)
    m1, f1, t1 = server.cpu_times(), fakeproc.cpu_times(), time.monotonic()
    r1, b1 = totals()
    span = t1 - t0
    rates = {k: (r1[k] - r0[k]) / span for k in r1 if r1[k] != r0[k]}
    out = {
        "manager_cpu": ((m1.user - m0.user) + (m1.system - m0.system)) / span * 100,
        "manager_rss_mb": server.memory_info().rss / 2**20,
        "manager_threads": server.num_threads(),
        "fake_cpu": ((f1.user - f0.user) + (f1.system - f0.system)) / span * 100,
        "checks_rps": sum(rates.values()),
        "checks_mbps": (b1 - b0) / span / 1e6,
    }
    print(f"\nsteady state over {span:.0f} s, nobody calling the manager:")
    print(
        f"  manager: {out['manager_cpu']:.1f} % of a core, RSS {out['manager_rss_mb']:.0f} MB, "
        f"{out['manager_threads']} threads"
    )
    print(
        f"  health checks: {out['checks_rps']:.1f} requests/s, "
        f"{out['checks_mbps']:.2f} MB/s of answers; by route: "
        + ", ".join(f"{k} {v:.1f}/s" for k, v in sorted(rates.items()))
    )
    print(f"  fake nodes (all 20, one process): {out['fake_cpu']:.1f} % of a core")
    return out


def list_latency(mgr: ManagerServer, count: int) -> dict[str, float]:
    with httpx.Client(base_url=mgr.url, timeout=10.0) as client:
        client.get("/instances")
        latencies, sizes = [], set()
        for _ in range(count):
            t = time.perf_counter()
            answer = client.get("/instances")
            latencies.append(time.perf_counter() - t)
            sizes.add(len(answer.content))
    s = summary([x * 1e3 for x in latencies])
    print(
        f"\nGET /api/v1/instances on the manager, {count} sequential: median {s['median']:.1f} "
        f"ms, p99 {s['p99']:.1f} ms, max {s['max']:.1f} ms, body {max(sizes) / 1e3:.0f} kB"
    )
    return s


def stale_inputs(mgr: ManagerServer, pipes: list[dict[str, Any]]) -> list[str]:
    """Pipelines whose DATA URL is not the current stream of the camera they read."""
    listed = {i["name"]: i for i in mgr.api("GET", "/instances").json()}
    stale = []
    for p in pipes:
        mine, cam = listed.get(p["name"]), listed.get(p["input"]["camera"])
        if mine is None or cam is None:
            continue
        if mine.get("data_url") != cam.get("stream"):
            stale.append(
                f"{p['name']} on {mine.get('node')} reads {mine.get('data_url')}, its camera "
                f"{cam['name']} streams {cam.get('stream')} on {cam.get('node')}"
            )
    return stale


def failover(
    mgr: ManagerServer,
    fake: FakeNodes,
    pipes: list[dict[str, Any]],
    victim: str,
    mode: str,
    fresh: bool,
    timeout: float,
) -> dict[str, float]:
    """Kill ``victim``; time its down mark and its permanent instances' moves; revive it."""
    placements = {p["instance"]: p for p in mgr.api("GET", "/cluster/placements").json()}
    held = where_runs(fake)
    on_victim = [n for n, nodes in held.items() if victim in nodes]
    permanent = {n for n in on_victim if placements.get(n, {}).get("permanent")}
    pinned_here = {i for i, (node, _) in PINS.items() if node == victim and i in permanent}
    movable = permanent - pinned_here
    lost = set(on_victim) - permanent
    seq = len(fake.events())
    fake.kill(victim, mode)
    killed_at = next(e["t"] for e in fake.events(seq) if e["kind"] == "killed")
    print(
        f"\nfailover: {victim} killed ({mode}) holding {len(on_victim)} instances, "
        f"{len(permanent)} permanent ({len(pinned_here)} pinned to it), {len(lost)} not"
    )

    down_at = None
    moved: dict[str, tuple[str, float]] = {}
    followed: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if down_at is None and mgr.nodes()[victim]["status"] == "down":
            down_at = time.time()
        for e in fake.events(seq):
            if e["kind"] == "created" and e["node"] != victim:
                if e["instance"] in movable:
                    moved.setdefault(e["instance"], (e["node"], e["t"]))
                else:
                    followed.setdefault(e["instance"], e["t"])
        if down_at is not None and len(moved) == len(movable):
            break
        time.sleep(POLL)
    first = min((t for _, t in moved.values()), default=float("nan"))
    last = max((t for _, t in moved.values()), default=float("nan"))

    def list_agrees() -> bool:
        listed = {i["name"]: i.get("node") for i in mgr.api("GET", "/instances").json()}
        return all(listed.get(n) not in (None, victim) for n in movable)

    wait_for(list_agrees, timeout=10, interval=POLL, what="the manager's list to show the moves")
    listed_at = time.time()
    time.sleep(0.5)  # dependents follow their moved sources after the moves
    for e in fake.events(seq):
        if e["kind"] == "created" and e["node"] != victim and e["instance"] not in movable:
            followed.setdefault(e["instance"], e["t"])
    listed = {i["name"]: i for i in mgr.api("GET", "/instances").json()}
    waiting = [p for p in mgr.api("GET", "/cluster/placements").json() if p["node"] is None]
    targets = Counter(node for node, _ in moved.values())
    out = {
        "down_s": (down_at or float("nan")) - killed_at,
        "first_s": first - killed_at,
        "all_s": last - killed_at,
        "listed_s": listed_at - killed_at,
        "moved": len(moved),
        "movable": len(movable),
    }
    print(f"  marked down after {out['down_s']:.2f} s (polled every {POLL} s)")
    print(
        f"  {len(moved)}/{len(movable)} permanent instances created elsewhere: first after "
        f"{out['first_s']:.2f} s, all after {out['all_s']:.2f} s "
        f"({(last - first) * 1e3:.0f} ms for the moves); the manager's list shows them "
        f"after {out['listed_s']:.2f} s"
    )
    print(f"  they went to: {dict(sorted(targets.items()))}")
    print(
        f"  pipelines on other nodes re-created to follow their moved camera: {len(followed)} "
        f"{sorted(followed)[:5]}"
    )
    print(
        f"  non-permanent instances gone from the list: "
        f"{sum(1 for n in lost if n not in listed)}/{len(lost)}"
    )
    print(f"  waiting for a node: {[(p['instance'], p['why'][:90]) for p in waiting]}")
    stale = stale_inputs(mgr, pipes)
    out["stale_after_move"] = len(stale)
    print(f"  pipelines reading a dead URL after the moves: {len(stale)} {stale[:3]}")

    seq = len(fake.events())
    fake.revive(victim, fresh=fresh)
    revived_at = time.time()
    what = "restarted (empty)" if fresh else "answering again with its old instances"

    def settled() -> bool:
        views = mgr.nodes()
        if views[victim]["status"] != "up":
            return False
        held = where_runs(fake)
        if any(len(nodes) > 1 for nodes in held.values()):
            return False
        return all(victim in held.get(i, []) for i in pinned_here)

    wait_for(settled, timeout=timeout, interval=POLL, what=f"{victim} back, nothing twice")
    settled_at = time.time()
    events = fake.events(seq)
    deleted = [e["instance"] for e in events if e["kind"] == "deleted" and e["node"] == victim]
    created = [e["instance"] for e in events if e["kind"] == "created" and e["node"] == victim]
    up_after = mgr.nodes()[victim]
    placements = {p["instance"]: p for p in mgr.api("GET", "/cluster/placements").json()}
    adopted = [
        n for n in fake.instances()[victim] if placements.get(n, {}).get("rule") == "adopted"
    ]
    out["return_s"] = settled_at - revived_at
    print(
        f"  {victim} {what}: up and nothing running twice after {out['return_s']:.2f} s; "
        f"duplicates deleted on it: {len(deleted)}, created on it: {created}"
    )
    print(
        f"  now on {victim}: {up_after['instances']} instances "
        f"({len(adopted)} adopted by the manager: found running there)"
    )
    stale = stale_inputs(mgr, pipes)
    out["stale_after_return"] = len(stale)
    print(f"  pipelines reading a dead URL after the return: {len(stale)} {stale[:3]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--pipelines", type=int, default=300)
    parser.add_argument("--window", type=float, default=20.0, help="steady-state window, s")
    parser.add_argument("--list-requests", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.cameras, args.pipelines, args.window, args.list_requests = (
            20,
            50,
            75,
            3.0,
            30,
        )

    results: dict[str, float] = {}
    fake: FakeNodes | None = None
    mgr: ManagerServer | None = None
    ports: list[int] = []
    with tempfile.TemporaryDirectory(prefix="sim-cluster-") as tmp:
        work = Path(tmp)
        cams = cameras(args.cameras)
        pipes = pipelines(cams, args.pipelines)
        try:
            fake = FakeNodes(args.nodes)
            ports = list(fake.ports.values())
            fake.set_cpu(HOT_NODE, 93.0)
            rules = cluster_rules({n: fake.url(n) for n in fake.ports}, cams)
            (work / "rules.json").write_text(json.dumps(rules, indent=1))
            write_registry(work / "registry", cams)
            t0 = time.monotonic()
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
            up = time.monotonic() - t0
            files = {n["registry_files"] for n in fake.nodes()}
            print(
                f"manager started; {args.nodes} nodes up after {up:.1f} s (each got "
                f"{sorted(files)} registry files first)"
            )

            c0 = mgr.ps.cpu_times()
            t0 = time.monotonic()
            cam_lat = create_all(mgr, [{"name": c, "entry": c, "permanent": True} for c in cams])
            pipe_lat = create_all(mgr, pipes)
            span = time.monotonic() - t0
            c1 = mgr.ps.cpu_times()
            lat = summary([x * 1e3 for x in cam_lat + pipe_lat])
            results["create_p50_ms"], results["create_p99_ms"] = lat["median"], lat["p99"]
            print(
                f"created {len(cams)} cameras + {len(pipes)} pipelines through the manager "
                f"in {span:.1f} s: POST median {lat['median']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                f"max {lat['max']:.1f} ms (cameras median "
                f"{summary([x * 1e3 for x in cam_lat])['median']:.1f}, pipelines "
                f"{summary([x * 1e3 for x in pipe_lat])['median']:.1f}); manager CPU "
                f"{((c1.user - c0.user) + (c1.system - c0.system)) / span:.0%} of a core"
            )

            results |= report_placement(mgr, fake, cams, pipes, rules)
            time.sleep(2.0)
            results |= steady_state(mgr, fake, args.window)
            s = list_latency(mgr, args.list_requests)
            results["list_p50_ms"], results["list_p99_ms"] = s["median"], s["p99"]

            perm = Counter()
            placements = mgr.api("GET", "/cluster/placements").json()
            for p in placements:
                if p["permanent"] and p["node"]:
                    perm[p["node"]] += 1
            dedicated = {n for nodes in BEAMLINES.values() for n in nodes}
            pinned_nodes = {node for node, _ in PINS.values()}
            candidates = [
                n for n in perm if n not in dedicated and n not in pinned_nodes and n != HOT_NODE
            ]
            victim = max(candidates, key=lambda n: (perm[n], n))
            a = failover(mgr, fake, pipes, victim, "refuse", fresh=False, timeout=30)
            results |= {f"refuse_{k}": v for k, v in a.items()}
            b = failover(mgr, fake, pipes, "node02", "hang", fresh=True, timeout=30)
            results |= {f"hang_{k}": v for k, v in b.items()}
            # alvra's other node: its cameras move onto node02, where a pinned pipeline
            # reads one of them by URL
            c = failover(mgr, fake, pipes, "node01", "refuse", fresh=True, timeout=30)
            results |= {f"group_{k}": v for k, v in c.items()}
            held = where_runs(fake)
            listed = mgr.api("GET", "/instances").json()
            twice = [n for n, nodes in held.items() if len(nodes) > 1]
            print(
                f"\nat the end: {len(held)} instances on the nodes, {len(listed)} listed by "
                f"the manager, {len(twice)} held twice; failovers counted by the manager: "
                f"{mgr.api('GET', '/node').json()['cluster']['failovers']}"
            )
        finally:
            if mgr is not None:
                mgr.stop()
            if fake is not None:
                fake.close()
            clean = check_clean(ports)
    print(f"cleanup: {clean}")
    print(
        "RESULT "
        + " ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items()
        )
        + " target_failover_s=10"
    )


if __name__ == "__main__":
    main()
