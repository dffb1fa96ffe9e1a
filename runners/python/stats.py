"""The runner's counters, reported in every ``status``."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["RateLimit", "Stats"]


class Stats:
    """Totals since start, plus the processing time over the current status interval."""

    __slots__ = (
        "_time_count",
        "_time_max",
        "_time_sum",
        "bytes_in",
        "bytes_out",
        "drops",
        "errors",
        "last_error",
        "last_pulse_id",
        "malformed",
        "messages_in",
        "messages_out",
        "output_drops",
    )

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.drops = 0
        self.output_drops = 0
        self.errors = 0
        self.malformed = 0
        self.last_pulse_id: int | None = None
        self.last_error: str | None = None
        self._time_sum = 0.0
        self._time_count = 0
        self._time_max = 0.0

    def processed(self, seconds: float) -> None:
        """Count one call of the user function that took ``seconds``."""
        self._time_sum += seconds
        self._time_count += 1
        if seconds > self._time_max:
            self._time_max = seconds

    def interval_fields(self) -> dict[str, Any]:
        """The fields of a ``status`` message; starts a new processing-time interval."""
        fields = {
            "messages_in": self.messages_in,
            "bytes_in": self.bytes_in,
            "messages_out": self.messages_out,
            "bytes_out": self.bytes_out,
            "drops": self.drops,
            "output_drops": self.output_drops,
            "errors": self.errors,
            "malformed": self.malformed,
            "last_pulse_id": self.last_pulse_id,
            "last_error": self.last_error,
            "processing_time_avg": self._time_sum / self._time_count if self._time_count else 0.0,
            "processing_time_max": self._time_max,
        }
        self._time_sum = 0.0
        self._time_count = 0
        self._time_max = 0.0
        return fields


class RateLimit:
    """Lets one report through per interval and counts the events in between."""

    __slots__ = ("_next", "_pending", "interval")

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._pending = 0

    def due(self) -> bool:
        """Count one event; True when it should be reported now."""
        self._pending += 1
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True

    def take(self) -> int:
        """The events counted since the last report, including this one; restarts the count."""
        pending, self._pending = self._pending, 0
        return pending
