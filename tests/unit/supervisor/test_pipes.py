"""Reading a child's pipe: line splitting, limits, EOF, and a real flooding child."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from supervisor.loghub import LogHub
from supervisor.logring import HOLD_LINES, InstanceLog
from supervisor.pipes import PipeReader, RingSink
from tests.support import run, wait_until


class FakeSink:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.dropped_lines = 0
        self.last: list[bytes] = []
        self.truncated_lines = 0
        self.is_limited = False

    def limited(self) -> bool:
        return self.is_limited

    def lines(self, lines: list[bytes]) -> None:
        self.got.extend(lines)

    def dropped(self, n: int, last: list[bytes]) -> None:
        self.dropped_lines += n
        self.last = last

    def truncated(self, n: int) -> None:
        self.truncated_lines += n


def reader(max_line_bytes: int = 8192) -> tuple[PipeReader, FakeSink]:
    sink = FakeSink()
    return PipeReader(-1, sink, max_line_bytes=max_line_bytes), sink


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_partial_lines_are_joined_across_reads() -> None:
    """A line split over several reads comes out whole, once its newline arrives."""
    rd, sink = reader()
    rd.feed(b"hel")
    rd.feed(b"lo wo")
    assert sink.got == []
    rd.feed(b"rld\nsecond\nthi")
    rd.feed(b"rd\n")
    assert sink.got == [b"hello world", b"second", b"third"]


def test_crlf_line_endings_are_stripped() -> None:
    """A CR before the newline is removed, also when the CR ends a read."""
    rd, sink = reader()
    rd.feed(b"one\r\ntwo\r")
    rd.feed(b"\nthree\n")
    assert sink.got == [b"one", b"two", b"three"]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    """Bytes that are not UTF-8 become U+FFFD in the stored message."""
    ring = InstanceLog("cam")
    rd = PipeReader(-1, RingSink(ring, 1, "stderr"))
    rd.feed(b"bad \xff\xfe bytes\n")
    (entry,) = ring.tail()
    assert entry.message == "bad \ufffd\ufffd bytes"
    assert (entry.source, entry.level, entry.run) == ("stderr", "warning", 1)


def test_stdout_lines_are_info() -> None:
    """Lines from stdout are stored with level info."""
    ring = InstanceLog("cam")
    PipeReader(-1, RingSink(ring, 3, "stdout")).feed(b"hello\n")
    assert [(e.level, e.source, e.message) for e in ring.tail()] == [("info", "stdout", "hello")]


def test_a_long_line_in_one_read_is_cut_with_a_marker() -> None:
    """A line over max_line_bytes keeps its head and says how many bytes went."""
    rd, sink = reader(max_line_bytes=10)
    rd.feed(b"0123456789abcdef\nok\n")
    assert sink.got == [b"0123456789 [... 6 bytes truncated]", b"ok"]
    assert sink.truncated_lines == 1


def test_a_long_line_over_many_reads_costs_no_memory_and_is_cut() -> None:
    """The rest of an over-long line is discarded as it arrives, up to its newline."""
    rd, sink = reader(max_line_bytes=10)
    rd.feed(b"01234567")
    for _ in range(1000):
        rd.feed(b"x" * 1000)
        assert len(rd._partial) <= 10
    rd.feed(b"yy\nnext\n")
    assert sink.got == [b"01234567xx [... 1000000 bytes truncated]", b"next"]
    assert sink.truncated_lines == 1


def test_limited_sink_gets_counts_and_the_last_lines_only() -> None:
    """While limited, lines are counted and only the last HOLD_LINES are prepared."""
    rd, sink = reader()
    rd.feed(b"before\npart")
    sink.is_limited = True
    rd.feed(b"ial\nx\r\ny\nstart of ")
    assert sink.last == [b"partial", b"x", b"y"]
    rd.feed(b"".join(b"flood %d\n" % i for i in range(100)))
    assert sink.last == [b"flood %d" % i for i in range(100 - HOLD_LINES, 100)]
    sink.is_limited = False
    rd.feed(b"kept\n")
    assert sink.got == [b"before", b"kept"]
    assert sink.dropped_lines == 103


def test_eof_flushes_the_last_partial_line_and_closes_the_fd() -> None:
    """At EOF a line without newline is stored, the reader detaches and the fd is closed."""

    async def scenario() -> tuple[list[str], int]:
        hub = LogHub()
        r, w = os.pipe()
        hub.attach_pipe("cam", 1, r, "stdout")
        os.write(w, b"first\nsec")
        await wait_until(lambda: len(hub.tail("cam")) == 1, lambda: hub.tail("cam"))
        os.write(w, b"ond")
        os.close(w)
        await wait_until(lambda: hub.attached_pipes == 0, lambda: hub.tail("cam"))
        return [e.message for e in hub.tail("cam")], r

    before = open_fds()
    messages, r = run(scenario())
    assert messages == ["first", "second"]
    assert open_fds() == before
    assert str(r) not in open_fds()


def test_close_detaches_pipes_that_are_still_open() -> None:
    """LogHub.close removes the reader and closes the fd of a pipe with no EOF yet."""

    async def scenario() -> int:
        hub = LogHub()
        r, w = os.pipe()
        try:
            hub.attach_pipe("cam", 1, r, "stdout")
            await hub.close()
            return hub.attached_pipes
        finally:
            os.close(w)

    before = open_fds()
    assert run(scenario()) == 0
    assert open_fds() == before


CHILD = r"""
import sys
out = open(1, "w", buffering=1 << 16)
err = open(2, "w", buffering=1 << 16)
for i in range(100_000):
    print(f"out line {i}", file=out)
    print(f"err line {i}", file=err)
out.flush()
err.flush()
"""


def test_a_flooding_child_is_bounded_and_every_line_is_accounted_for() -> None:
    """200,000 lines as fast as a child prints: ring at capacity, drops counted, last lines kept."""

    async def scenario() -> tuple[dict[str, int], float, float, set[str]]:
        hub = LogHub(capacity=2000, rate=5000.0, burst=10000)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=out_w, stderr=err_w)
        try:
            os.close(out_w)
            os.close(err_w)
            t0, cpu0 = time.perf_counter(), time.process_time()
            hub.attach_pipe("flood", 1, out_r, "stdout")
            hub.attach_pipe("flood", 1, err_r, "stderr")
            await wait_until(lambda: hub.attached_pipes == 0, lambda: hub.stats("flood"), 60)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            await wait_until(lambda: proc.poll() is not None, lambda: proc.returncode, 30)
            # Once the input is quiet, the gap's notice and last lines are stored.
            await wait_until(lambda: hub.stats("flood")["held"] == 0, lambda: hub.stats("flood"))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            await hub.close()
        assert proc.returncode == 0
        return hub.stats("flood"), wall, cpu, [e.message for e in hub.tail("flood", 2000)]

    before = open_fds()
    stats, wall, cpu, messages = run(scenario(), timeout=90)
    assert stats["received"] == 200_000
    assert stats["dropped"] > 0
    assert stats["stored"] - stats["notices"] + stats["dropped"] == 200_000
    assert {"out line 99999", "err line 99999"} <= set(messages)  # how the flood ended
    assert messages[-1] in {"out line 99999", "err line 99999"}
    assert stats["buffered"] == 2000
    assert stats["stored"] - stats["evicted"] == 2000
    assert open_fds() == before
    print(f"\n200k lines in {wall:.3f} s ({200_000 / wall:,.0f} lines/s), hub CPU {cpu:.3f} s")
