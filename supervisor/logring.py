"""One instance's log: a bounded ring of entries behind a token-bucket rate limit, and the
bounded queue of one follower.

Memory stays bounded whatever a program writes: the ring keeps the newest ``capacity`` entries,
and lines over the rate budget are only counted, except the last ``HOLD_LINES`` of a gap, which
are held back. When the budget comes back, or the input goes quiet (see ``release``), one
synthetic entry ("<n> lines dropped by the rate limit") and the held lines are stored, so a
reader sees where the gap is and the last words before a flood ended (a traceback, a summary).
"""

from __future__ import annotations

import asyncio
import itertools
import time as _time
from collections import deque
from collections.abc import Callable
from typing import Any

from .nodeapi.models import LogEntry

__all__ = ["HOLD_LINES", "Follower", "InstanceLog", "cut_head", "cut_tail"]

HOLD_LINES = 20  # the last lines of a gap that are stored when it ends


def cut_head(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` UTF-8 bytes, with a marker saying how many went."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    head = raw[:limit].decode("utf-8", "ignore")
    return f"{head} [... {len(raw) - limit} bytes truncated]"


def cut_tail(text: str, limit: int) -> str:
    """``text`` cut to its last ``limit`` UTF-8 bytes, with a marker saying how many went."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    tail = raw[-limit:].decode("utf-8", "ignore")
    return f"[... {len(raw) - limit} bytes truncated] {tail}"


class InstanceLog:
    """Bounded ring and rate limit of one instance.

    Counters: ``received`` (lines and records seen, synthetic notices excluded), ``stored``
    (entries put in the ring, notices included), ``dropped`` (refused by the rate limit),
    ``evicted`` (pushed out of the ring by newer ones), ``notices`` (synthetic "dropped"
    entries), ``truncated`` (lines cut at the line size limit), ``held`` (refused lines kept to
    be stored when the gap ends). They always satisfy
    ``received == stored - notices + dropped + held`` and ``len(ring) == stored - evicted``.
    """

    RESUME_SECONDS = 0.1

    def __init__(
        self,
        instance: str,
        *,
        capacity: int = 2000,
        rate: float = 5000.0,
        burst: int = 10000,
        on_store: Callable[[LogEntry], None] | None = None,
        on_gap: Callable[[InstanceLog], None] | None = None,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        if capacity < 1 or rate <= 0 or burst < 1:
            raise ValueError(f"bad ring settings: {capacity=} {rate=} {burst=}")
        self.instance = instance
        self.capacity = capacity
        self.rate = rate
        self.burst = burst
        self.on_store = on_store
        self.on_gap = on_gap  # a gap opened: the owner should call ``release`` once quiet
        self._held: dict[str, deque[LogEntry]] = {}  # per source: stdout and stderr both count
        self._held_count = 0
        self._ring: deque[LogEntry] = deque(maxlen=capacity)
        self._clock = clock
        self._tokens = float(burst)
        self._refilled = self.last_input = clock()
        self._pending_drops = 0  # dropped since the last notice
        self._pending_run = 0  # run of the last dropped line
        self._resume = max(1.0, min(float(burst), rate * self.RESUME_SECONDS))
        self._threshold = 1.0  # tokens needed to store: _resume while recovering from a drop
        self._next_seq = 1
        self.received = 0
        self.stored = 0
        self.dropped = 0
        self.evicted = 0
        self.notices = 0
        self.truncated = 0

    def __len__(self) -> int:
        return len(self._ring)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now

    def limited(self) -> bool:
        """True while lines would be refused: callers may then just count them with ``admit``."""
        if self._tokens >= self._threshold:
            return False
        self._refill()
        return self._tokens < self._threshold

    def admit(self, n: int = 1, *, run: int = 0) -> int:
        """Count ``n`` incoming lines; return how many of the first ones may be stored.

        The rest are counted as dropped. After a drop, storing resumes only once the bucket
        holds ``RESUME_SECONDS`` worth of lines, so a steady flood gives one "dropped" notice
        and a block of lines per ``RESUME_SECONDS``, not a notice per line. The notice is
        stored before the admitted lines, with the run of the last dropped one.
        """
        self.received += n
        self.last_input = self._clock()
        if self._tokens < n or self._tokens < self._threshold:
            self._refill()
        if self._tokens < self._threshold:
            k = 0
        else:
            k = min(n, int(self._tokens))
            self._tokens -= k
            self._threshold = 1.0
        if k and self.in_gap:
            self.release()
        if k < n:
            self._drop(n - k, run)
        return k

    def refuse(self, n: int, *, run: int = 0) -> None:
        """Count ``n`` incoming lines as dropped without asking the bucket.

        For a reader that saw ``limited()`` and already threw the lines away: asking ``admit``
        then could admit lines that no longer exist, and they would be counted nowhere.
        """
        self.received += n
        self.last_input = self._clock()
        self._drop(n, run)

    def _drop(self, n: int, run: int) -> None:
        if not self.in_gap and self.on_gap is not None:
            self.on_gap(self)
        self.dropped += n
        self._pending_drops += n
        self._pending_run = run
        self._threshold = self._resume

    def idle(self) -> float:
        """Seconds since the last line came in."""
        return self._clock() - self.last_input

    @property
    def in_gap(self) -> bool:
        """Lines were dropped and their notice is not stored yet."""
        return bool(self._pending_drops or self._held_count)

    def hold(self, entry: LogEntry) -> None:
        """Keep ``entry``, one of the lines ``admit`` just refused, among the gap's last lines.

        Each source keeps its own last lines. Until ``release`` a held line counts as held, not
        dropped; one pushed out by a newer one counts as dropped after all.
        """
        held = self._held.get(entry.source)
        if held is None:
            held = self._held[entry.source] = deque()
        if len(held) == HOLD_LINES:
            held.popleft()
        else:
            self.dropped -= 1
            self._pending_drops -= 1
            self._held_count += 1
        held.append(entry)

    def release(self) -> None:
        """End a gap: store its "dropped" notice and its held lines (bypassing the limit)."""
        if self._pending_drops:
            count, self._pending_drops = self._pending_drops, 0
            self.notices += 1
            message = f"{count} lines dropped by the rate limit"
            self.store(self._pending_run, "supervisor", message, level="warning")
        if self._held_count:
            held = sorted(itertools.chain(*self._held.values()), key=lambda e: e.time)
            self._held.clear()
            self._held_count = 0
            for entry in held:
                self._append(entry)

    def store(
        self,
        run: int,
        source: str,
        message: str,
        *,
        level: str = "info",
        logger: str = "",
        fields: dict[str, Any] | None = None,
        exc: str | None = None,
        time: float | None = None,
    ) -> LogEntry:
        """Store an entry without asking the rate limit (call ``admit`` first)."""
        return self._append(
            LogEntry(
                0,
                _time.time() if time is None else time,
                self.instance,
                run,
                source,
                level,
                message,
                logger,
                fields,
                exc,
            )
        )

    def _append(self, entry: LogEntry) -> LogEntry:
        entry.seq = self._next_seq
        self._next_seq += 1
        if len(self._ring) == self.capacity:
            self.evicted += 1
        self._ring.append(entry)
        self.stored += 1
        if self.on_store is not None:
            self.on_store(entry)
        return entry

    def tail(self, n: int = 100, since_seq: int | None = None) -> list[LogEntry]:
        """The newest ``n`` entries; with ``since_seq``, the first ``n`` entries after it.

        With ``since_seq`` a poller pages forward without gaps: it asks again with the last seq
        it got. Entries already evicted are simply absent.
        """
        ring = self._ring
        if n <= 0 or not ring:
            return []
        # Seqs in the ring are contiguous, so since_seq maps to an index.
        start = len(ring) - n if since_seq is None else since_seq + 1 - ring[0].seq
        start = max(0, start)
        return list(itertools.islice(ring, start, start + n))

    @property
    def last_seq(self) -> int:
        """Seq of the newest stored entry (0 before the first)."""
        return self._next_seq - 1

    def stats(self) -> dict[str, int]:
        """Counters and the ring's fill, for the API."""
        return {
            "received": self.received,
            "stored": self.stored,
            "dropped": self.dropped,
            "evicted": self.evicted,
            "notices": self.notices,
            "truncated": self.truncated,
            "held": self._held_count,
            "buffered": len(self._ring),
            "capacity": self.capacity,
            "last_seq": self._next_seq - 1,
        }


class Follower:
    """The bounded queue of one live follower of an instance.

    When the queue is full, new entries are skipped (counted) until the follower has emptied
    it; then it gets one synthetic "<n> entries skipped (follower too slow)" entry whose seq is
    the last skipped one, so resuming with ``since_seq`` from it stays consistent.
    """

    __slots__ = ("_queue", "ended", "instance", "last_run", "last_skipped_seq", "skipped")

    def __init__(self, instance: str, maxsize: int = 1000) -> None:
        self.instance = instance
        self._queue: asyncio.Queue[LogEntry | None] = asyncio.Queue(maxsize)
        self.skipped = 0
        self.last_skipped_seq = 0
        self.last_run = 0
        self.ended = False

    def offer(self, entry: LogEntry) -> None:
        """Queue a live entry, or count it as skipped (keeps order: no entry after a gap
        overtakes the gap's marker)."""
        if self.skipped or self._queue.full():
            self.skipped += 1
            self.last_skipped_seq = entry.seq
            self.last_run = entry.run
        else:
            self._queue.put_nowait(entry)

    def end(self) -> None:
        """No more entries will come: ``get`` returns None once the queue is drained."""
        self.ended = True
        if self._queue.empty():
            self._queue.put_nowait(None)  # wakes a waiting ``get``

    async def get(self) -> LogEntry | None:
        """The next entry, the "skipped" marker after a gap, or None after ``end``."""
        queue = self._queue
        while True:
            if queue.empty():
                if self.skipped:
                    count, self.skipped = self.skipped, 0
                    return LogEntry(
                        self.last_skipped_seq,
                        _time.time(),
                        self.instance,
                        self.last_run,
                        "supervisor",
                        "warning",
                        f"{count} entries skipped (follower too slow)",
                    )
                if self.ended:
                    return None
            entry = await queue.get()
            if entry is not None:
                return entry
