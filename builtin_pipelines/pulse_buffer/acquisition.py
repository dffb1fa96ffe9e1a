"""One acquisition: exactly the pulses from a start to a stop pulse id (both inclusive) to a file.

Its pulses may be in the past (still in the buffer), in the future (written as they come), or
both. ``"now"`` is the newest pulse the buffer holds when the request is seen; an open stop
(None) waits for a stop request. Each acquisition writes in a thread of its own, fed through
a bounded queue: the buffer's loop never waits for a disk, and the past is written while the
present keeps coming (a thousand 5-Mpx frames take seconds to compress). If the writer falls
further behind than the queue holds, the pulses it could not take are missing, and counted.

The file is the SwissFEL layout of :class:`builtin_pipelines.lib.h5writer.SwissFelFile`. When the
acquisition ends, its report says what it wrote: first and last pulse id, count, and the pulse
ids missing between start and stop at the source's pulse-id step.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from builtin_pipelines.lib.h5writer import SwissFelFile

from .ring import Buffered

__all__ = ["MISSING_LISTED", "Acquisition", "AcquisitionSpec", "parse_spec"]

log = logging.getLogger("pipevisor.pulse_buffer")

MISSING_LISTED = 1000
"""Missing pulse ids listed in a report at most (all are counted)."""

State = Literal["writing", "done", "failed", "aborted", "skipped"]
PulseRef = int | Literal["now"]
_KEYS = frozenset({"start_pulse_id", "stop_pulse_id", "output_file", "general", "compression"})


@dataclass(frozen=True, slots=True)
class AcquisitionSpec:
    """What was asked: the range, the file and its metadata."""

    start: PulseRef
    stop: PulseRef | None
    output_file: Path
    general: Mapping[str, str]
    compression: Literal["bitshuffle_lz4", "none"]


def _pulse_ref(value: Any, key: str) -> PulseRef:
    if value == "now":
        return "now"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a pulse id (an integer >= 0) or 'now', got {value!r}")
    return value


def parse_spec(
    name: str, raw: Any, resolve: Callable[[Any], Path], compression: str
) -> AcquisitionSpec:
    """Read one entry of the ``acquisitions`` key.

    Raises:
        ValueError: a key is missing or wrong; the message names the acquisition and the key.
    """
    try:
        if not isinstance(raw, Mapping):
            raise ValueError(f"must be an object, got {raw!r}")
        if unknown := set(raw) - _KEYS:
            raise ValueError(f"unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
        start = _pulse_ref(raw.get("start_pulse_id", "now"), "start_pulse_id")
        stop_value = raw.get("stop_pulse_id")
        stop = None if stop_value is None else _pulse_ref(stop_value, "stop_pulse_id")
        if isinstance(start, int) and isinstance(stop, int) and stop < start:
            raise ValueError(f"stop_pulse_id {stop} is before start_pulse_id {start}")
        if "output_file" not in raw:
            raise ValueError("output_file is required")
        path = resolve(raw["output_file"])
        general = raw.get("general") or {}
        if not isinstance(general, Mapping) or not all(
            isinstance(v, str) for v in general.values()
        ):
            raise ValueError(f"general must be an object of strings, got {general!r}")
        chosen = raw.get("compression", compression)
        if chosen not in ("bitshuffle_lz4", "none"):
            raise ValueError(f"compression must be 'bitshuffle_lz4' or 'none', got {chosen!r}")
    except ValueError as exc:
        raise ValueError(f"acquisition {name!r}: {exc}") from None
    return AcquisitionSpec(start, stop, path, dict(general), chosen)


class Acquisition:
    """The life of one acquisition. The buffer's loop calls :meth:`offer` with every message
    and :meth:`request_stop`; a thread of its own writes the file.

    Args:
        name: Its id.
        spec: What was asked.
        newest: The newest pulse id the buffer holds now (resolves ``now``).
        past: The messages the buffer holds from the start on, oldest first.
        step: The source's pulse-id step (missing pulses are counted in steps of it).
        open_file: Creates the file (raises if it cannot).
        backlog: Messages the writer may lag behind by, at most.
        skip: Why it is not done at all (its file exists): reported as ``skipped``.
    """

    def __init__(
        self,
        name: str,
        spec: AcquisitionSpec,
        *,
        newest: int | None,
        past: Iterable[Buffered],
        step: int,
        open_file: Callable[[AcquisitionSpec], SwissFelFile],
        backlog: int,
        skip: str | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.step = step
        self.state: State = "writing"
        self.start: int | None = newest if spec.start == "now" else spec.start
        self.stop: int | None = newest if spec.stop == "now" else spec.stop
        if self.stop is None and spec.stop == "now":
            self.stop = self.start  # "now" on an empty buffer: stop at once
        self.rows = 0
        self.first: int | None = None
        self.last: int | None = None
        self.missing: list[int] = []
        self.missing_count = 0
        self.dropped = 0  # messages the writer could not take in time
        self.error: str | None = None
        self.started_at = time.time()
        self.ended_at: float | None = None
        self._expected = self.start  # the next pulse id the file should get
        self._open_file = open_file
        self._queue: queue.Queue[Buffered | tuple[str, int | None]] = queue.Queue(backlog)
        self._offered_up_to: int | None = None  # newest pulse handed to the thread
        self._thread = threading.Thread(target=self._run, name=f"acquisition-{name}", daemon=True)
        if skip is not None:
            self.state, self.error, self.ended_at = "skipped", skip, self.started_at
            return
        for item in past:
            self._put(item)
        self._thread.start()

    # -- the buffer's loop -------------------------------------------------------------------

    def offer(self, item: Buffered) -> None:
        """A message of the stream, in pulse-id order."""
        if self.state == "writing" and (self.start is None or item.pulse_id >= self.start):
            self._put(item)

    def request_stop(self, stop: PulseRef, newest: int | None) -> None:
        """Stop at a pulse id, or ``now``: the newest the buffer holds."""
        if self._thread.is_alive():
            self.spec = dataclasses.replace(self.spec, stop=stop)
            self._command("stop", newest if stop == "now" else stop)

    def abort(self, why: str) -> None:
        """End now, keeping what was written (the file stays readable)."""
        if self._thread.is_alive():
            self.error = why
            self._command("abort", None)

    def close(self, timeout: float | None = None) -> None:
        """At the program's end: write what is queued, close the file, wait for the thread."""
        if self._thread.is_alive():
            self._command("end", None)
            self._thread.join(timeout)

    @property
    def active(self) -> bool:
        return self.state == "writing"

    def report(self) -> dict[str, Any]:
        """What it is doing or did, for the API."""
        return {
            "state": self.state,
            "output_file": str(self.spec.output_file),
            "start_pulse_id": self.start,
            "stop_pulse_id": self.stop,
            "requested": {"start": self.spec.start, "stop": self.spec.stop},
            "pulses": self.rows,
            "first_pulse_id": self.first,
            "last_pulse_id": self.last,
            "missing_count": self.missing_count,
            "missing_pulse_ids": self.missing[:MISSING_LISTED],
            "dropped_by_writer": self.dropped,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    # -- the writer thread -------------------------------------------------------------------

    def _put(self, item: Buffered) -> None:
        try:
            self._queue.put_nowait(item)
            self._offered_up_to = item.pulse_id
        except queue.Full:
            self.dropped += 1  # counted as missing when the writer sees the gap

    def _command(self, what: str, value: int | None) -> None:
        self._queue.put((what, value))  # commands wait for room: they are never lost

    def _run(self) -> None:
        try:
            file = self._open_file(self.spec)
        except Exception as exc:
            self._end("failed", f"cannot create {self.spec.output_file}: {exc}")
            return
        log.info(
            "acquisition %s: pulses %s to %s into %s",
            self.name,
            self.start if self.start is not None else "the next",
            self.stop if self.stop is not None else "a stop request",
            self.spec.output_file,
        )
        seen: int | None = None  # newest pulse id taken from the queue
        try:
            while True:
                if self.stop is not None and seen is not None and seen >= self.stop:
                    break
                entry = self._queue.get()
                if isinstance(entry, tuple):
                    what, value = entry
                    if what == "stop":
                        self.stop = value if value is not None else (self.last or self.start)
                        continue
                    if what == "abort":
                        file.close()
                        self._end("aborted", self.error)
                        return
                    break  # "end"
                seen = entry.pulse_id
                if self.start is None:
                    self.start = self._expected = entry.pulse_id
                if entry.pulse_id < self.start or (
                    self.stop is not None and entry.pulse_id > self.stop
                ):
                    continue
                self._count_missing(entry.pulse_id)
                file.write(entry.pulse_id, entry.data)
                self.rows += 1
                self.first = entry.pulse_id if self.first is None else self.first
                self.last = entry.pulse_id
                self._expected = entry.pulse_id + self.step
            if self.stop is not None and (seen is not None and seen >= self.stop):
                self._count_missing(self.stop + 1)  # the end of the range that never came
            summary = file.close()
        except Exception as exc:
            try:
                file.close()
            except Exception:
                log.exception("acquisition %s: closing its file failed", self.name)
            self._end("failed", f"writing {self.spec.output_file} failed: {exc}")
            return
        self._end("done", None)
        log.info(
            "acquisition %s done: %d pulses (%s to %s), %d missing, %s",
            self.name,
            self.rows,
            self.first,
            self.last,
            self.missing_count,
            summary.path,
        )

    def _count_missing(self, before: int) -> None:
        """The pulses from the next expected one up to ``before`` (excluded) never came."""
        if self._expected is None:
            return
        gap = range(self._expected, before, self.step)
        self.missing_count += len(gap)
        room = MISSING_LISTED - len(self.missing)
        if room > 0:
            self.missing.extend(gap[:room])
        self._expected = max(self._expected, before)

    def _end(self, state: State, error: str | None) -> None:
        if error is not None:
            log.error("acquisition %s %s: %s", self.name, state, error)
        self.error = error
        self.ended_at = time.time()
        self.state = state
