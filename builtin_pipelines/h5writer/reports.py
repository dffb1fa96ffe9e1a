"""What a file reports: each image chunk as it is written, and a summary when it is closed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["WriteSummary", "WrittenFrame"]


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
