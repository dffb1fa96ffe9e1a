"""A cluster on loopback for the tests: a real ``pipevisor manager`` and real worker nodes.

Each node is an ordinary ``pipevisor serve --manager URL --node-name NAME`` with its own
registry folder, state folder, API port and output port range, so several of them share one
machine without sharing anything else. ``Cluster.stop`` stops the manager first (so it moves
nothing while the nodes go), then the nodes, and fails if any process of theirs is left.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil
import zmq

from supervisor.contract.bsread import Decoder
from supervisor.testing import SupervisorProcess, free_port, kill_tree, wait_for

__all__ = ["Cluster", "ManagerProcess", "receive_pulse_ids", "start_cluster"]

POLL = 0.1
"""Seconds between two looks at an API while waiting: a 2-core machine runs the cluster too."""


@dataclass
class ManagerProcess(SupervisorProcess):
    """A real ``pipevisor manager`` on loopback, with a client for its API."""

    command: ClassVar[str] = "manager"
    log_name: ClassVar[str] = "manager"
    config: Path | None = None

    def start(self, timeout: float = 20.0) -> ManagerProcess:
        if self.config is not None and "--config" not in self.extra_args:
            self.extra_args = [*self.extra_args, "--config", str(self.config)]
        super().start(timeout)
        return self

    # -- API shortcuts ---------------------------------------------------------------------

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of a successful answer; anything else fails with the manager's words."""
        response = self.api(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def nodes(self) -> dict[str, dict[str, Any]]:
        """``GET /cluster/nodes`` by node name."""
        return {n["name"]: n for n in self.ok("GET", "/cluster/nodes")}

    def placement(self, instance: str) -> dict[str, Any]:
        return self.ok("GET", f"/cluster/placements/{instance}")

    def instances(self) -> dict[str, dict[str, Any]]:
        """The manager's merged ``GET /instances`` by instance name."""
        return {i["name"]: i for i in self.ok("GET", "/instances")}

    def wait_running(self, name: str, node: str | None = None, timeout: float = 20.0) -> dict:
        """Wait until the manager shows ``name`` running (on ``node`` when given)."""

        def probe() -> dict[str, Any] | None:
            info = self.ok("GET", f"/instances/{name}")
            if info["state"] == "running" and (node is None or info.get("node") == node):
                return info
            return None

        where = f" on {node}" if node else ""
        return wait_for(probe, timeout=timeout, interval=POLL, what=f"{name} running{where}")


@dataclass
class Cluster:
    """A manager and its nodes, each node with its own folders, API port and port range."""

    root: Path
    manager: ManagerProcess
    ranges: dict[str, tuple[int, int]]
    token: str | None = None
    nodes: dict[str, SupervisorProcess] = field(default_factory=dict)
    _owned: dict[int, psutil.Process] = field(default_factory=dict)

    def start_node(self, name: str, *, port: int | None = None) -> SupervisorProcess:
        """Start node ``name`` (again: same folders; the same API port when given)."""
        first, last = self.ranges[name]
        home = self.root / name
        (home / "registry").mkdir(parents=True, exist_ok=True)
        node = SupervisorProcess(
            registry=home / "registry",
            state_dir=home / "state",
            port=port or free_port(),
            extra_args=[
                "--port-range",
                f"{first}:{last}",
                "--manager",
                self.manager.url,
                "--node-name",
                name,
            ],
            token=self.token,
        )
        self.nodes[name] = node
        node.start()
        return node

    def range_of(self, name: str) -> range:
        first, last = self.ranges[name]
        return range(first, last + 1)

    def wait_up(self, names: Iterable[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """Wait until the manager shows every node of ``names`` up."""
        wanted = set(names)

        def probe() -> dict[str, dict[str, Any]] | None:
            nodes = self.manager.nodes()
            up = {n for n, view in nodes.items() if view["status"] == "up"}
            return nodes if wanted <= up else None

        return wait_for(probe, timeout=timeout, interval=POLL, what=f"nodes {sorted(wanted)} up")

    def _remember_tree(self, node: SupervisorProcess) -> list[psutil.Process]:
        assert node.proc is not None
        tree = [psutil.Process(node.proc.pid), *node.descendants()]
        for proc in tree:
            self._owned[proc.pid] = proc
        return tree

    def kill_node(self, name: str) -> list[psutil.Process]:
        """SIGKILL node ``name``'s supervisor only; returns its process tree of that moment
        (its guard and instances, which the guard is to kill)."""
        node = self.nodes[name]
        tree = self._remember_tree(node)
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait()
        if node.client is not None:
            node.client.close()
        return tree[1:]

    def pause_node(self, name: str) -> None:
        """SIGSTOP node ``name``'s supervisor: it stops answering, its instances run on."""
        node = self.nodes[name]
        assert node.proc is not None
        self._remember_tree(node)
        os.kill(node.proc.pid, signal.SIGSTOP)

    def resume_node(self, name: str) -> None:
        node = self.nodes[name]
        assert node.proc is not None
        if node.proc.poll() is None:
            os.kill(node.proc.pid, signal.SIGCONT)

    def own_instances(self, name: str) -> dict[str, dict[str, Any]]:
        """What node ``name`` itself says it runs (``GET /instances`` on the node)."""
        node = self.nodes[name]
        response = node.api("GET", "/instances")
        assert response.status_code == 200, response.text
        return {i["name"]: i for i in response.json()}

    def holders(self) -> dict[str, list[str]]:
        """Instance name -> the nodes (alive ones, asked directly) that run it."""
        found: dict[str, list[str]] = {}
        for name, node in self.nodes.items():
            if node.proc is None or node.proc.poll() is not None:
                continue
            for instance in self.own_instances(name):
                found.setdefault(instance, []).append(name)
        return found

    def node_of_port(self, port: int) -> str | None:
        return next((n for n in self.ranges if port in self.range_of(n)), None)

    def stop(self) -> None:
        """Manager first (it must not move anything meanwhile), then every node; fail if a
        process of the cluster (a node, its guard, an instance) outlives it."""
        errors = []
        try:
            self.manager.stop()
        except AssertionError as exc:
            errors.append(str(exc))
        for node in self.nodes.values():
            if node.proc is None:
                continue
            if node.proc.poll() is None:
                self._remember_tree(node)
                os.kill(node.proc.pid, signal.SIGCONT)  # a paused node must hear SIGTERM
            try:
                node.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        left = _wait_gone(self._owned.values(), timeout=10.0)
        if left:
            errors.append(f"cluster processes left behind: {[(p.pid, p.name()) for p in left]}")
            kill_tree(left)
        assert not errors, "; ".join(errors)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``procs`` lives; returns those still alive at the deadline."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in procs if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_gone(procs: Iterable[psutil.Process], timeout: float = 10.0) -> None:
    """Fail unless every process of ``procs`` ends within ``timeout``."""
    left = _wait_gone(procs, timeout)
    assert not left, f"still alive after {timeout} s: {[(p.pid, p.cmdline()) for p in left]}"


def start_cluster(
    root: Path,
    nodes: dict[str, tuple[int, int]],
    *,
    files: dict[str, str] | None = None,
    rules: str | None = None,
    token: str | None = None,
) -> Cluster:
    """A manager whose registry holds ``files``, with ``rules`` as its ``--config``, and the
    nodes ``{name: (first_port, last_port)}`` registered with it and up.

    On failure everything started so far is stopped again.
    """
    registry = root / "manager" / "registry"
    registry.mkdir(parents=True)
    for filename, text in (files or {}).items():
        (registry / filename).write_text(text)
    config = None
    if rules is not None:
        config = root / "manager" / "rules.json"
        config.write_text(rules)
    manager = ManagerProcess(
        registry=registry, state_dir=root / "manager" / "state", config=config, token=token
    )
    cluster = Cluster(root=root, manager=manager, ranges=dict(nodes), token=token)
    try:
        manager.start()
        for name in nodes:
            cluster.start_node(name)
        cluster.wait_up(nodes)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def receive_pulse_ids(url: str, count: int, timeout: float = 15.0) -> list[int]:
    """The pulse ids of the first ``count`` bsread data messages read from ``url`` by a plain
    ZMQ SUB (decoded by the contract's codec); fails at the deadline with what it got."""
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    decoder = Decoder()
    pulse_ids: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        sock.connect(url)
        while len(pulse_ids) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{len(pulse_ids)} of {count} messages from {url} in {timeout} s: {pulse_ids}"
                )
            if not sock.poll(min(200, int(left * 1000) + 1)):
                continue
            message = decoder.decode(sock.recv_multipart(copy=False))
            if message is not None:
                pulse_ids.append(message.pulse_id)
    finally:
        sock.close()
        context.term()
    return pulse_ids
