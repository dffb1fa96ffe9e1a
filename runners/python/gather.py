"""Gathering a fan-in: the outputs of several workers read as one stream, in pulse-id order.

A fan-out (a PUSH output) deals pulses round-robin to N workers; each worker's output is in
pulse-id order, but the workers run at their own pace, so their outputs interleave out of
order. :class:`PulseGatherer` holds what arrives and hands a pulse on once no stream can
still bring an earlier one: every stream has delivered that pulse id or a later one (a
worker's output only moves forward). A stream that stays silent (a worker stopped or
restarting) holds the others no longer than ``wait``; beyond ``capacity`` held pulses the
oldest goes on at once. A pulse older than one already handed on is late: dropped, counted.

Pure logic, no sockets and no clock of its own (the caller passes ``now``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from typing import Any

from .merge import Merged

__all__ = ["PulseGatherer"]


class PulseGatherer:
    """Puts ``streams`` streams, each in pulse-id order, back into one pulse-id order.

    Args:
        streams: Number of streams (workers), at least 2.
        wait: Seconds a pulse waits for silent streams, at most.
        capacity: Pulses held at most; beyond it the oldest goes on at once (counted).
    """

    def __init__(self, streams: int, *, wait: float, capacity: int) -> None:
        if streams < 2:
            raise ValueError(f"gathering needs at least 2 streams, got {streams}")
        self.streams = streams
        self.wait = wait
        self.capacity = capacity
        # (pulse id, arrival number, first seen, timestamp, data): a heap by pulse id.
        self._held: list[tuple[int, int, float, Any, Mapping[str, Any]]] = []
        self._held_ids: set[int] = set()
        self._arrivals = itertools.count()
        self._latest = [-1] * streams
        self._done_up_to = -1
        self.received = [0] * streams
        self.late = 0
        self.duplicates = 0
        self.overflow = 0
        self.waited = 0  # pulses handed on before every stream had passed them
        self.handed = 0

    def add(
        self, stream: int, pulse_id: int, timestamp: Any, data: Mapping[str, Any], now: float
    ) -> None:
        """One message of ``stream``."""
        self.received[stream] += 1
        if pulse_id > self._latest[stream]:
            self._latest[stream] = pulse_id
        if pulse_id <= self._done_up_to:
            self.late += 1
            return
        if pulse_id in self._held_ids:
            self.duplicates += 1  # the same pulse from two workers: the first one counts
            return
        self._held_ids.add(pulse_id)
        heapq.heappush(self._held, (pulse_id, next(self._arrivals), now, timestamp, data))

    def ready(self, now: float) -> list[Merged]:
        """Pulses that can be handed on now, in increasing pulse-id order."""
        out: list[Merged] = []
        held = self._held
        while held:
            pulse_id, _, first_seen, timestamp, data = held[0]
            passed = min(self._latest) >= pulse_id
            over = len(held) > self.capacity
            if not passed and not over and now - first_seen < self.wait:
                break
            heapq.heappop(held)
            self._held_ids.discard(pulse_id)
            self._done_up_to = pulse_id
            if over and not passed:
                self.overflow += 1
            elif not passed:
                self.waited += 1
            self.handed += 1
            out.append(Merged(pulse_id, timestamp, dict(data)))
        return out

    def next_deadline(self) -> float | None:
        """When the oldest held pulse goes on without waiting longer, if one is held."""
        return self._held[0][2] + self.wait if self._held else None

    def counters(self) -> dict[str, float]:
        """The counts by name, for the status message (``gather_`` prefixed)."""
        named: dict[str, float] = {
            "gather_pulses": self.handed,
            "gather_late": self.late,
            "gather_duplicates": self.duplicates,
            "gather_overflow": self.overflow,
            "gather_waited": self.waited,
            "gather_held": len(self._held),
        }
        for i, count in enumerate(self.received):
            named[f"gather_in{i}_received"] = count
        return named
