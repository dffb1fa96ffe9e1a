"""Aligning several input streams by pulse id: one message per pulse, with every stream's data.

A camera and a bsread stream of scalars, or two cameras, arrive on their own sockets with their
own delays. :class:`PulseMerger` holds each stream's messages by pulse id until the pulse is
complete (every stream has it) and hands pulses out in increasing pulse-id order. A pulse that
stays incomplete is settled after a bounded wait, or at once when every missing stream has
already moved past it (streams are in pulse-id order, so its part will not come): per the
policy it is dropped, or delivered without the missing streams' channels. Parts arriving for a
pulse already handed out are late and dropped. Everything is counted per stream.

Pure logic, no sockets and no clock of its own (the caller passes ``now``): the runner feeds
it and the tests drive it directly.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Merged", "MissingPolicy", "PulseMerger"]

MissingPolicy = Literal["drop", "deliver"]


@dataclass(slots=True)
class _Pulse:
    parts: list[Mapping[str, Any] | None]
    timestamp: Any
    first_seen: float
    present: int = 0


@dataclass(frozen=True, slots=True)
class Merged:
    """One pulse, its channels from every stream that had it (the first stream's win a clash)."""

    pulse_id: int
    timestamp: Any
    data: dict[str, Any]
    missing: tuple[int, ...] = ()  # indexes of the streams without this pulse


@dataclass(slots=True)
class _Counts:
    received: list[int]
    late: list[int]
    missing: list[int]
    duplicates: list[int]
    merged: int = 0
    incomplete_dropped: int = 0
    incomplete_delivered: int = 0
    overflow: int = 0


class PulseMerger:
    """Aligns ``streams`` input streams by pulse id (stream 0 is DATA, the others the merged).

    Args:
        streams: Number of streams, at least 2.
        wait: Seconds an incomplete pulse is held for its missing parts, at most.
        missing: ``drop`` an incomplete pulse, or ``deliver`` it without the missing channels.
        capacity: Pulses held at most; beyond it the oldest is settled at once (counted).
        primary_required: With ``deliver``, a pulse that stream 0 lacks is still dropped (a
            camera pipeline cannot run on scalars alone).
    """

    def __init__(
        self,
        streams: int,
        *,
        wait: float,
        missing: MissingPolicy,
        capacity: int,
        primary_required: bool = False,
    ) -> None:
        if streams < 2:
            raise ValueError(f"merging needs at least 2 streams, got {streams}")
        self.streams = streams
        self.wait = wait
        self.missing_policy = missing
        self.capacity = capacity
        self.primary_required = primary_required
        self._pending: dict[int, _Pulse] = {}
        self._order: list[int] = []  # heap of the pending pulse ids
        self._latest = [-1] * streams  # highest pulse id seen per stream
        self._done_up_to = -1  # highest pulse id handed out or settled
        self.counts = _Counts(
            received=[0] * streams,
            late=[0] * streams,
            missing=[0] * streams,
            duplicates=[0] * streams,
        )

    def add(
        self, stream: int, pulse_id: int, timestamp: Any, data: Mapping[str, Any], now: float
    ) -> None:
        """One message of ``stream``."""
        counts = self.counts
        counts.received[stream] += 1
        if pulse_id <= self._done_up_to:
            counts.late[stream] += 1
            return
        if pulse_id > self._latest[stream]:
            self._latest[stream] = pulse_id
        pulse = self._pending.get(pulse_id)
        if pulse is None:
            pulse = _Pulse([None] * self.streams, timestamp, now)
            self._pending[pulse_id] = pulse
            heapq.heappush(self._order, pulse_id)
        if pulse.parts[stream] is not None:
            counts.duplicates[stream] += 1  # the newer one wins
        else:
            pulse.present += 1
        pulse.parts[stream] = data
        if stream == 0:
            pulse.timestamp = timestamp  # DATA's timestamp is the pulse's

    def ready(self, now: float) -> list[Merged]:
        """Pulses that can be handed out now, in increasing pulse-id order."""
        out: list[Merged] = []
        order = self._order
        while order:
            pulse_id = order[0]
            pulse = self._pending[pulse_id]
            over = len(self._pending) > self.capacity
            if pulse.present < self.streams and not over:
                absent = [i for i, part in enumerate(pulse.parts) if part is None]
                # Every missing stream is past this pulse: its part will not come.
                passed = all(self._latest[i] > pulse_id for i in absent)
                if not passed and now - pulse.first_seen < self.wait:
                    break  # hold it, and every later pulse behind it: order is kept
            heapq.heappop(order)
            del self._pending[pulse_id]
            self._done_up_to = pulse_id
            if over and pulse.present < self.streams:
                self.counts.overflow += 1
            merged = self._settle(pulse_id, pulse, now)
            if merged is not None:
                out.append(merged)
        return out

    def next_deadline(self) -> float | None:
        """When the oldest held pulse must be settled, if one is held."""
        if not self._order:
            return None
        return self._pending[self._order[0]].first_seen + self.wait

    def counters(self) -> dict[str, float]:
        """The counts by name, for the status message (``merge_`` prefixed)."""
        c = self.counts
        named: dict[str, float] = {
            "merge_pulses": c.merged,
            "merge_incomplete_dropped": c.incomplete_dropped,
            "merge_incomplete_delivered": c.incomplete_delivered,
            "merge_overflow": c.overflow,
            "merge_held": len(self._pending),
        }
        for i in range(self.streams):
            named[f"merge_in{i}_received"] = c.received[i]
            named[f"merge_in{i}_missing"] = c.missing[i]
            named[f"merge_in{i}_late"] = c.late[i]
            named[f"merge_in{i}_duplicates"] = c.duplicates[i]
        return named

    def _settle(self, pulse_id: int, pulse: _Pulse, now: float) -> Merged | None:
        counts = self.counts
        absent = tuple(i for i, part in enumerate(pulse.parts) if part is None)
        for i in absent:
            counts.missing[i] += 1
        if absent and (self.missing_policy == "drop" or (self.primary_required and 0 in absent)):
            counts.incomplete_dropped += 1
            return None
        data: dict[str, Any] = {}
        for part in reversed(pulse.parts):  # the first stream's channels are set last: they win
            if part is not None:
                data.update(part)
        if absent:
            counts.incomplete_delivered += 1
        else:
            counts.merged += 1
        return Merged(pulse_id, pulse.timestamp, data, absent)
