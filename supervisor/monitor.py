"""Resource monitoring: what each instance's process tree costs, and the node it runs on.

:class:`TreeSampler` measures a program and every process below it (a shell script's children,
a runner's compiler): CPU (percent of one core, summed over the tree), resident memory, threads
and open file descriptors, read from ``/proc`` on Linux and through psutil elsewhere. CPU
percentages need two readings of the same process, so the sampler keeps the previous one.
:class:`NodeSampler` does the same for the machine with psutil: CPU, memory, load, and network
throughput from the interface counters.

Both are plain objects sampled by the supervisor's monitoring task at its interval, in a worker
thread (bench/bench_monitoring.py measures what that costs with 50 instances).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from .nodeapi.models import NodeResources, ResourceStats

__all__ = ["NodeSampler", "TreeSampler"]

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


class TreeSampler:
    """CPU, memory, threads and descriptors of process trees, one sample at a time.

    On Linux the process table is read straight from ``/proc``: one read of ``/proc/PID/stat``
    per process gives its parent, CPU ticks, threads and resident pages, and a listing of
    ``/proc/PID/fd`` its descriptors, for the members of a tree only. That is half the cost of
    psutil's readers (which open ``stat``, ``statm`` and ``status`` apart), and the monitor runs
    every second on every node. CPU percentages are the tick deltas between two samples of the
    same process (a pid and its start time, so a reused pid starts again at 0). Elsewhere,
    psutil does the same through its portable API.
    """

    def __init__(self) -> None:
        self._proc = Path("/proc")
        self._linux = (self._proc / "self" / "stat").exists()
        self._ticks_per_s = os.sysconf("SC_CLK_TCK") if self._linux else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if self._linux else 4096
        # (pid, start time) -> (CPU ticks, monotonic time) of the previous sample.
        self._previous: dict[tuple[int, int], tuple[int, float]] = {}

    def sample(self, roots: Mapping[str, int]) -> dict[str, ResourceStats]:
        """One reading per instance name, for the trees under the given root pids."""
        if not self._linux:
            return _sample_with_psutil(roots)
        table = self._read_table()
        children: dict[int, list[int]] = {}
        for pid, stat in table.items():
            children.setdefault(stat[0], []).append(pid)
        now, clock = time.time(), time.monotonic()
        previous, self._previous = self._previous, {}
        result = {}
        for name, root in roots.items():
            if root not in table:
                continue
            count = threads = fds = rss = 0
            cpu = 0.0
            stack = [root]
            while stack:
                pid = stack.pop()
                stack.extend(children.get(pid, ()))
                _, ticks, started, n_threads, pages = table[pid]
                key = (pid, started)
                before = previous.get(key)
                self._previous[key] = (ticks, clock)
                if before is not None and clock > before[1]:
                    cpu += (ticks - before[0]) / self._ticks_per_s / (clock - before[1]) * 100
                count += 1
                threads += n_threads
                rss += pages * self._page
                fds += self._count_fds(pid)
            result[name] = ResourceStats.model_construct(
                sampled_at=now,
                processes=count,
                cpu_percent=cpu,
                rss_bytes=rss,
                threads=threads,
                fds=fds,
            )
        return result

    def _read_table(self) -> dict[int, tuple[int, int, int, int, int]]:
        """pid -> (ppid, CPU ticks, start time, threads, resident pages) of every process."""
        table = {}
        for entry in os.listdir(self._proc):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    data = file.read()
            except OSError:  # gone between the listing and the read
                continue
            # The command name is in parentheses and may hold spaces or parentheses itself.
            fields = data[data.rindex(b")") + 2 :].split()
            if len(fields) < 22 or fields[0] == b"Z":  # zombies have no resources left
                continue
            table[int(entry)] = (
                int(fields[1]),  # ppid
                int(fields[11]) + int(fields[12]),  # utime + stime
                int(fields[19]),  # start time: tells a reused pid apart
                int(fields[17]),  # threads
                int(fields[21]),  # resident pages
            )
        return table

    @staticmethod
    def _count_fds(pid: int) -> int:
        try:
            return len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:  # gone, or another user's process: counted, not measured
            return 0


def _sample_with_psutil(roots: Mapping[str, int]) -> dict[str, ResourceStats]:
    """The portable reading (no /proc): psutil keeps ``Process`` objects across calls of
    ``process_iter``, so CPU percentages are deltas between samples here too."""
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
        count = threads = fds = rss = 0
        cpu = 0.0
        stack = [pid]
        while stack:
            current = stack.pop()
            stack.extend(children.get(current, ()))
            process = processes[current]
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
    """The machine: CPU, memory, load and network throughput since the previous sample.

    Network figures come twice: over every interface, and over the links only (loopback left
    out), which is what a cluster's placement weighs: same-node streams cost no link.
    """

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # starts the measurement
        self._net = _net_counters()
        self._net_at = time.monotonic()

    def sample(self) -> NodeResources:
        now = time.monotonic()
        net = _net_counters()
        elapsed = max(now - self._net_at, 1e-6)
        rx, tx, link_rx, link_tx = (
            max(0, new - old) / elapsed for new, old in zip(net, self._net, strict=True)
        )
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
            link_rx_bytes_per_s=link_rx,
            link_tx_bytes_per_s=link_tx,
            net_rx_bytes=net[0],
            net_tx_bytes=net[1],
        )


def _net_counters() -> tuple[int, int, int, int]:
    """Bytes received and sent: over all interfaces, then without loopback."""
    rx = tx = link_rx = link_tx = 0
    for nic, counters in psutil.net_io_counters(pernic=True).items():
        rx += counters.bytes_recv
        tx += counters.bytes_sent
        if nic != "lo" and not nic.startswith("lo"):
            link_rx += counters.bytes_recv
            link_tx += counters.bytes_sent
    return rx, tx, link_rx, link_tx
