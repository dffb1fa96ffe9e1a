"""The cluster manager: the REST face of one node, over many nodes.

It implements the node API (``supervisor.nodeapi.NodeAPI``), so ``supervisor.api.create_app`` serves
it unchanged: a client or the CLI cannot tell a manager from a node. Each call about an
instance goes to the node that runs it; lists, node figures and logs are merged. Where a new
instance runs is decided by ``placement`` and kept, with its reason, in the ``Ledger``.

The list of instances is served from the nodes' last health check (at most one
``health.interval`` old) with every change made through the manager applied at once; calls
about one instance ask its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from supervisor import __version__
from supervisor.backgrounds import BackgroundStore
from supervisor.folders import FolderAPI
from supervisor.nodeapi import (
    BackgroundInfo,
    ConfigResult,
    ConflictError,
    CreateInstance,
    InstanceInfo,
    InstanceNotFoundError,
    InstanceState,
    LogEntry,
    Preview,
    RegistryChanges,
    UnavailableError,
)
from supervisor.registry import Registry

from . import forwarding
from .config import ClusterConfig
from .health import HealthMonitor
from .ledger import Ledger, Placement
from .logrelay import LogRelay
from .nodeclient import NodeClient
from .nodes import NodeState, NodeStatus, merged_resources
from .placement import Decision, PlacementRequest, place
from .pool import NodePool
from .replication import Replicator
from .rewrite import node_request
from .settings import ManagerSettings

__all__ = ["ClusterManager"]

log = structlog.get_logger(__name__)


class ClusterManager(FolderAPI):
    """Owns the view of every node and the placement of every instance."""

    def __init__(self, settings: ManagerSettings, rules: ClusterConfig) -> None:
        self.settings = settings
        self.rules = rules
        self.registry = Registry(settings.registry, max_upload_bytes=settings.max_upload_bytes)
        assert settings.backgrounds is not None
        assert settings.state_dir is not None
        self.backgrounds = BackgroundStore(settings.backgrounds, settings.max_upload_bytes)
        self._started_at = time.time()
        self.pool = NodePool(rules.nodes, settings.token, settings.state_dir / "nodes.json")
        self.nodes = self.pool.nodes
        self.ledger = Ledger(settings.state_dir / "placements.json")
        self._lock = asyncio.Lock()  # one placement decision at a time
        self._json: bytes | None = None  # the merged instance list, rendered once per change
        self.failovers = 0
        self.relay = LogRelay(settings.log_host)
        self.replicator = Replicator(self)
        self.health = HealthMonitor(self, self.replicator)
        self._tasks: list[asyncio.Task[None]] = []
        # Permanent registry entries to place: all at start, then those added to the registry
        # (one deleted through the API stays deleted, as on a node).
        self.new_permanents: set[str] = set()
        # Sources a node creates for a pipeline placed there, until its next check lists them.
        self.implied: dict[str, tuple[str, float]] = {}

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the placements, bind the log stream, start checking nodes."""
        self.settings.registry.mkdir(parents=True, exist_ok=True)
        self.registry.scan()
        self.ledger.load()
        await self.pool.load()
        self.new_permanents = {e.name for e in self.registry.entries()}
        self.relay.start()
        self._tasks = [
            asyncio.create_task(self.health.run()),
            asyncio.create_task(self.replicator.run()),
            asyncio.create_task(self.registry.watch(self._on_registry_change)),
        ]
        log.info(
            "manager_started",
            nodes=len(self.nodes),
            placements=len(self.ledger.all()),
            logs=self.relay.url,
        )

    async def close(self) -> None:
        """Stop checking; the nodes and their instances go on running."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.close()
        await self.pool.close()
        log.info("manager_stopped")

    def interrupt(self, forced: bool) -> None:
        """A signal: nothing to hurry (the nodes and their instances go on running; a log
        follow ends when the server closes its connection)."""

    def _on_registry_change(self, changes: RegistryChanges) -> None:
        self.new_permanents.update(changes.added)

    @property
    def started_at(self) -> float:
        return self._started_at

    @property
    def max_upload_bytes(self) -> int:
        return self.settings.max_upload_bytes

    @property
    def log_stream(self) -> str:
        return self.relay.url

    # -- nodes -------------------------------------------------------------------------------

    async def register_node(self, name: str, url: str) -> NodeState:
        """A node announced itself (``POST /api/v1/cluster/nodes``)."""
        return await self.pool.register(name, url)

    async def set_rules(self, rules: ClusterConfig) -> None:
        """New rules, in force at once: nodes added, changed or (if unused) forgotten."""
        await self.pool.apply(rules.nodes)
        self.rules = rules
        self.changed()

    def up_nodes(self) -> list[NodeState]:
        return self.pool.up()

    def changed(self) -> None:
        """Something shown in the instance list changed: render it again when asked."""
        self._json = None

    # -- where instances are ---------------------------------------------------------------

    def locations(self) -> dict[str, str]:
        """Instance name -> node, for instances running on up nodes and placements made."""
        found = {p.instance: p.node for p in self.ledger.all() if p.node is not None}
        found.update((k, v[0]) for k, v in self.implied.items() if k not in found)
        for node in self.up_nodes():
            for name in node.instances:
                found.setdefault(name, node.name)
        return found

    def _holder(self, name: str) -> NodeState:
        """The node that runs ``name``; a down node is a 503, an unknown name a 404."""
        for node in self.up_nodes():
            if name in node.instances:
                return node
        placement = self.ledger.get(name)
        if placement is not None:
            if placement.node is None:
                raise UnavailableError(f"instance {name!r} waits for a node: {placement.why}")
            holder = self.nodes.get(placement.node)
            if holder is not None and holder.up and holder.client is not None:
                return holder
            state = "unknown" if holder is None else str(holder.status)
            raise UnavailableError(
                f"instance {name!r} runs on node {placement.node!r}, which is {state}"
            )
        raise InstanceNotFoundError(f"no instance named {name!r} in the cluster")

    def _client(self, node: NodeState) -> NodeClient:
        if node.client is None:
            raise UnavailableError(f"node {node.name!r} has no URL yet")
        return node.client

    def _remember(self, node: NodeState, info: dict[str, Any]) -> InstanceInfo:
        """A node's answer about an instance: kept for the list, returned as a model."""
        info["node"] = node.name
        node.instances[info["name"]] = info
        self.changed()
        return InstanceInfo.model_validate(info)

    # -- the NodeAPI: lists and node figures ----------------------------------------------

    async def list_instances(self) -> list[InstanceInfo]:
        return [InstanceInfo.model_validate(i) for i in self._merged()]

    async def list_instances_json(self) -> bytes:
        if self._json is None:
            self._json = json.dumps(self._merged(), separators=(",", ":")).encode()
        return self._json

    def _merged(self) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for node in sorted(self.up_nodes(), key=lambda n: n.name):
            for name, info in node.instances.items():
                merged.setdefault(name, info)
        return [merged[name] for name in sorted(merged)]

    async def node_health(self) -> dict[str, Any]:
        return {"store": self.ledger.health()}

    async def node_info(self) -> dict[str, Any]:
        states = {str(s): 0 for s in InstanceState}
        instances = self._merged()
        for info in instances:
            states[str(info.get("state"))] = states.get(str(info.get("state")), 0) + 1
        resources = merged_resources(self.up_nodes())
        counts = {str(s): 0 for s in NodeStatus}
        for node in self.nodes.values():
            counts[str(node.status)] += 1
        return {
            "version": __version__,
            "hostname": f"cluster of {len(self.nodes)} nodes ({socket.gethostname()})",
            "pid": os.getpid(),
            "started_at": self._started_at,
            "uptime": time.time() - self._started_at,
            "registry": str(self.settings.registry),
            "instances": len(instances),
            "states": states,
            "log_stream_url": self.log_stream,
            "monitor_interval": self.rules.health.interval,
            "resources": resources,
            "cluster": {
                "nodes": counts,
                "failovers": self.failovers,
                "placements": len(self.ledger.all()),
            },
        }

    # -- the NodeAPI: one instance ----------------------------------------------------------

    async def get_instance(self, name: str) -> InstanceInfo:
        node = self._holder(name)
        return self._remember(node, await self._client(node).json("GET", f"/instances/{name}"))

    async def _act(self, name: str, method: str, path: str, **kwargs: Any) -> InstanceInfo:
        node = self._holder(name)
        answer = await self._client(node).json(method, path, **kwargs)
        return self._remember(node, answer)

    async def start_instance(self, name: str) -> InstanceInfo:
        return await self._act(name, "POST", f"/instances/{name}/start")

    async def stop_instance(self, name: str) -> InstanceInfo:
        return await self._act(name, "POST", f"/instances/{name}/stop")

    async def restart_instance(self, name: str) -> InstanceInfo:
        return await self._act(name, "POST", f"/instances/{name}/restart")

    async def delete_instance(self, name: str) -> None:
        try:
            node = self._holder(name)
        except UnavailableError:
            # Its node is down: forgetting it is all there is to do (a node that returns
            # starts empty; a partitioned one is cleaned up when it answers again).
            self.ledger.remove(name)
            self.changed()
            return
        await self._client(node).json("DELETE", f"/instances/{name}")
        node.instances.pop(name, None)
        self.ledger.remove(name)
        self.changed()
        log.info("instance_deleted", instance=name, node=node.name)

    async def get_config(self, name: str) -> dict[str, Any]:
        node = self._holder(name)
        config: dict[str, Any] = await self._client(node).json("GET", f"/instances/{name}/config")
        return config

    async def update_config(self, name: str, patch: dict[str, Any]) -> ConfigResult:
        return await self._config(name, "PATCH", patch)

    async def set_config(self, name: str, config: dict[str, Any]) -> ConfigResult:
        return await self._config(name, "PUT", config)

    async def _config(self, name: str, method: str, body: dict[str, Any]) -> ConfigResult:
        node = self._holder(name)
        content = json.dumps(body).encode()
        kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
        answer = await self._client(node).json(
            method,
            f"/instances/{name}/config",
            content=content,
            headers={"Content-Type": kind},
        )
        result = ConfigResult.model_validate(answer)
        placement = self.ledger.get(name)
        if placement is not None:  # a move recreates it with the config now in force
            request = placement.request.model_copy(update={"config": result.config})
            self.ledger.put(placement.model_copy(update={"request": request}))
        if name in node.instances:
            node.instances[name]["config"] = result.config
            self.changed()
        return result

    # -- the NodeAPI: creating ------------------------------------------------------------

    async def create_instance(self, req: CreateInstance) -> InstanceInfo:
        self.registry.get(req.entry)  # 404 for an unknown entry, as on a node
        permanent = req.permanent  # as on a node: the registry's permanent entries start alone
        async with self._lock:
            where = self.locations().get(req.name)
            if where is not None:
                raise ConflictError(
                    f"an instance named {req.name!r} already runs on node {where!r}"
                )
            placement = await self._place_and_create(req, permanent)
        node = self.nodes[placement.node or ""]
        return InstanceInfo.model_validate(node.instances[req.name])

    async def _place_and_create(
        self,
        req: CreateInstance,
        permanent: bool,
        *,
        exclude: frozenset[str] = frozenset(),
        moved_from: str | None = None,
        moves: int = 0,
    ) -> Placement:
        """Decide, create on the chosen node, record; the caller holds the lock."""
        source = self._source_of(req)
        decision = place(
            PlacementRequest(req.name, source, exclude),
            [n.candidate() for n in self.nodes.values()],
            self.rules,
            self.locations(),
        )
        node = self.nodes[decision.node]
        body = self._node_request(req, decision, node.name)
        answer = await self._client(node).json(
            "POST", "/instances", json=body.model_dump(mode="json", exclude_none=True)
        )
        node.pending += 1
        self._remember(node, answer)
        if source is not None and source not in self.locations():
            self._note_source(node, source)
        placement = Placement(
            instance=req.name,
            node=node.name,
            why=decision.why,
            rule=decision.rule,
            permanent=permanent,
            request=req,
            moves=moves,
            moved_from=moved_from,
        )
        self.ledger.put(placement)
        log.info(
            "instance_placed",
            instance=req.name,
            node=node.name,
            rule=decision.rule,
            permanent=permanent,
            moved_from=moved_from,
        )
        return placement

    def _note_source(self, node: NodeState, source: str) -> None:
        """The node creates a missing source itself: it is there until its next check says."""
        self.implied[source] = (node.name, time.time())

    def _source_of(self, req: CreateInstance) -> str | None:
        """The camera or instance the new instance reads (its first input), if any."""
        spec_input = req.input
        if spec_input is None:
            try:
                entry = self.registry.get(req.entry)
            except Exception:
                return None
            spec_input = entry.spec.input if entry.spec is not None else None
        first = spec_input[0] if isinstance(spec_input, list) else spec_input
        return first.source if first is not None else None

    def _node_request(self, req: CreateInstance, decision: Decision, node: str) -> CreateInstance:
        """The request the node gets: a pin's port, and inputs from other nodes as URLs."""
        return node_request(req, self.registry.get(req.entry), node, decision.port, self._where)

    def _where(self, name: str) -> tuple[str, dict[str, Any]] | None:
        node = self.locations().get(name)
        if node is None:
            return None
        return node, self.nodes[node].instances.get(name, {})

    async def request_stream(self, name: str) -> InstanceInfo:
        if name in self.locations():
            return await self._act(name, "POST", f"/streams/{name}")
        entry = self.registry.get(name)  # 404: neither an instance nor an entry
        req = CreateInstance(name=name, entry=name, start=True)
        async with self._lock:
            if name in self.locations():  # asked twice at once
                return await self._act(name, "POST", f"/streams/{name}")
            source = self._source_of(req)
            decision = place(
                PlacementRequest(name, source),
                [n.candidate() for n in self.nodes.values()],
                self.rules,
                self.locations(),
            )
            node = self.nodes[decision.node]
            created = (
                decision.port is not None or self._node_request(req, decision, node.name) != req
            )
            if created:
                # A pinned port or a remote source: create it with them, then ask for it.
                placement = await self._place_and_create(
                    req, bool(entry.spec and entry.spec.permanent)
                )
                node = self.nodes[placement.node or ""]
            answer = await self._client(node).json("POST", f"/streams/{name}")
            if not created:  # recorded once the node took it: a refusal leaves no placement
                self.ledger.put(
                    Placement(
                        instance=name,
                        node=node.name,
                        why=decision.why,
                        rule=decision.rule,
                        request=req,
                    )
                )
            node.pending += 1
            return self._remember(node, answer)

    # -- the NodeAPI: logs, previews, backgrounds -----------------------------------------

    async def tail_logs(
        self, name: str, n: int = 100, since_seq: int | None = None
    ) -> list[LogEntry]:
        return await forwarding.tail_logs(self._client(self._holder(name)), name, n, since_seq)

    async def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
        node = self._holder(name)
        return forwarding.follow_logs(self._client(node), node.name, name, since_seq)

    async def log_stream_url(self) -> str:
        return self.log_stream

    async def preview(
        self,
        name: str,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview:
        client = self._client(self._holder(name))
        return await forwarding.preview(client, name, channel, colormap, width, vmin, vmax)

    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        client = self._client(self._holder(name))
        info, data = await forwarding.collect_background(client, name, n_images, timeout)
        # Kept by the manager too, from where it reaches every node (a moved camera keeps it).
        await asyncio.to_thread(self.backgrounds.write, info.id, data)
        return info
