"""Reading a child's stdout or stderr on the event loop, line by line, with bounded work.

Each wakeup reads at most one chunk (64 KiB) with ``os.read`` on the non-blocking fd, so a
program that prints as fast as it can gets one chunk per loop iteration and the REST API keeps
running. While the sink is rate-limited a chunk is only counted (``bytes.count``), never split
or decoded.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Protocol

from .logring import HOLD_LINES, InstanceLog
from .nodeapi.models import LogEntry

__all__ = ["CHUNK_BYTES", "LineSink", "PipeReader", "RingSink"]

# One read per wake-up: 16 KiB (~1000 lines) keeps a flooding child from stalling the event loop
# (64 KiB held ~4500 lines and stalled it ~50 ms on this 2-core machine).
CHUNK_BYTES = 16 * 1024
_PIPE_LEVELS = {"stdout": "info", "stderr": "warning"}


class LineSink(Protocol):
    """Where a PipeReader puts the lines it reads."""

    def limited(self) -> bool:
        """True while lines would be refused: the reader then only counts them."""
        ...

    def lines(self, lines: list[bytes]) -> None:
        """Complete lines, without the line ending; over-long ones already cut and marked."""
        ...

    def dropped(self, n: int, last: list[bytes]) -> None:
        """``n`` lines were read while limited; ``last`` are the final ones (``HOLD_LINES`` at
        most), prepared like the ones passed to ``lines``."""
        ...

    def truncated(self, n: int) -> None:
        """``n`` of the lines passed on were cut at the line size limit."""
        ...


class RingSink:
    """Feeds one pipe's lines into an instance's log: stdout as "info", stderr as "warning"."""

    __slots__ = ("level", "log", "run", "source")

    def __init__(self, ring: InstanceLog, run: int, source: str) -> None:
        self.log = ring
        self.run = run
        self.source = source
        self.level = _PIPE_LEVELS.get(source, "info")

    def limited(self) -> bool:
        return self.log.limited()

    def lines(self, lines: list[bytes]) -> None:
        ring = self.log
        k = ring.admit(len(lines), run=self.run)
        now = time.time()
        run, source, level = self.run, self.source, self.level
        for line in lines[:k] if k < len(lines) else lines:
            ring.store(run, source, line.decode("utf-8", "replace"), level=level, time=now)
        if k < len(lines):
            self._hold(lines[max(k, len(lines) - HOLD_LINES) :], now)

    def dropped(self, n: int, last: list[bytes]) -> None:
        self.log.refuse(n, run=self.run)
        self._hold(last, time.time())

    def _hold(self, lines: list[bytes], now: float) -> None:
        ring, run, source, level = self.log, self.run, self.source, self.level
        for line in lines:
            text = line.decode("utf-8", "replace")
            ring.hold(LogEntry(0, now, ring.instance, run, source, level, text))

    def truncated(self, n: int) -> None:
        self.log.truncated += n


class PipeReader:
    """Reads one pipe fd with ``loop.add_reader`` until EOF. Owns the fd: it closes it.

    Lines end with ``\\n``; a trailing ``\\r`` is removed (CRLF). A line longer than
    ``max_line_bytes`` keeps its first ``max_line_bytes`` bytes plus a marker; the rest up to the
    newline is discarded as it arrives, so a line without end costs no memory.
    """

    def __init__(
        self,
        fd: int,
        sink: LineSink,
        *,
        max_line_bytes: int = 8192,
        on_close: Callable[[PipeReader], None] | None = None,
    ) -> None:
        self.fd = fd
        self.sink = sink
        self.max_line_bytes = max_line_bytes
        self.on_close = on_close
        self.bytes_read = 0
        self.closed = False
        self._partial = b""  # start of the current line, at most max_line_bytes
        self._cut = 0  # bytes of the current line discarded so far
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Make the fd non-blocking and start reading it on ``loop`` (default: the running one)."""
        self._loop = loop or asyncio.get_running_loop()
        os.set_blocking(self.fd, False)
        self._loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # EIO and the like: nothing more will come
        if not data:
            self._flush()
            self.close()
            return
        self.bytes_read += len(data)
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Process one chunk (what ``_on_readable`` read); public for tests and other sources."""
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            self._extend(data)
            return
        sink = self.sink
        rest = data[last_nl + 1 :]
        if sink.limited():
            # Count, and prepare only the last lines (held to show how the flood ended).
            n = data.count(b"\n", 0, last_nl + 1)
            if n > HOLD_LINES:
                last = data[:last_nl].rsplit(b"\n", HOLD_LINES)[1:]
                self._partial, self._cut = b"", 0  # that line ended, dropped
            else:
                last = data[:last_nl].split(b"\n")
            self._finish(last)
            sink.dropped(n, last)
        else:
            lines = data[:last_nl].split(b"\n")
            self._finish(lines)
            sink.lines(lines)
        self._extend(rest)

    def _finish(self, lines: list[bytes]) -> None:
        """Complete ``lines`` in place: join the partial line, strip CR, cut long lines."""
        limit = self.max_line_bytes
        if self._partial or self._cut:
            lines[0] = self._partial + lines[0]
        cut_lines = 0
        for i, line in enumerate(lines):
            if line.endswith(b"\r"):
                line = line[:-1]
                lines[i] = line
            cut = self._cut if i == 0 else 0
            if len(line) > limit or cut:
                cut += max(0, len(line) - limit)
                lines[i] = line[:limit] + b" [... %d bytes truncated]" % cut
                cut_lines += 1
        self._partial, self._cut = b"", 0
        if cut_lines:
            self.sink.truncated(cut_lines)

    def _extend(self, data: bytes) -> None:
        room = self.max_line_bytes - len(self._partial)
        if len(data) > room:
            self._cut += len(data) - room
            data = data[:room]
        if data:
            self._partial += data

    def _flush(self) -> None:
        """Pass on a last line that had no newline before EOF."""
        if self._partial or self._cut:
            self.feed(b"\n")

    def close(self) -> None:
        """Stop reading and close the fd (idempotent); a partial line is discarded."""
        if self.closed:
            return
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.fd)
        try:
            os.close(self.fd)
        except OSError:
            pass
        if self.on_close is not None:
            self.on_close(self)
