"""Failover: from a node's SIGKILL to all its permanent instances running again elsewhere.

A real ``pipevisor manager`` (default health settings: a check every 1 s, 1 s timeout, down
after 3 failed checks) and three real nodes (``pipevisor serve --manager``), each with its own
registry, state folder and port range. Each round:

1. **baseline**: a fresh set of permanent instances is created through the manager on the
   healthy cluster: one simulated camera (64x48 at 10 Hz) and ``--pipelines`` pipelines
   reading it (beam_metrics and passthrough, alternating), so all of them land on one node
   (next to their camera). Time from the first ``POST /instances`` to every one ``running``,
   polled on the nodes themselves.
2. **failover**: that node's supervisor is SIGKILLed (its guard kills the instances with it).
   Time to every instance ``running`` on another node, split into detection (kill ->
   ``node_down``: the node's ``since`` in ``GET /cluster/nodes``), placement (``node_down`` ->
   the last one created: its ``placed_at``) and start (-> all ``running``, polled on the nodes).
3. the killed node is started again (same name, port and folders) and the set deleted.

Placement is told to colocate whatever the CPU (``colocate_max_cpu`` 100): on this machine all
nodes share two cores, and a busy moment would otherwise scatter the pipelines, which is not
what is measured here. Target: under 10 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from _harness import SupervisorServer, check_clean, kill_tree, wait_for
from _manager import ManagerServer

POLL = 0.05
PORTS = {"n1": (13900, 13929), "n2": (13930, 13959), "n3": (13960, 13989)}
CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 64, "height": 48, "rate": 10},
}
RULES = {"colocate_max_cpu": 100}


class Cluster:
    """The manager and three nodes; a killed node's processes are remembered until gone."""

    def __init__(self, work: Path) -> None:
        self.work = work
        registry = work / "manager" / "registry"
        registry.mkdir(parents=True)
        (registry / "cam.json").write_text(json.dumps(CAMERA))
        (registry / "beam.json").write_text(json.dumps({"builtin": "beam_metrics"}))
        (registry / "relay.json").write_text(json.dumps({"builtin": "passthrough"}))
        config = work / "manager" / "rules.json"
        config.write_text(json.dumps(RULES))
        self.manager = ManagerServer(registry, work / "manager" / "state", config=config)
        self.nodes: dict[str, SupervisorServer] = {}
        self.killed: list[psutil.Process] = []

    def start(self) -> None:
        self.manager.start()
        for name in PORTS:
            self.start_node(name)
        self.wait_up(PORTS)

    def start_node(self, name: str, port: int | None = None) -> None:
        first, last = PORTS[name]
        home = self.work / name
        node = SupervisorServer(
            home / "registry",
            home / "state",
            extra_args=[
                "--port-range",
                f"{first}:{last}",
                "--manager",
                self.manager.base,
                "--node-name",
                name,
            ],
        )
        if port is not None:
            node.port = port
        self.nodes[name] = node.start()

    def wait_up(self, names: Any) -> None:
        wanted = set(names)
        wait_for(
            lambda: wanted <= {n for n, v in self.manager.nodes().items() if v["status"] == "up"},
            timeout=60,
            interval=0.1,
            what=f"nodes {sorted(wanted)} up",
        )

    def kill(self, name: str) -> float:
        """SIGKILL node ``name``'s supervisor; returns the Unix time of the kill."""
        node = self.nodes[name]
        assert node.proc is not None
        proc = psutil.Process(node.proc.pid)
        self.killed += proc.children(recursive=True)
        when = time.time()
        node.proc.kill()
        node.proc.wait()
        if node.client is not None:
            node.client.close()
            node.client = None
        return when

    def running(self, names: list[str], not_on: str | None = None) -> dict[str, str] | None:
        """Instance -> node when every one of ``names`` runs (asking the nodes directly)."""
        where: dict[str, str] = {}
        for node_name, node in self.nodes.items():
            if node_name == not_on or node.client is None:
                continue
            for info in node.api("GET", "/instances").json():
                if info["name"] in names and info["state"] == "running":
                    where[info["name"]] = node_name
        return where if len(where) == len(names) else None

    def stop(self) -> str:
        """Everything down; 'ok' or what was left behind."""
        self.manager.stop()
        for node in self.nodes.values():
            node.stop()
        # A killed node's guard kills its instances at once: none of them may be left.
        left = [p for p in self.killed if _alive(p)]
        kill_tree(left)
        clean = check_clean([self.manager.port, *(n.port for n in self.nodes.values())])
        if left:
            clean = f"killed nodes' processes left: {len(left)}; {clean}"
        return clean


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def instance_set(round_no: int, pipelines: int) -> list[dict[str, Any]]:
    """The create requests of one round's set: a camera, then the pipelines reading it."""
    cam = f"r{round_no}_cam"
    bodies = [{"name": cam, "entry": "cam", "permanent": True}]
    for i in range(pipelines):
        entry = "beam" if i % 2 == 0 else "relay"
        bodies.append(
            {
                "name": f"r{round_no}_{entry}{i}",
                "entry": entry,
                "input": {"camera": cam},
                "permanent": True,
            }
        )
    return bodies


def one_round(cluster: Cluster, round_no: int, pipelines: int) -> dict[str, Any]:
    manager = cluster.manager
    bodies = instance_set(round_no, pipelines)
    names = [b["name"] for b in bodies]

    # Baseline: the same instances created fresh on a healthy node.
    t0 = time.monotonic()
    for body in bodies:
        manager.api("POST", "/instances", json=body)
    created = time.monotonic()
    where = wait_for(lambda: cluster.running(names), timeout=60, interval=POLL, what="baseline")
    baseline = {"total": time.monotonic() - t0, "create": created - t0}
    holders = set(where.values())
    if len(holders) != 1:
        raise SystemExit(f"round {round_no}: the set is spread over {sorted(holders)}")
    victim = holders.pop()

    # Failover: SIGKILL the node that runs them.
    killed_at = cluster.kill(victim)
    wait_for(
        lambda: manager.nodes()[victim]["status"] == "down",
        timeout=60,
        interval=POLL,
        what=f"{victim} down",
    )
    down_at = manager.nodes()[victim]["since"]
    moved = wait_for(
        lambda: cluster.running(names, not_on=victim),
        timeout=60,
        interval=POLL,
        what=f"the set running off {victim}",
    )
    running_at = time.time()
    placements = {n: manager.api("GET", f"/cluster/placements/{n}").json() for n in names}
    for name, placement in placements.items():
        if placement["moved_from"] != victim or placement["node"] != moved[name]:
            raise SystemExit(f"round {round_no}: unexpected placement of {name}: {placement}")
    created_at = max(p["placed_at"] for p in placements.values())

    # Back to three nodes, and the set removed.
    cluster.start_node(victim, port=cluster.nodes[victim].port)
    cluster.wait_up([victim])
    for name in names:
        manager.api("DELETE", f"/instances/{name}")
    wait_for(
        lambda: (
            not any(
                i["name"] in names
                for node in cluster.nodes.values()
                for i in node.api("GET", "/instances").json()
            )
        ),
        timeout=30,
        interval=0.1,
        what="the set deleted",
    )
    return {
        "victim": victim,
        "to": ",".join(sorted(set(moved.values()))),
        "detect": down_at - killed_at,
        "place": created_at - down_at,
        "start": running_at - created_at,
        "total": running_at - killed_at,
        "baseline": baseline["total"],
        "baseline_create": baseline["create"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="kills (default 5)")
    parser.add_argument(
        "--pipelines", type=int, default=5, help="pipelines reading the camera (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="one round: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1

    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.start()
            for r in range(args.rounds):
                rounds.append(one_round(cluster, r, args.pipelines))
        finally:
            clean = cluster.stop()

    count = 1 + args.pipelines
    print(
        f"failover of {count} permanent instances (1 camera 64x48 at 10 Hz, {args.pipelines} "
        "pipelines) off a SIGKILLed node; 3 nodes, health: every 1 s, down after 3 failures"
    )
    head = ("round", "killed", "to", "detect s", "place s", "start s", "total s", "fresh s")
    print(f"{head[0]:<7}{head[1]:<8}{head[2]:<6}" + "".join(f"{h:>10}" for h in head[3:]))
    for i, r in enumerate(rounds):
        print(
            f"{i:<7}{r['victim']:<8}{r['to']:<6}{r['detect']:>10.2f}{r['place']:>10.2f}"
            f"{r['start']:>10.2f}{r['total']:>10.2f}{r['baseline']:>10.2f}"
        )
    figures = ("detect", "place", "start", "total", "baseline", "baseline_create")
    med = {k: statistics.median(r[k] for r in rounds) for k in figures}
    top = {k: max(r[k] for r in rounds) for k in figures}
    print(
        f"{'median':<21}{med['detect']:>10.2f}{med['place']:>10.2f}{med['start']:>10.2f}"
        f"{med['total']:>10.2f}{med['baseline']:>10.2f}"
    )
    print(
        f"{'max':<21}{top['detect']:>10.2f}{top['place']:>10.2f}{top['start']:>10.2f}"
        f"{top['total']:>10.2f}{top['baseline']:>10.2f}"
    )
    print(
        "fresh: the same set created through the manager on a healthy node, first POST -> all "
        f"running (its POSTs took {med['baseline_create']:.2f} s, median)"
    )
    print(f"cleanup: {clean}")
    print(
        f"RESULT failover_median_s={med['total']:.2f} failover_max_s={top['total']:.2f} "
        f"detect_median_s={med['detect']:.2f} place_median_s={med['place']:.2f} "
        f"start_median_s={med['start']:.2f} fresh_median_s={med['baseline']:.2f} "
        f"ratio={med['total'] / med['baseline']:.1f} target=10s "
        f"met={'yes' if top['total'] < 10 else 'no'} instances={count} rounds={len(rounds)}"
    )


if __name__ == "__main__":
    main()
