"""Health checks: each node asked for its figures and instances every ``health.interval``.

A node that fails ``down_after`` checks in a row is down, and its permanent instances move
(``failover``). A node that answers again gets the registry and backgrounds first, then is up,
then is reconciled with the placements (nothing runs twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.nodeapi.errors import SupervisorError

from . import failover
from .nodes import NodeState, NodeStatus

if TYPE_CHECKING:
    from .manager import ClusterManager
    from .replication import Replicator

__all__ = ["HealthMonitor"]

log = structlog.get_logger(__name__)


class HealthMonitor:
    """One checking task per node, started and stopped as nodes come and go."""

    def __init__(self, manager: ClusterManager, replicator: Replicator) -> None:
        self.manager = manager
        self.replicator = replicator
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.checks = 0

    async def run(self) -> None:
        """Keep a task per node, and place what waits for a node, until cancelled."""
        try:
            while True:
                for name, node in self.manager.nodes.items():
                    task = self._tasks.get(name)
                    if task is None or task.done():
                        self._tasks[name] = asyncio.create_task(self._watch(node))
                for name in list(self._tasks):
                    if name not in self.manager.nodes:
                        self._tasks.pop(name).cancel()
                await failover.place_waiting(self.manager)
                await asyncio.sleep(self.manager.rules.health.interval)
        finally:
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _watch(self, node: NodeState) -> None:
        while self.manager.nodes.get(node.name) is node:
            started = time.monotonic()
            if node.status is not NodeStatus.DISABLED and node.client is not None:
                try:
                    await self.check(node)
                except Exception:
                    log.exception("health_check_crashed", node=node.name)
            interval = self.manager.rules.health.interval
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def check(self, node: NodeState) -> None:
        """One check of ``node``, and what follows from its answer or its silence."""
        health = self.manager.rules.health
        assert node.client is not None
        asked = time.time()
        self.checks += 1
        try:
            info, instances = await asyncio.wait_for(
                asyncio.gather(
                    node.client.json("GET", "/node", timeout=health.timeout),
                    node.client.json("GET", "/instances", timeout=health.timeout),
                ),
                timeout=health.timeout * 1.5,
            )
        except (SupervisorError, TimeoutError) as exc:
            await self._failed(node, getattr(exc, "message", None) or "no answer in time")
            return
        await self._answered(node, info, instances, asked)

    async def _failed(self, node: NodeState, reason: str) -> None:
        node.failures += 1
        node.reason = reason
        if node.status is NodeStatus.DOWN:
            return
        if node.failures >= self.manager.rules.health.down_after:
            node.set_status(NodeStatus.DOWN, f"{node.failures} checks failed: {reason}")
            log.warning("node_down", node=node.name, failures=node.failures, reason=reason)
            node.instances.clear()
            self.manager.changed()
            await failover.move_off(self.manager, node)

    async def _answered(
        self, node: NodeState, info: dict[str, Any], instances: list[dict[str, Any]], asked: float
    ) -> None:
        restarted = node.started_at is not None and info.get("started_at") != node.started_at
        node.started_at = info.get("started_at")
        node.failures = 0
        node.last_seen = asked
        node.info = info
        node.pending = 0
        for item in instances:
            item["node"] = node.name
        listed = {i["name"]: i for i in instances}
        for placement in self.manager.ledger.on_node(node.name):
            # Created after this check asked: keep what the create answered until the next.
            if placement.placed_at > asked and placement.instance in node.instances:
                listed.setdefault(placement.instance, node.instances[placement.instance])
        node.instances = listed
        for source, (where, since) in list(self.manager.implied.items()):
            if where == node.name and (source in listed or since < asked - 10):
                del self.manager.implied[source]
        self.manager.changed()
        self.manager.relay.follow(node.name, info.get("log_stream_url"), node.url)
        if restarted:
            log.warning("node_restarted", node=node.name)
        if node.status is not NodeStatus.UP:
            was = node.status
            try:
                await self.replicator.push_all(node)
            except SupervisorError as exc:
                node.reason = f"could not copy the registry to it: {exc.message}"
                log.warning("node_sync_failed", node=node.name, reason=exc.message)
                return
            node.set_status(NodeStatus.UP, "answers")
            log.info("node_up", node=node.name, was=str(was), instances=len(instances))
        else:
            node.reason = "answers"
        await failover.reconcile(self.manager, node, asked)
