"""Resource monitoring: what each instance's process tree costs, and the node it runs on.

:class:`TreeSampler` measures a program and every process below it (a shell script's children,
a runner's compiler) with psutil: CPU (percent of one core, summed over the tree), resident
memory, threads and open file descriptors. CPU percentages need two readings of the same
process, so the ``psutil.Process`` objects are kept between samples, keyed by pid and start
time (a reused pid is a new process). :class:`NodeSampler` does the same for the machine: CPU,
memory, load, and network throughput from the interface counters.

Both are plain objects sampled by the supervisor's monitoring task at its interval; a sample of
50 trees costs a few milliseconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import psutil

from .views import NodeResources, ResourceStats

__all__ = ["NodeSampler", "TreeSampler"]

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


class TreeSampler:
    """CPU, memory, threads and descriptors of process trees, one sample at a time."""

    def __init__(self) -> None:
        self._processes: dict[tuple[int, float], psutil.Process] = {}

    def _process(self, pid: int) -> psutil.Process | None:
        try:
            process = psutil.Process(pid)
            key = (pid, process.create_time())
        except _GONE:
            return None
        known = self._processes.get(key)
        if known is None:
            known = self._processes[key] = process
            known.cpu_percent(None)  # the first reading only starts the measurement
        return known

    def sample(self, roots: Mapping[str, int]) -> dict[str, ResourceStats]:
        """One reading per instance name, for the trees under the given root pids."""
        seen: set[tuple[int, float]] = set()
        now = time.time()
        result = {}
        for name, pid in roots.items():
            root = self._process(pid)
            if root is None:
                continue
            try:
                children = root.children(recursive=True)
            except _GONE:
                children = []
            processes = threads = fds = rss = 0
            cpu = 0.0
            for process in (root, *(self._process(c.pid) for c in children)):
                if process is None:
                    continue
                try:
                    with process.oneshot():
                        key = (process.pid, process.create_time())
                        cpu += process.cpu_percent(None)
                        rss += process.memory_info().rss
                        threads += process.num_threads()
                        fds += process.num_fds() if hasattr(process, "num_fds") else 0
                except _GONE:
                    continue
                except psutil.AccessDenied:  # another user's child: counted, not measured
                    processes += 1
                    continue
                seen.add(key)
                processes += 1
            stats = ResourceStats.model_construct(
                sampled_at=now,
                processes=processes,
                cpu_percent=cpu,
                rss_bytes=rss,
                threads=threads,
                fds=fds,
            )
            result[name] = stats
        for key in self._processes.keys() - seen:  # ended processes: forget them
            del self._processes[key]
        return result


class NodeSampler:
    """The machine: CPU, memory, load and network throughput since the previous sample."""

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # starts the measurement
        self._net = psutil.net_io_counters()
        self._net_at = time.monotonic()

    def sample(self) -> NodeResources:
        now = time.monotonic()
        net = psutil.net_io_counters()
        elapsed = max(now - self._net_at, 1e-6)
        rx = max(0, net.bytes_recv - self._net.bytes_recv) / elapsed
        tx = max(0, net.bytes_sent - self._net.bytes_sent) / elapsed
        self._net, self._net_at = net, now
        memory = psutil.virtual_memory()
        return NodeResources(
            sampled_at=time.time(),
            cpu_percent=psutil.cpu_percent(None),
            cpu_count=os.cpu_count() or 1,
            load=list(os.getloadavg()),
            memory_total=memory.total,
            memory_available=memory.available,
            memory_percent=memory.percent,
            net_rx_bytes_per_s=rx,
            net_tx_bytes_per_s=tx,
            net_rx_bytes=net.bytes_recv,
            net_tx_bytes=net.bytes_sent,
        )
