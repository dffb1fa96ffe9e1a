"""The per-instance ring: bound, eviction, rate limit, tail, and a follower's queue."""

from __future__ import annotations

import asyncio

import pytest

from supervisor.logring import HOLD_LINES, Follower, InstanceLog, cut_head, cut_tail
from supervisor.nodeapi.models import LogEntry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_log(clock: FakeClock | None = None, **kwargs: object) -> InstanceLog:
    return InstanceLog("cam", clock=clock or FakeClock(), **kwargs)  # type: ignore[arg-type]


def add(ring: InstanceLog, message: str, run: int = 1) -> LogEntry | None:
    if ring.admit(1, run=run):
        return ring.store(run, "stdout", message)
    ring.hold(LogEntry(0, 0.0, "cam", run, "stdout", "info", message))
    return None


def messages(entries: list[LogEntry]) -> list[str]:
    return [e.message for e in entries]


def test_ring_keeps_the_newest_capacity_entries_and_counts_evictions() -> None:
    """A full ring pushes out its oldest entries and counts each one as evicted."""
    ring = make_log(capacity=3)
    for i in range(5):
        add(ring, f"line {i}")
    assert messages(ring.tail(10)) == ["line 2", "line 3", "line 4"]
    assert len(ring) == 3
    assert ring.stats() | {} == {
        "received": 5,
        "stored": 5,
        "dropped": 0,
        "evicted": 2,
        "notices": 0,
        "truncated": 0,
        "held": 0,
        "buffered": 3,
        "capacity": 3,
        "last_seq": 5,
    }


def test_seq_increases_by_one_for_each_stored_entry() -> None:
    """Seqs start at 1 and increase by one per stored entry, evicted or not."""
    ring = make_log(capacity=2)
    seqs = [add(ring, str(i)).seq for i in range(4)]  # type: ignore[union-attr]
    assert seqs == [1, 2, 3, 4]
    assert [e.seq for e in ring.tail()] == [3, 4]


def test_rate_limit_drops_lines_over_the_burst() -> None:
    """Lines over the burst are not stored but counted as dropped."""
    ring = make_log(rate=10.0, burst=5)
    stored = [add(ring, f"line {i}") for i in range(8)]
    assert sum(e is not None for e in stored) == 5
    assert ring.received == 8
    assert ring.stored == 5
    assert ring.stats()["held"] == 3  # the last lines of the gap, stored when it ends
    assert ring.dropped == 0


def test_admit_many_lets_the_first_lines_through() -> None:
    """admit(n) admits as many of the first lines as the budget holds and drops the rest."""
    ring = make_log(rate=10.0, burst=5)
    assert ring.admit(8) == 5
    assert (ring.received, ring.dropped) == (8, 3)


def test_dropped_notice_and_held_lines_are_stored_first_when_the_budget_comes_back() -> None:
    """After a gap, the next admitted line follows a "<n> lines dropped" entry and the
    gap's last HOLD_LINES lines."""
    clock = FakeClock()
    ring = make_log(clock, rate=100.0, burst=2)
    for i in range(30):
        add(ring, f"line {i}", run=7)
    assert ring.stats()["held"] == HOLD_LINES
    assert ring.dropped == 28 - HOLD_LINES
    clock.now += 0.1  # RESUME_SECONDS: 10 tokens, enough to resume
    add(ring, "after")
    entries = ring.tail(100)
    notice = entries[2]
    assert notice.message == "8 lines dropped by the rate limit"
    assert (notice.source, notice.level, notice.run) == ("supervisor", "warning", 7)
    assert messages(entries[3:]) == [f"line {i}" for i in range(10, 30)] + ["after"]
    assert [e.seq for e in entries] == list(range(1, 25))
    assert ring.notices == 1
    assert ring.stats()["held"] == 0


def test_held_lines_are_kept_per_source() -> None:
    """A flood on stdout does not push stderr's last lines out of the hold."""
    ring = make_log(rate=0.001, burst=1)
    ring.admit(1)
    for i in range(3):
        ring.admit(1)
        ring.hold(LogEntry(0, float(i), "cam", 1, "stderr", "warning", f"err {i}"))
    for i in range(50):
        ring.admit(1)
        ring.hold(LogEntry(0, 10.0 + i, "cam", 1, "stdout", "info", f"out {i}"))
    ring.release()
    kept = messages(ring.tail(100))
    assert kept[:4] == ["30 lines dropped by the rate limit", "err 0", "err 1", "err 2"]
    assert kept[4:] == [f"out {i}" for i in range(30, 50)]


def test_release_ends_a_gap_without_new_input() -> None:
    """release() stores the notice and the held lines, bypassing the rate limit."""
    ring = make_log(rate=0.001, burst=1)
    for i in range(4):
        add(ring, f"line {i}")
    assert ring.in_gap
    ring.release()
    assert messages(ring.tail()) == ["line 0", "line 1", "line 2", "line 3"]  # nothing lost
    assert not ring.in_gap


def test_a_steady_flood_gives_one_notice_per_resume_period_not_per_line() -> None:
    """While flooded, storing resumes only once the bucket holds RESUME_SECONDS of lines."""
    clock = FakeClock()
    ring = make_log(clock, rate=1000.0, burst=200)  # resumes at 100 tokens: every 100 ms
    for _ in range(300):  # 300 ms of a 100 lines/ms flood
        clock.now += 0.001
        for _ in range(100):
            add(ring, "flood")
    assert 2 <= ring.notices <= 3
    assert ring.received == 30_000
    assert ring.received == ring.stored - ring.notices + ring.dropped + ring.stats()["held"]


def test_limited_reports_a_spent_budget_and_recovers_with_time() -> None:
    """limited() is True once the budget is spent and False again after the refill."""
    clock = FakeClock()
    ring = make_log(clock, rate=100.0, burst=3)
    assert not ring.limited()
    ring.admit(5)
    assert ring.limited()
    clock.now += 0.1
    assert not ring.limited()


def test_counters_add_up_after_drops_and_evictions() -> None:
    """received == stored - notices + dropped + held and buffered == stored - evicted."""
    clock = FakeClock()
    ring = make_log(clock, capacity=50, rate=200.0, burst=20)
    for step in range(300):
        clock.now += 0.0005 * (step % 7)
        add(ring, f"line {step}")
    s = ring.stats()
    assert s["dropped"] > 0
    assert s["evicted"] > 0
    assert s["received"] == 300 == s["stored"] - s["notices"] + s["dropped"] + s["held"]
    assert s["buffered"] == s["stored"] - s["evicted"] == 50


def test_tail_returns_the_newest_n() -> None:
    """tail(n) without since_seq returns the newest n entries, oldest first."""
    ring = make_log()
    for i in range(10):
        add(ring, f"line {i}")
    assert messages(ring.tail(3)) == ["line 7", "line 8", "line 9"]
    assert ring.tail(0) == []
    assert make_log().tail() == []


def test_tail_since_seq_pages_forward_without_gaps() -> None:
    """tail(n, since_seq) returns the first n entries after since_seq."""
    ring = make_log()
    for i in range(10):
        add(ring, f"line {i}")
    page = ring.tail(4, since_seq=2)
    assert [e.seq for e in page] == [3, 4, 5, 6]
    assert [e.seq for e in ring.tail(4, since_seq=page[-1].seq)] == [7, 8, 9, 10]
    assert ring.tail(4, since_seq=10) == []


def test_tail_since_an_evicted_seq_starts_at_the_oldest_kept() -> None:
    """A since_seq older than the ring's start returns from the oldest entry still kept."""
    ring = make_log(capacity=3)
    for i in range(10):
        add(ring, f"line {i}")
    assert [e.seq for e in ring.tail(100, since_seq=1)] == [8, 9, 10]


def test_to_dict_has_every_field() -> None:
    """to_dict is the JSON form with all fields."""
    entry = LogEntry(3, 1.5, "cam", 2, "log", "error", "boom", "app", {"k": 1}, "Traceback")
    assert entry.to_dict() == {
        "seq": 3,
        "time": 1.5,
        "instance": "cam",
        "run": 2,
        "source": "log",
        "level": "error",
        "message": "boom",
        "logger": "app",
        "fields": {"k": 1},
        "exc": "Traceback",
    }


def test_cut_head_and_tail_keep_a_bounded_part_with_a_marker() -> None:
    """cut_head keeps the start, cut_tail the end, both within the byte limit plus a marker."""
    assert cut_head("short", 10) == "short"
    assert cut_head("x" * 20, 10) == "x" * 10 + " [... 10 bytes truncated]"
    assert cut_tail("a" * 10 + "END", 3) == "[... 10 bytes truncated] END"
    assert cut_head("é" * 3, 3) == "é [... 3 bytes truncated]"  # no half character


def test_bad_settings_are_refused() -> None:
    """A zero capacity or rate is a ValueError that names the values."""
    with pytest.raises(ValueError, match="capacity=0"):
        InstanceLog("cam", capacity=0)


def test_follower_marks_skipped_entries_after_its_queue_drains() -> None:
    """A full follower queue skips entries and reports them with one marker, in order."""

    async def scenario() -> list[LogEntry | None]:
        follower = Follower("cam", maxsize=2)
        for seq in range(1, 6):
            follower.offer(LogEntry(seq, 0.0, "cam", 1, "stdout", "info", f"line {seq}"))
        got = [await follower.get() for _ in range(3)]
        follower.offer(LogEntry(6, 0.0, "cam", 1, "stdout", "info", "line 6"))
        got.append(await follower.get())
        follower.end()
        got.append(await follower.get())
        return got

    first, second, marker, after, end = asyncio.run(scenario())
    assert [first.seq, second.seq] == [1, 2]  # type: ignore[union-attr]
    assert marker.message == "3 entries skipped (follower too slow)"  # type: ignore[union-attr]
    assert marker.seq == 5  # type: ignore[union-attr]
    assert after.seq == 6  # type: ignore[union-attr]
    assert end is None
