"""An in-process cluster: a real manager and its real app, nodes that are fake nodes
(``supervisor.testing.FakeNode``) behind the real node app, reached through one httpx
transport that plays the network.

Health is driven by calling ``HealthMonitor.check`` (``Cluster.check``), never by the loops, so
every test decides when a node is looked at.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import cluster.nodes
from cluster.app import create_manager_app
from cluster.config import ClusterConfig, HealthConfig, NodeConfig
from cluster.manager import ClusterManager
from cluster.nodeclient import NodeClient
from cluster.settings import ManagerSettings
from supervisor import testing
from supervisor.api import create_app
from supervisor.nodeapi.models import CreateInstance, InstanceInfo

ENTRIES: dict[str, dict[str, Any]] = {
    "cam1": {"builtin": "camera_simulation"},
    "cam2": {"builtin": "camera_simulation"},
    "spots": {"builtin": "passthrough", "input": {"camera": "cam1"}},
    "keeper": {"builtin": "camera_simulation", "permanent": True},
}
"""The manager's registry: two cameras, a pipeline reading cam1, a permanent entry."""


class FakeNode(testing.FakeNode):
    """A node in memory, with the figures the manager reads and what it was told.

    Its streams are ``tcp://NAME:PORT``, so where a stream comes from shows in its URL.
    """

    def __init__(self, root: Path, name: str) -> None:
        super().__init__(root)
        self.name = name
        self.created: list[CreateInstance] = []
        self.deleted: list[str] = []
        self.cpu_percent = 5.0
        self.memory_percent = 10.0
        self.link_bytes_per_s = 0.0
        self.started_at = time.time()

    async def create_instance(self, req: CreateInstance) -> InstanceInfo:
        self.created.append(req)
        info = await super().create_instance(req)
        port = req.output.port if req.output is not None and req.output.port else self._next_port
        info.stream = f"tcp://{self.name}:{port}"
        info.output_mode = "PUB"
        info.input = req.input
        info.permanent = req.permanent
        return info

    async def delete_instance(self, name: str) -> None:
        self.deleted.append(name)
        await super().delete_instance(name)

    async def node_info(self) -> dict[str, Any]:
        return {
            **await super().node_info(),
            "started_at": self.started_at,
            "log_stream_url": None,
            "resources": {
                "sampled_at": time.time(),
                "cpu_percent": self.cpu_percent,
                "cpu_count": 8,
                "load": [0.5, 0.5, 0.5],
                "memory_total": 16 * 2**30,
                "memory_available": int(16 * 2**30 * (1 - self.memory_percent / 100)),
                "memory_percent": self.memory_percent,
                "net_rx_bytes_per_s": self.link_bytes_per_s,
                "net_tx_bytes_per_s": 0.0,
                "link_rx_bytes_per_s": self.link_bytes_per_s,
                "link_tx_bytes_per_s": 0.0,
                "net_rx_bytes": 0,
                "net_tx_bytes": 0,
            },
        }


class FakeNetwork(httpx.AsyncBaseTransport):
    """Routes a request to the node app named by its host; an unreachable host refuses."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}
        self._apps: dict[str, httpx.ASGITransport] = {}
        self.unreachable: set[str] = set()

    def attach(self, node: FakeNode) -> FakeNode:
        """Serve ``node`` at ``http://NAME`` (replacing whatever answered there)."""
        self.nodes[node.name] = node
        self._apps[node.name] = httpx.ASGITransport(app=create_app(node))
        return node

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.unreachable or host not in self._apps:
            raise httpx.ConnectError(f"connection to {host} refused", request=request)
        return await self._apps[host].handle_async_request(request)


class Cluster:
    """A manager over fake nodes ``http://NAME``, its app reached through ``api``."""

    def __init__(
        self,
        root: Path,
        network: FakeNetwork,
        names: tuple[str, ...],
        rules: ClusterConfig | None = None,
        config_file: Path | None = None,
    ) -> None:
        registry = root / "manager" / "registry"
        registry.mkdir(parents=True)
        for name, spec in ENTRIES.items():
            (registry / f"{name}.json").write_text(json.dumps(spec))
        if rules is None:
            nodes = [NodeConfig(name=n, url=f"http://{n}") for n in names]
            rules = ClusterConfig(nodes=nodes, health=HealthConfig(down_after=2))
        for name in names:
            network.attach(FakeNode(root / name, name))
        self.root = root
        self.network = network
        self.manager = ClusterManager(ManagerSettings(registry=registry, config=config_file), rules)
        self.manager.registry.scan()
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_manager_app(self.manager)),
            base_url="http://manager",
        )

    def node(self, name: str) -> FakeNode:
        """The fake node answering at ``http://NAME``."""
        return self.network.nodes[name]

    def start_node(self, name: str) -> FakeNode:
        """A new node answering at ``http://NAME`` (the manager does not know it yet)."""
        return self.network.attach(FakeNode(self.root / name, name))

    def restart(self, name: str, *, keep_registry: bool = True) -> FakeNode:
        """Node ``name`` restarted: a new node that runs nothing, with a new start time;
        its registry folder survives unless ``keep_registry`` is false (a new machine)."""
        before = self.network.nodes[name]
        after = FakeNode(before.root, name)
        after.started_at = before.started_at + 1
        if keep_registry:
            after.registry = before.registry
        return self.network.attach(after)

    async def check(self, *names: str) -> None:
        """One health check of each node named (default: all)."""
        for name in names or tuple(self.manager.nodes):
            await self.manager.health.check(self.manager.nodes[name])

    async def close(self) -> None:
        await self.api.aclose()
        await self.manager.close()


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    """The fake network every ``NodeClient`` the manager makes goes through."""
    net = FakeNetwork()

    def client(name: str, url: str, token: str | None) -> NodeClient:
        return NodeClient(name, url, token, transport=net)

    monkeypatch.setattr(cluster.nodes, "NodeClient", client)
    return net


@pytest.fixture
def make_cluster(tmp_path: Path, network: FakeNetwork) -> Callable[..., Cluster]:
    """Builds a ``Cluster`` (call it inside the test's event loop; close it there too)."""

    def make(
        *names: str, rules: ClusterConfig | None = None, config_file: Path | None = None
    ) -> Cluster:
        return Cluster(tmp_path, network, names or ("a", "b"), rules, config_file)

    return make


@pytest.fixture
def in_cluster(make_cluster: Callable[..., Cluster]) -> Callable[..., None]:
    """Runs ``scenario(cluster)`` on a new event loop, every node checked once first (unless
    ``check=False``), and closes the cluster afterwards."""

    def run(
        scenario: Callable[[Cluster], Awaitable[None]],
        *names: str,
        rules: ClusterConfig | None = None,
        config_file: Path | None = None,
        check: bool = True,
    ) -> None:
        async def main() -> None:
            c = make_cluster(*names, rules=rules, config_file=config_file)
            try:
                if check:
                    await c.check()
                await scenario(c)
            finally:
                await c.close()

        asyncio.run(main())

    return run
