"""What a file reports: each image chunk as it is written, its progress while it is open, and a
summary when it is closed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["WriteProgress", "WriteSummary", "WrittenFrame"]


@dataclass(frozen=True, slots=True)
class WrittenFrame:
    """One image chunk just written: what a live viewer port forwards.

    Attributes:
        channel: The channel's name.
        row: Its row in the file (the message's index, from 0).
        pulse_id: The message's pulse id.
        shape: The frame's shape, numpy order (rows, columns).
        dtype: Its element type (little-endian).
        compression: ``bslz4`` (``chunk`` is the HDF5 filter's chunk, 12-byte header included)
            or ``none`` (``chunk`` is the frame's bytes, C order).
        chunk: The bytes written; valid only during the callback unless kept by reference.
    """

    channel: str
    row: int
    pulse_id: int
    shape: tuple[int, ...]
    dtype: np.dtype
    compression: Literal["bslz4", "none"]
    chunk: np.ndarray


@dataclass(frozen=True, slots=True)
class WriteSummary:
    """What a closed file holds.

    Attributes:
        path: The file.
        rows: Messages written (rows of every dataset).
        first_pulse_id: Pulse id of the first row; None for an empty file.
        last_pulse_id: Pulse id of the last row; None for an empty file.
        channels: Channel name -> rows where it had a value, in order of first appearance.
        renamed: Datasets an older definition of a channel was moved to (``/data/X/data(1)``).
        reopens: Times the file left SWMR mode to add or rename datasets.
        frames: Image chunks written.
        image_bytes: Their size uncompressed.
        chunk_bytes: Their size as stored.
        missing_pulse_ids: Pulse ids between the first and the last, at the step the caller
            gave, that no row has; None when no step was given.
    """

    path: Path
    rows: int
    first_pulse_id: int | None
    last_pulse_id: int | None
    channels: dict[str, int] = field(default_factory=dict)
    renamed: tuple[str, ...] = ()
    reopens: int = 0
    frames: int = 0
    image_bytes: int = 0
    chunk_bytes: int = 0
    missing_pulse_ids: tuple[int, ...] | None = None

    @property
    def compression_ratio(self) -> float | None:
        """Uncompressed over stored image bytes; None without images."""
        return self.image_bytes / self.chunk_bytes if self.chunk_bytes else None

    def report(self) -> dict[str, Any]:
        """The summary as a JSON object (a program's report)."""
        missing = self.missing_pulse_ids
        return {
            "file": str(self.path),
            "rows": self.rows,
            "first_pulse_id": self.first_pulse_id,
            "last_pulse_id": self.last_pulse_id,
            "missing_pulses": None if missing is None else len(missing),
            "images": self.frames,
            "compression_ratio": self.compression_ratio,
        }


@dataclass(slots=True)
class WriteProgress:
    """The rows of an open file as they are written, counted as they come (no per-row memory).

    Attributes:
        path: The file.
        step: The source's pulse-id step; None: missing pulses are not counted.
        rows: Rows written.
        first: Pulse id of the first row.
        last: Pulse id of the last row.
        lowest: The lowest pulse id written.
        newest: The highest pulse id written.
        late: Rows whose pulse id was not above ``newest`` when they came.
    """

    path: Path
    step: int | None
    rows: int = 0
    first: int | None = None
    last: int | None = None
    lowest: int | None = None
    newest: int | None = None
    late: int = 0

    def add(self, pulse_id: int) -> None:
        """One row written."""
        if self.newest is None or pulse_id > self.newest:
            self.newest = pulse_id
        else:
            self.late += 1
        if self.lowest is None or pulse_id < self.lowest:
            self.lowest = pulse_id
        self.rows += 1
        if self.first is None:
            self.first = pulse_id
        self.last = pulse_id

    @property
    def missing(self) -> int | None:
        """Pulse ids at ``step`` from the lowest to the highest written, less the rows (the
        summary's exact list when rows are neither repeated nor off the step); None without a
        step."""
        if self.step is None or self.lowest is None or self.newest is None:
            return None
        return max(0, (self.newest - self.lowest) // self.step + 1 - self.rows)

    def report(self) -> dict[str, Any]:
        """The progress as a JSON object (a program's report)."""
        return {
            "file": str(self.path),
            "rows": self.rows,
            "first_pulse_id": self.first,
            "last_pulse_id": self.last,
            "missing_pulses": self.missing,
            "late": self.late,
        }

    @staticmethod
    def nothing() -> dict[str, Any]:
        """The report's fields with no file open."""
        return {
            "file": None,
            "rows": 0,
            "first_pulse_id": None,
            "last_pulse_id": None,
            "missing_pulses": None,
            "late": 0,
        }
