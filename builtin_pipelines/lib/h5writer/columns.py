"""Datasets as the writer fills them: row by row, buffered into whole chunks, or frame by frame.

Writing one row at a time through h5py costs tens of microseconds per call and dataset; a
hundred scalar channels at 100 Hz would spend most of a core on it. A :class:`Column` keeps
the rows of its current chunk in memory and writes them in one call when the chunk is full
or the file is flushed. An :class:`ImageColumn` gets one chunk per frame, written as it comes.
"""

from __future__ import annotations

from typing import Any, Final

import h5py
import numpy as np

__all__ = ["Column", "ImageColumn"]

_GROW: Final = 64  # rows an image dataset grows by ahead of its frames (chunks cost nothing)


class Column:
    """A dataset filled one row per message, written a chunk of rows at a time.

    Rows start at ``first_row``; earlier rows of the dataset stay zero. A missing value (None)
    leaves its row zero ("" for strings).
    """

    __slots__ = ("_block", "_buffer", "_count", "_dtype", "_row_shape", "_start", "dataset", "name")

    def __init__(self, dataset: h5py.Dataset, first_row: int) -> None:
        self.dataset = dataset
        self.name: str = dataset.name  # the dataset's path, to find it after a reopen
        self._block: int = dataset.chunks[0]
        self._row_shape = dataset.shape[1:]
        self._dtype = None if dataset.dtype.kind == "O" else dataset.dtype
        self._start: int = first_row - first_row % self._block  # the buffer's first row, aligned
        self._count: int = first_row - self._start  # rows of the buffer in use
        self._buffer = self._empty()

    def _empty(self) -> np.ndarray:
        if self._dtype is None:
            return np.full(self._block, "", dtype=object)
        return np.zeros((self._block, *self._row_shape), self._dtype)

    @property
    def end(self) -> int:
        """One past the last row appended."""
        return self._start + self._count

    def append(self, value: Any) -> None:
        """Set the next row to ``value`` (None: zero); a full chunk is written at once."""
        if value is not None:
            self._buffer[self._count] = value
        self._count += 1
        if self._count == self._block:
            self.write()
            self._start += self._block
            self._count = 0
            self._buffer = self._empty()

    def write(self) -> None:
        """Write the rows buffered so far (the dataset grows to :attr:`end` if shorter)."""
        if not self._count:
            return
        end = self.end
        if self.dataset.shape[0] < end:
            self.dataset.resize(end, axis=0)
        self.dataset[self._start : end] = self._buffer[: self._count]

    def trim(self, rows: int) -> None:
        """Make the dataset exactly ``rows`` long (after :meth:`write`)."""
        if self.dataset.shape[0] != rows:
            self.dataset.resize(rows, axis=0)

    def rebind(self, file: h5py.File) -> None:
        """Take the dataset from ``file`` again (after the file was reopened)."""
        self.dataset = file[self.name]


class ImageColumn:
    """A dataset of frames, one chunk per frame, written as finished chunks."""

    __slots__ = ("_extent", "_zeros", "dataset", "dtype", "frame_nbytes", "name", "shape")

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.name: str = dataset.name
        self.dtype: np.dtype = dataset.dtype
        self.shape: tuple[int, ...] = dataset.shape[1:]
        self.frame_nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._zeros = (0,) * len(self.shape)
        self._extent = dataset.shape[0]

    def prepare(self, row: int) -> None:
        """Make room for the frame of ``row`` (the dataset grows in steps)."""
        if row >= self._extent:
            self._extent = row + _GROW
            self.dataset.resize(self._extent, axis=0)

    def write_chunk(self, row: int, chunk: np.ndarray) -> None:
        """Store one finished chunk (compressed, or the frame's raw bytes) as row ``row``."""
        self.dataset.id.write_direct_chunk((row, *self._zeros), chunk)

    def write(self) -> None:
        """Nothing is buffered here: frames are written as their chunks come."""

    def trim(self, rows: int) -> None:
        """Make the dataset exactly ``rows`` long."""
        if self._extent != rows:
            self._extent = rows
            self.dataset.resize(rows, axis=0)

    def rebind(self, file: h5py.File) -> None:
        """Take the dataset from ``file`` again (after the file was reopened)."""
        self.dataset = file[self.name]
        self._extent = self.dataset.shape[0]
