"""The last N messages of a stream, by pulse id, bounded by count and by bytes."""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Buffered", "PulseRing", "message_bytes"]


@dataclass(frozen=True, slots=True)
class Buffered:
    """One message held: its pulse id, timestamp, channels and their size."""

    pulse_id: int
    timestamp: Any
    data: Mapping[str, Any]
    nbytes: int


def message_bytes(data: Mapping[str, Any]) -> int:
    """Bytes the message's values hold (arrays by their buffers, the rest a few bytes each)."""
    total = 0
    for value in data.values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, str | bytes):
            total += len(value)
        else:
            total += 8
    return total


class PulseRing:
    """Messages in increasing pulse-id order; the oldest go when either bound is passed.

    A message whose pulse id is not above the newest one held is refused (counted): a
    stream's pulse ids only grow, and an acquisition must never see one twice.

    Args:
        max_messages: Messages held at most.
        max_bytes: Bytes of values held at most (the newest message is always kept).
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a buffer holds at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[Buffered] = deque()
        self._ids: deque[int] = deque()
        self.nbytes = 0
        self.received = 0
        self.evicted = 0
        self.out_of_order = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def oldest(self) -> int | None:
        return self._ids[0] if self._ids else None

    @property
    def newest(self) -> int | None:
        return self._ids[-1] if self._ids else None

    def append(self, pulse_id: int, timestamp: Any, data: Mapping[str, Any]) -> Buffered | None:
        """Hold a message; None (counted) when its pulse id is not above the newest."""
        self.received += 1
        if self._ids and pulse_id <= self._ids[-1]:
            self.out_of_order += 1
            return None
        item = Buffered(pulse_id, timestamp, data, message_bytes(data))
        self._items.append(item)
        self._ids.append(pulse_id)
        self.nbytes += item.nbytes
        while len(self._items) > 1 and (
            len(self._items) > self.max_messages or self.nbytes > self.max_bytes
        ):
            gone = self._items.popleft()
            self._ids.popleft()
            self.nbytes -= gone.nbytes
            self.evicted += 1
        return item

    def between(self, first: int, last: int | None) -> Iterator[Buffered]:
        """The messages held with ``first <= pulse_id <= last`` (no upper bound: None)."""
        start = bisect.bisect_left(self._ids, first)
        for item in itertools.islice(self._items, start, None):
            if last is not None and item.pulse_id > last:
                return
            yield item

    def resize(self, max_messages: int, max_bytes: int) -> None:
        """New bounds; the oldest go now if they are passed."""
        self.max_messages, self.max_bytes = max_messages, max_bytes
        while len(self._items) > 1 and (len(self._items) > max_messages or self.nbytes > max_bytes):
            gone = self._items.popleft()
            self._ids.popleft()
            self.nbytes -= gone.nbytes
            self.evicted += 1
