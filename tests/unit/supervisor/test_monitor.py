"""Resource sampling of real process trees and of the node."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from supervisor.monitor import NodeSampler, TreeSampler
from tests.support import wait_for

# A parent that starts a busy child and waits for it: a tree of two processes.
TREE = (
    "import subprocess, sys; "
    "child = subprocess.Popen([sys.executable, '-c', 'while True: pass']); "
    "print(child.pid, flush=True); child.wait()"
)


@pytest.fixture
def tree():
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    yield parent, child_pid
    for pid in (child_pid, parent.pid):
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    parent.wait(timeout=10)
    parent.stdout.close()


def test_a_tree_is_measured_whole_and_its_busy_child_shows(tree) -> None:
    """Both processes count; the child's busy loop shows as CPU once two readings exist."""
    parent, _ = tree
    sampler = TreeSampler()
    first = sampler.sample({"busy": parent.pid})["busy"]
    assert first.processes == 2
    assert first.rss_bytes > 10 * 2**20  # two Python interpreters
    assert first.threads >= 2
    assert first.fds >= 6  # at least stdin, stdout and stderr of each
    # Readings 0.3 s apart, as the monitor's are (1 s): shorter ones are all clock-tick noise.
    sample = wait_for(
        lambda: (s := sampler.sample({"busy": parent.pid})["busy"]).cpu_percent > 20 and s,
        timeout=10,
        interval=0.3,
        what="the busy child's CPU",
    )
    assert sample.cpu_percent <= 100 * (os.cpu_count() or 1) * 1.2  # ticks: a little slack


def test_a_tree_that_ended_is_not_reported(tree) -> None:
    parent, child_pid = tree
    sampler = TreeSampler()
    assert "busy" in sampler.sample({"busy": parent.pid})
    psutil.Process(child_pid).kill()
    parent.wait(timeout=10)
    assert sampler.sample({"busy": parent.pid}) == {}


def test_the_node_sample_is_sane() -> None:
    sampler = NodeSampler()
    node = sampler.sample()
    assert node.cpu_count == os.cpu_count()
    assert 0 <= node.cpu_percent <= 100
    assert node.memory_total > node.memory_available > 0
    assert len(node.load) == 3
    assert node.net_rx_bytes_per_s >= 0
    assert node.net_tx_bytes_per_s >= 0


@pytest.mark.parametrize("reader", ["proc", "psutil"])
def test_both_readers_agree_with_psutil_on_a_tree(tree, reader) -> None:
    """/proc's reading and the portable one give psutil's own figures for the same tree."""
    parent, child_pid = tree
    sampler = TreeSampler()
    if reader == "psutil":
        sampler._linux = False  # the path taken where there is no /proc
    members = [psutil.Process(parent.pid), psutil.Process(child_pid)]

    readings: list[list[tuple[int, int]]] = []

    def settled() -> bool:  # the child has finished starting its interpreter
        readings.append([(p.num_fds(), p.num_threads()) for p in members])
        return len(readings) >= 3 and readings[-1] == readings[-2] == readings[-3]

    wait_for(settled, timeout=10, interval=0.2, what="a settled tree")
    before = sum(p.memory_info().rss for p in members)
    sample = sampler.sample({"busy": parent.pid})["busy"]
    after = sum(p.memory_info().rss for p in members)
    assert sample.processes == 2
    assert sample.threads == sum(p.num_threads() for p in members)
    assert sample.fds == sum(p.num_fds() for p in members)
    # The child may still be starting: its memory moves, so bracket the reading.
    assert 0.95 * min(before, after) <= sample.rss_bytes <= 1.05 * max(before, after)
