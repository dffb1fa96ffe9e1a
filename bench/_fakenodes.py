"""Fake cluster nodes: N nodes answering the node API the manager uses, in one asyncio process.

Each fake node listens on its own loopback port and answers what ``pipevisor manager`` asks of
a node: ``GET /api/v1/health``, ``/node`` (plausible machine figures that grow with what it
runs), ``/instances`` (InstanceInfo-shaped JSON, built with the node API's ``InstanceInfo``),
``/instances/NAME``, ``POST /instances`` (a "running" instance whose stream is
``tcp://127.0.0.1:PORT``; a missing source is created on demand, as a node does), start, stop,
restart, delete, config, ``POST /streams/NAME``, ``PUT``/``DELETE /registry/files/F``,
``/backgrounds`` (counted, not stored). Nothing is spawned: an instance is a dict.

The HTTP server is a minimal HTTP/1.1 one (keep-alive, Content-Length or chunked bodies) on
raw asyncio streams, so that 20 nodes polled every second by the manager cost this process
next to nothing (the benchmarks print its CPU). A control API on its own port kills a node
(``refuse``: its port closes, connections reset, as a SIGKILLed node; ``hang``: it accepts and
reads but never answers, as a frozen one), revives it (``fresh``: an empty node that restarted,
otherwise the same node with its instances, as after a partition), fills it with instances,
and reports what each node was asked and the creations and deletions with their times.

    python bench/_fakenodes.py --nodes 20

prints one JSON line ``{"control": PORT, "nodes": {"node01": PORT, ...}}`` and serves until
stdin closes or SIGTERM. :class:`FakeNodes` runs it as a child process for a benchmark or a
test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):  # run as a script, or loaded by path from a test
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _fakenode import FakeNode  # noqa: E402
from _minihttp import HOST, HttpError, HttpServer, json_body  # noqa: E402

from supervisor.nodeapi.models import CreateInstance  # noqa: E402

__all__ = ["FakeNode", "FakeNodes", "FakeServer"]


class FakeServer:
    """The fake nodes and the control API, on one event loop."""

    def __init__(self, count: int, seed: int = 1, log_pub: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self.nodes = {
            f"node{i + 1:02d}": FakeNode(f"node{i + 1:02d}", seed * 1000 + i, 20_000 + 200 * i)
            for i in range(count)
        }
        for node in self.nodes.values():
            node.events = self.events
        self.control = HttpServer(self.handle_control)
        self.log_pub = log_pub
        self._ctx: Any = None
        self._pubs: list[Any] = []

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.server.listen()
        await self.control.listen()
        if self.log_pub:  # a node's log PUB, so that the manager's relay connects somewhere
            import zmq

            self._ctx = zmq.Context()
            for node in self.nodes.values():
                pub = self._ctx.socket(zmq.PUB)
                pub.setsockopt(zmq.LINGER, 0)
                pub.bind(f"tcp://{HOST}:*")
                node.log_stream_url = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
                self._pubs.append(pub)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for node in self.nodes.values():
                node.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def close(self) -> None:
        for node in self.nodes.values():
            node.server.close()
        self.control.close()
        for pub in self._pubs:
            pub.close(0)
        if self._ctx is not None:
            self._ctx.term()

    def ports(self) -> dict[str, Any]:
        return {
            "control": self.control.port,
            "nodes": {n.name: n.server.port for n in self.nodes.values()},
        }

    def handle_control(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, bytes]:
        try:
            return 200, json_body(self._control(method, path.strip("/").split("/"), query))
        except HttpError as exc:
            return exc.status, json_body({"detail": exc.detail})

    def _node(self, name: str) -> FakeNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise HttpError(404, f"no fake node {name!r}") from None

    def _control(self, method: str, parts: list[str], query: dict[str, list[str]]) -> Any:
        arg = {k: v[-1] for k, v in query.items()}
        if parts == ["nodes"] and method == "GET":
            return [n.summary() for n in self.nodes.values()]
        if parts == ["instances"] and method == "GET":
            return {n.name: sorted(n.instances) for n in self.nodes.values()}
        if parts == ["events"] and method == "GET":
            return self.events[int(arg.get("since", 0)) :]
        if len(parts) == 3 and parts[0] == "nodes" and method == "POST":
            node = self._node(parts[1])
            if parts[2] == "kill":
                node.kill(arg.get("mode", "refuse"))
                return node.summary()
            if parts[2] == "revive":
                # The control server's handler is synchronous: listening again is scheduled.
                task = asyncio.get_running_loop().create_task(
                    node.revive(arg.get("fresh", "0") == "1")
                )
                task.add_done_callback(lambda t: t.result())
                return node.summary()
            if parts[2] == "fill":
                count, prefix = int(arg.get("count", 1)), arg.get("prefix", node.name + "_i")
                permanent = arg.get("permanent", "0") == "1"
                entry = arg.get("entry", "sleeper")
                for i in range(count):
                    node.create(
                        CreateInstance(name=f"{prefix}{i:04d}", entry=entry, permanent=permanent)
                    )
                return node.summary()
            if parts[2] == "set":
                if "base_cpu" in arg:
                    node.base_cpu = float(arg["base_cpu"])
                return node.summary()
        raise HttpError(404, f"{method} /{'/'.join(parts)} is not a control call")


async def _main(args: argparse.Namespace) -> None:
    server = FakeServer(args.nodes, args.seed, log_pub=not args.no_log_pub)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: None if sys.stdin.readline() else stop.set())
    print(json.dumps(server.ports()), flush=True)
    try:
        await server.run(stop)
    finally:
        loop.remove_reader(sys.stdin.fileno())
        server.close()
        await asyncio.sleep(0.1)  # the reset connections' handlers end before the loop does


class FakeNodes:
    """The fake-node process, run as a child (its own session) and driven over its control API."""

    def __init__(self, count: int, *, seed: int = 1, log_pub: bool = True) -> None:
        args = [sys.executable, str(Path(__file__)), "--nodes", str(count), "--seed", str(seed)]
        if not log_pub:
            args.append("--no-log-pub")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            start_new_session=True,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fake nodes exited {self.proc.wait()} before they listened")
        ports = json.loads(line)
        self.control = f"http://{HOST}:{ports['control']}"
        self.ports: dict[str, int] = ports["nodes"]
        import httpx

        self._http = httpx.Client(base_url=self.control, timeout=10.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, node: str) -> str:
        """Base URL of ``node``'s API (what the manager's rules list)."""
        return f"http://{HOST}:{self.ports[node]}"

    def _call(self, method: str, path: str, **params: Any) -> Any:
        answer = self._http.request(method, path, params=params)
        answer.raise_for_status()
        return answer.json()

    def nodes(self) -> list[dict[str, Any]]:
        return self._call("GET", "/nodes")

    def instances(self) -> dict[str, list[str]]:
        """Node -> names of the instances it holds (the ground truth)."""
        return self._call("GET", "/instances")

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", "/events", since=since)

    def kill(self, node: str, mode: str = "refuse") -> dict[str, Any]:
        return self._call("POST", f"/nodes/{node}/kill", mode=mode)

    def revive(self, node: str, *, fresh: bool = False) -> dict[str, Any]:
        return self._call("POST", f"/nodes/{node}/revive", fresh=int(fresh))

    def fill(self, node: str, count: int, prefix: str, *, permanent: bool = False) -> None:
        self._call(
            "POST", f"/nodes/{node}/fill", count=count, prefix=prefix, permanent=int(permanent)
        )

    def set_cpu(self, node: str, base_cpu: float) -> None:
        self._call("POST", f"/nodes/{node}/set", base_cpu=base_cpu)

    def close(self) -> None:
        """End the process (stdin closed, then SIGKILL of its group if it lingers)."""
        self._http.close()
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> FakeNodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-log-pub", action="store_true", help="no ZMQ log PUB per node")
    asyncio.run(_main(parser.parse_args()))
