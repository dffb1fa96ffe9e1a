"""One HDF5 file in the SwissFEL layout, written one message (row) at a time, crash-safe.

Crash safety is HDF5's SWMR mode: once the file is in it, every flush leaves a file that a
reader can open whatever happens to the writer next, SIGKILL included. The file enters SWMR
mode at its first flush; flushes happen every ``flush_rows`` rows and every ``flush_seconds``
(a background thread flushes a stream that paused). After a crash, open the file with
``h5py.File(path, "r", swmr=True)``, or clear its "open for writing" mark with
``h5clear -s path`` (Debian's hdf5-tools) and open it as any file; every dataset holds at least
the rows of the last flush (some may hold a few more: use the shortest).

SWMR forbids adding or renaming datasets. A channel that appears later (or whose first value
arrives later, or whose definition changes) makes the writer flush, close the file, reopen it,
change it and go back to SWMR mode: about 2 ms, counted in ``WriteSummary.reopens``. During
those milliseconds the file is not crash-safe.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from .chunks import ChunkCompressor, filter_options
from .columns import Column, ImageColumn
from .layout import (
    DATA,
    LIBVER,
    Definition,
    create_data,
    create_flags,
    definition_of,
    free_name,
    general_values,
    validate_channel_name,
    write_general,
)
from .reports import WriteSummary, WrittenFrame

__all__ = ["COMPRESSIONS", "SwissFelFile"]

log = logging.getLogger(__name__)

COMPRESSIONS = ("bitshuffle_lz4", "none")
Compression = Literal["bitshuffle_lz4", "none"]
_INT64 = (-(2**63), 2**63)


class _Channel:
    """The datasets of one channel and what is known of its values."""

    __slots__ = ("count", "data", "definition", "group", "present", "pulse_id")

    def __init__(self, group: str, pulse_id: Column, present: Column) -> None:
        self.group = group
        self.pulse_id = pulse_id
        self.present = present
        self.data: Column | ImageColumn | None = None
        self.definition: Definition | None = None
        self.count = 0

    def columns(self) -> Iterable[Column | ImageColumn]:
        yield self.pulse_id
        yield self.present
        if self.data is not None:
            yield self.data


class SwissFelFile:
    """An HDF5 file in sf_bsread_writer's layout (see :mod:`.layout`), one row per message.

    Images (values of 2 or more dimensions) are compressed with bitshuffle LZ4 in a thread
    pool and written as finished chunks of the HDF5 filter 32008, one frame per chunk; other
    values are buffered and written a chunk at a time. Arrays handed to :meth:`write` are read
    after it returns (until their chunk is written): do not change them meanwhile. The methods
    are thread-safe.

    Args:
        path: The file to create.
        general: ``/general`` entries (``created``, ``instrument``, ``process``, ``user``...).
        compression: Of images: ``bitshuffle_lz4`` or ``none``.
        chunk_rows: Rows per chunk of scalar, string and flag datasets (waveforms get fewer
            when their rows are long).
        flush_rows: Flush after this many rows.
        flush_seconds: Flush when the oldest unflushed row is this old, also when no message
            comes (None: only by rows).
        threads: Compression threads, a core each (0: compress in the caller's thread).
        overwrite: Replace an existing file instead of refusing it.
        on_frame: Called with each image chunk after it is written (a live viewer port);
            errors it raises are logged and otherwise ignored.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        OSError: The file cannot be created.
        ValueError: An argument is invalid (the message quotes it).
    """

    def __init__(
        self,
        path: str | Path,
        general: Mapping[str, str] | None = None,
        *,
        compression: Compression = "bitshuffle_lz4",
        chunk_rows: int = 100,
        flush_rows: int = 100,
        flush_seconds: float | None = 1.0,
        threads: int = 2,
        overwrite: bool = False,
        on_frame: Callable[[WrittenFrame], Any] | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        for name, value in (("chunk_rows", chunk_rows), ("flush_rows", flush_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if flush_seconds is not None and not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be positive or None, got {flush_seconds!r}")
        values = general_values(general)
        self.path = Path(path)
        self.compression: Compression = compression
        self.chunk_rows = chunk_rows
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._on_frame = on_frame
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
        self._file = h5py.File(self.path, "w" if overwrite else "x", libver=LIBVER)
        try:
            write_general(self._file, values)
            self._file.create_group(DATA)
        except BaseException:
            self._file.close()
            raise
        self._compressor: ChunkCompressor[tuple[ImageColumn, str, int, int]] | None = (
            ChunkCompressor(threads) if compression == "bitshuffle_lz4" else None
        )
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._rows = 0
        self._pulse_ids = array("q")
        self._swmr = False
        self._flushed_rows = 0
        self._flushed_at = time.monotonic()
        self._renamed: list[str] = []
        self._reopens = 0
        self._frames = 0
        self._image_bytes = 0
        self._chunk_bytes = 0
        self._on_frame_failed = False
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_seconds is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="h5writer-flush", daemon=True
            )
            self._flusher.start()

    # -- the public face -------------------------------------------------------------------

    @property
    def rows(self) -> int:
        """Messages written so far."""
        return self._rows

    def write(self, pulse_id: int, channels: Mapping[str, Any]) -> None:
        """Append one row: the message ``pulse_id`` with its channels' values (None: missing).

        Channels known from earlier rows and absent here get an empty row.

        Raises:
            TypeError: A value is of a type bsread cannot carry; nothing was written.
            ValueError: A channel name cannot be a group name, or the file is closed; nothing
                was written.
        """
        pulse_id = operator.index(pulse_id)
        if not _INT64[0] <= pulse_id < _INT64[1]:
            raise ValueError(f"pulse id {pulse_id} does not fit in int64")
        staged: dict[str, tuple[Definition, Any] | None] = {}
        known = self._channels
        for name, value in channels.items():
            if name not in known:
                validate_channel_name(name)
            try:
                staged[name] = definition_of(value)
            except TypeError as exc:
                raise TypeError(f"channel {name!r}: {exc}") from None
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path} is closed")
            changes = [
                (name, found)
                for name, found in staged.items()
                if name not in known or (found is not None and known[name].definition != found[0])
            ]
            if changes:
                self._restructure(changes)
            self._append(pulse_id, staged)
            if self._due(time.monotonic()):
                self._flush()

    def flush(self) -> None:
        """Write everything written so far to the file and make it crash-safe (SWMR)."""
        with self._lock:
            if not self._closed:
                self._flush()

    def close(self, *, missing_step: int | None = None) -> WriteSummary:
        """Flush, trim every dataset to the rows written, close; the summary of the file.

        Args:
            missing_step: The pulse-id step of the source (1 at 100 Hz at SwissFEL): pulse
                ids in steps of it between the first and the last that no row has are listed
                in the summary. None: not computed.
        """
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._flush(enter_swmr=False)
                finally:
                    if self._compressor is not None:
                        self._compressor.close()
                    self._file.close()
            return self._summary(missing_step)

    def __enter__(self) -> SwissFelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows --------------------------------------------------------------------------------

    def _append(self, pulse_id: int, staged: Mapping[str, tuple[Definition, Any] | None]) -> None:
        row = self._rows
        for name, channel in self._channels.items():
            found = staged.get(name)
            data = channel.data
            if found is None:
                channel.pulse_id.append(None)
                channel.present.append(None)
                if isinstance(data, Column):
                    data.append(None)
                continue
            channel.pulse_id.append(pulse_id)
            channel.present.append(1)
            channel.count += 1
            if isinstance(data, ImageColumn):
                data.prepare(row)
                self._submit(data, name, row, pulse_id, found[1])
            else:
                assert data is not None
                data.append(found[1])
        self._rows = row + 1
        self._pulse_ids.append(pulse_id)
        self._write_chunks(wait=False)

    def _submit(
        self, column: ImageColumn, name: str, row: int, pulse_id: int, frame: np.ndarray
    ) -> None:
        frame = np.ascontiguousarray(frame, dtype=column.dtype)
        if self._compressor is not None:
            self._compressor.submit((column, name, row, pulse_id), frame)
        else:
            self._store_chunk(column, name, row, pulse_id, frame.reshape(-1).view(np.uint8))

    def _write_chunks(self, *, wait: bool) -> None:
        if self._compressor is None:
            return
        for (column, name, row, pulse_id), chunk in self._compressor.ready(wait=wait):
            self._store_chunk(column, name, row, pulse_id, chunk)

    def _store_chunk(
        self, column: ImageColumn, name: str, row: int, pulse_id: int, chunk: np.ndarray
    ) -> None:
        column.write_chunk(row, chunk)
        self._frames += 1
        self._image_bytes += column.frame_nbytes
        self._chunk_bytes += chunk.nbytes
        if self._on_frame is None:
            return
        frame = WrittenFrame(
            channel=name,
            row=row,
            pulse_id=pulse_id,
            shape=column.shape,
            dtype=column.dtype,
            compression="none" if self._compressor is None else "bslz4",
            chunk=chunk,
        )
        try:
            self._on_frame(frame)
        except Exception:
            if not self._on_frame_failed:  # once per file: it would fail for every frame
                self._on_frame_failed = True
                log.exception("the frame callback of %s failed (not reported again)", self.path)

    # -- structure -------------------------------------------------------------------------

    def _restructure(self, changes: list[tuple[str, tuple[Definition, Any] | None]]) -> None:
        """Add channels and data datasets, and move old definitions to ``data(N)``."""
        reopened = self._swmr
        if reopened:
            self._reopen()
        else:
            self._write_chunks(wait=True)  # an image dataset may be trimmed and moved
        row = self._rows
        file = self._file
        for name, found in changes:
            channel = self._channels.get(name)
            if channel is None:
                group = file[DATA].create_group(name)
                pulse_id, present = create_flags(group, row, self.chunk_rows)
                channel = _Channel(group.name, Column(pulse_id, row), Column(present, row))
                self._channels[name] = channel
            if found is None:
                continue
            definition = found[0]
            group = file[channel.group]
            if channel.data is not None:
                channel.data.write()
                channel.data.trim(row)
                moved = free_name(group)
                group.move(DATA, moved)
                self._renamed.append(f"{group.name}/{moved}")
                log.info(
                    "channel %r changed from %s to %s at row %d: its earlier values are in %s",
                    name,
                    channel.definition.describe() if channel.definition else "?",
                    definition.describe(),
                    row,
                    f"{group.name}/{moved}",
                )
            image = definition.kind == "image"
            image_filter = None
            if image and self._compressor is not None:
                assert definition.dtype is not None
                image_filter = filter_options(definition.dtype.itemsize)
            dataset = create_data(group, DATA, definition, row, self.chunk_rows, image_filter)
            channel.data = ImageColumn(dataset) if image else Column(dataset, row)
            channel.definition = definition
        if reopened:
            self._flush()  # back to SWMR at once

    def _reopen(self) -> None:
        """Leave SWMR mode: flush, close and reopen the file (SWMR cannot add datasets)."""
        self._flush()
        self._file.close()
        self._file = h5py.File(self.path, "r+", libver=LIBVER)
        self._swmr = False
        self._reopens += 1
        for channel in self._channels.values():
            for column in channel.columns():
                column.rebind(self._file)

    # -- flushing --------------------------------------------------------------------------

    def _due(self, now: float) -> bool:
        unflushed = self._rows - self._flushed_rows
        return unflushed > 0 and (
            unflushed >= self.flush_rows
            or (self.flush_seconds is not None and now - self._flushed_at >= self.flush_seconds)
        )

    def _flush(self, *, enter_swmr: bool = True) -> None:
        """Write what is buffered, trim every dataset to the rows, flush (entering SWMR)."""
        self._write_chunks(wait=True)
        rows = self._rows
        for channel in self._channels.values():
            for column in channel.columns():
                column.write()
                column.trim(rows)
        if enter_swmr and not self._swmr and rows:
            self._file.swmr_mode = True
            self._swmr = True
        self._file.flush()
        self._flushed_rows = rows
        self._flushed_at = time.monotonic()

    def _flush_loop(self) -> None:
        assert self.flush_seconds is not None
        period = min(self.flush_seconds / 2, 0.5)
        failed = False
        while not self._stop.wait(period):
            try:
                with self._lock:
                    if not self._closed and self._due(time.monotonic()):
                        self._flush()
                failed = False
            except Exception:
                if not failed:  # once until a flush succeeds again
                    log.exception("flushing %s failed", self.path)
                failed = True

    # -- summary ---------------------------------------------------------------------------

    def _summary(self, missing_step: int | None) -> WriteSummary:
        ids = np.frombuffer(self._pulse_ids, dtype=np.int64) if self._pulse_ids else None
        missing: tuple[int, ...] | None = None
        if missing_step is not None:
            if missing_step < 1:
                raise ValueError(f"missing_step must be at least 1, got {missing_step}")
            missing = ()
            if ids is not None:
                expected = np.arange(ids.min(), ids.max() + 1, missing_step, dtype=np.int64)
                missing = tuple(int(p) for p in np.setdiff1d(expected, ids))
        return WriteSummary(
            path=self.path,
            rows=self._rows,
            first_pulse_id=None if ids is None else int(ids[0]),
            last_pulse_id=None if ids is None else int(ids[-1]),
            channels={name: channel.count for name, channel in self._channels.items()},
            renamed=tuple(self._renamed),
            reopens=self._reopens,
            frames=self._frames,
            image_bytes=self._image_bytes,
            chunk_bytes=self._chunk_bytes,
            missing_pulse_ids=missing,
        )
