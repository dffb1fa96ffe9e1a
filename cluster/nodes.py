"""The nodes the manager knows: their rules, health, last sample and instances."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import Field

from supervisor.contract import StrictModel

from .config import NodeConfig
from .nodeclient import NodeClient
from .placement import Candidate

__all__ = ["NodeState", "NodeStatus", "NodeView", "merged_resources"]


class NodeStatus(StrEnum):
    """What the manager makes of a node."""

    UNKNOWN = "unknown"  # not checked yet, or no URL yet (waits for its registration)
    UP = "up"  # answers, and has the manager's registry
    DOWN = "down"  # missed ``down_after`` checks in a row
    DISABLED = "disabled"  # the rules take it out of the pool


class NodeView(StrictModel):
    """One node as ``GET /api/v1/cluster/nodes`` shows it."""

    name: str = Field(description="Node name.")
    url: str | None = Field(description="Base URL of its API.")
    status: NodeStatus = Field(description="unknown, up, down or disabled.")
    since: float = Field(description="Unix time of the last status change.")
    reason: str = Field("", description="Why it has this status, for a person.")
    last_seen: float | None = Field(None, description="Unix time of its last good check.")
    failures: int = Field(0, description="Failed checks in a row.")
    registered: bool = Field(False, description="It registered itself (rather than listed).")
    generic: bool = Field(description="Takes instances that no group claims.")
    groups: list[str] = Field(default_factory=list, description="Groups it runs.")
    cameras: list[str] = Field(default_factory=list, description="Cameras it prefers.")
    pins: list[str] = Field(default_factory=list, description="Instances pinned to it.")
    version: str | None = Field(None, description="Its pipevisor version.")
    hostname: str | None = Field(None, description="Its host name.")
    instances: int = Field(0, description="Instances it runs.")
    running: int = Field(0, description="Of which running.")
    score: float | None = Field(None, description="Its placement score (lower: less loaded).")
    resources: dict[str, Any] | None = Field(None, description="Its last machine sample.")


class NodeState:
    """Everything the manager holds about one node."""

    def __init__(self, config: NodeConfig, token: str | None) -> None:
        self.config = config
        self.url: str | None = config.url
        self.token = config.token or token
        self.client: NodeClient | None = None
        self.status = NodeStatus.UNKNOWN if config.enabled else NodeStatus.DISABLED
        self.since = time.time()
        self.reason = "not checked yet" if self.url else "waits for its registration"
        self.failures = 0
        self.last_seen: float | None = None
        self.registered = False
        self.info: dict[str, Any] = {}
        self.instances: dict[str, dict[str, Any]] = {}  # name -> InstanceInfo as JSON, with node
        self.pending = 0  # instances placed here since its last sample
        self.started_at: float | None = None  # of the node's supervisor: a change is a restart
        if self.url:
            self.client = NodeClient(config.name, self.url, self.token)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def up(self) -> bool:
        return self.status is NodeStatus.UP

    def set_status(self, status: NodeStatus, reason: str) -> bool:
        """Change the status; True when it changed."""
        self.reason = reason
        if status is self.status:
            return False
        self.status = status
        self.since = time.time()
        return True

    async def set_url(self, url: str) -> None:
        """A node registered with a (new) URL: talk to it there."""
        url = url.rstrip("/")
        if url == self.url and self.client is not None:
            return
        if self.client is not None:
            await self.client.close()
        self.url = url
        self.client = NodeClient(self.name, url, self.token)

    async def reconfigure(self, config: NodeConfig, token: str | None) -> None:
        """New rules for this node (URL and token may change)."""
        self.config = config
        self.token = config.token or token
        if config.url and config.url != self.url:
            await self.set_url(config.url)
        if not config.enabled:
            self.set_status(NodeStatus.DISABLED, "disabled by the rules")
        elif self.status is NodeStatus.DISABLED:
            self.set_status(NodeStatus.UNKNOWN, "enabled by the rules")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def candidate(self) -> Candidate:
        """This node as placement sees it."""
        resources = self.info.get("resources") or {}
        return Candidate(
            name=self.name,
            up=self.up,
            enabled=self.config.enabled,
            generic=self.config.generic,
            groups=tuple(self.config.groups),
            cameras=tuple(self.config.cameras),
            cpu_percent=float(resources.get("cpu_percent", 0.0)),
            memory_percent=float(resources.get("memory_percent", 0.0)),
            net_bytes_per_s=float(resources.get("link_rx_bytes_per_s", 0.0))
            + float(resources.get("link_tx_bytes_per_s", 0.0)),
            net_capacity=self.config.net_capacity,
            instances=len(self.instances),
            pending=self.pending,
            status=str(self.status),
            sampled=bool(resources),
        )

    def view(self) -> NodeView:
        running = sum(1 for i in self.instances.values() if i.get("state") == "running")
        return NodeView(
            name=self.name,
            url=self.url,
            status=self.status,
            since=self.since,
            reason=self.reason,
            last_seen=self.last_seen,
            failures=self.failures,
            registered=self.registered,
            generic=self.config.generic,
            groups=list(self.config.groups),
            cameras=list(self.config.cameras),
            pins=[p.instance for p in self.config.pins],
            version=self.info.get("version"),
            hostname=self.info.get("hostname"),
            instances=len(self.instances),
            running=running,
            score=round(self.candidate().score, 4) if self.up else None,
            resources=self.info.get("resources"),
        )


_SUMMED = (
    "memory_total",
    "memory_available",
    "link_rx_bytes_per_s",
    "link_tx_bytes_per_s",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "net_rx_bytes",
    "net_tx_bytes",
)


def merged_resources(nodes: list[NodeState]) -> dict[str, Any] | None:
    """The machines of ``nodes`` as one (``NodeResources``' keys): CPU weighted by cores,
    memory, load and traffic summed; None before any node has a sample."""
    samples = [n.info["resources"] for n in nodes if n.info.get("resources")]
    if not samples:
        return None
    cpus = sum(s["cpu_count"] for s in samples)
    merged = {key: sum(s.get(key, 0) for s in samples) for key in _SUMMED}
    return {
        **merged,
        "sampled_at": min(s["sampled_at"] for s in samples),
        "cpu_percent": sum(s["cpu_percent"] * s["cpu_count"] for s in samples) / cpus,
        "cpu_count": cpus,
        "load": [sum(s["load"][i] for s in samples) for i in range(3)],
        "memory_percent": 100.0 * (1 - merged["memory_available"] / max(1, merged["memory_total"])),
    }
