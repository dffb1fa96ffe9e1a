"""Resource monitoring: what each instance's process tree costs, and the node it runs on.

:class:`TreeSampler` measures a program and every process below it (a shell script's children,
a runner's compiler) with psutil: CPU (percent of one core, summed over the tree), resident
memory, threads and open file descriptors. CPU percentages need two readings of the same
process: the ``psutil.Process`` objects of ``psutil.process_iter`` live from one sample to the
next. :class:`NodeSampler` does the same for the machine: CPU, memory, load, and network
throughput from the interface counters.

Both are plain objects sampled by the supervisor's monitoring task at its interval, in a worker
thread. With 50 instances, sampling every second costs the supervisor about 1.8 % of a core
(bench/bench_monitoring.py).
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
    """CPU, memory, threads and descriptors of process trees, one sample at a time.

    The machine's process table is read once per sample with ``psutil.process_iter``, whose
    ``Process`` objects psutil keeps from one call to the next (and replaces when a pid is
    reused): CPU percentages are the deltas between two samples of the same process, the first
    sample of a new process reads 0."""

    def sample(self, roots: Mapping[str, int]) -> dict[str, ResourceStats]:
        """One reading per instance name, for the trees under the given root pids."""
        processes: dict[int, psutil.Process] = {}
        children: dict[int, list[int]] = {}
        for process in psutil.process_iter(["ppid"]):
            processes[process.pid] = process
            children.setdefault(process.info["ppid"], []).append(process.pid)
        now = time.time()
        result = {}
        for name, pid in roots.items():
            if pid not in processes:
                continue
            tree, stack = [], [pid]
            while stack:
                current = stack.pop()
                tree.append(current)
                stack.extend(children.get(current, ()))
            count = threads = fds = rss = 0
            cpu = 0.0
            for member in tree:
                process = processes[member]
                try:
                    with process.oneshot():
                        cpu += process.cpu_percent(None)
                        rss += process.memory_info().rss
                        threads += process.num_threads()
                        fds += process.num_fds() if hasattr(process, "num_fds") else 0
                except _GONE:
                    continue
                except psutil.AccessDenied:  # another user's child: counted, not measured
                    pass
                count += 1
            result[name] = ResourceStats.model_construct(
                sampled_at=now,
                processes=count,
                cpu_percent=cpu,
                rss_bytes=rss,
                threads=threads,
                fds=fds,
            )
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
