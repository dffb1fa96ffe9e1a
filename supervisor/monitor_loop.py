"""The node's monitoring round: every interval, sample every instance's process tree and the
machine, then let each instance look for a stall or an idle on-demand run."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from .instance_watch import check_idle, check_stall
from .monitor import NodeSampler, TreeSampler
from .nodeapi.models import NodeResources, ResourceStats
from .table import InstanceTable

__all__ = ["MonitorLoop"]

log = structlog.get_logger(__name__)


class MonitorLoop:
    """Samples in a worker thread (psutil reads /proc), off the event loop."""

    def __init__(
        self,
        table: InstanceTable,
        interval: float,
        trees: TreeSampler | None = None,
        node: NodeSampler | None = None,
    ) -> None:
        self._table = table
        self.interval = interval
        self._trees = trees or TreeSampler()
        self._node = node or NodeSampler()
        self.node_resources: NodeResources | None = None  # the last sample
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the rounds (none when the interval is 0: monitoring is off)."""
        if self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.round()

    async def round(self) -> None:
        """One sample of everything, then the stall and idle checks."""
        instances = self._table.all()
        roots = {i.name: i.process.pid for i in instances if i.process}
        try:
            trees, node = await asyncio.to_thread(self._sample, roots)
        except Exception:  # a monitoring hiccup must never stop the supervisor
            log.exception("monitor_sample_failed")
            return
        self.node_resources = node
        now = time.time()
        for instance in self._table.all():
            sampled = trees.get(instance.name)
            if sampled is not None and instance.process is not None:
                instance.resources = sampled
            check_stall(instance, now)
            check_idle(instance, now)

    def _sample(self, roots: dict[str, int]) -> tuple[dict[str, ResourceStats], NodeResources]:
        return self._trees.sample(roots), self._node.sample()
