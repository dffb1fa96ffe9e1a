"""The codec's data model: a channel's declaration and one decoded message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .types import BSREAD_TYPES, COMPRESSIONS, ENCODINGS

__all__ = ["Channel", "Message"]


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel of a data header.

    Attributes:
        name: Unique name within a message.
        type: A bsread type name (`BSREAD_TYPES`); normalised to lower case.
        shape: The value's shape in **numpy order** (slowest dimension first); the wire shape is
            the reverse. `()` or `(1,)` for scalars and strings (both go out as `[1]`).
        encoding: Byte order of the value and its timestamp, "little" or "big".
        compression: "none", "bitshuffle_lz4" or "lz4" (receive only) for the value frame.

    Raises:
        ValueError: When a field is not one bsread knows, quoting it.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    encoding: str = "little"
    compression: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"channel name must be a non-empty string, got {self.name!r}")
        type_name = self.type.lower() if isinstance(self.type, str) else self.type
        if type_name not in BSREAD_TYPES:
            raise ValueError(f"channel {self.name!r}: unknown bsread type {self.type!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"channel {self.name!r}: unknown encoding {self.encoding!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"channel {self.name!r}: unknown compression {self.compression!r}")
        shape = tuple(self.shape)
        for dim in shape:
            if type(dim) is not int or dim < 0:
                raise ValueError(f"channel {self.name!r}: bad shape {self.shape!r}")
        object.__setattr__(self, "type", type_name)
        object.__setattr__(self, "shape", shape)

    @property
    def wire_shape(self) -> list[int]:
        """The shape as the data header writes it: fastest dimension first, `[1]` for scalars."""
        return list(reversed(self.shape)) if self.shape else [1]

    def header_entry(self) -> dict[str, Any]:
        """The channel's data-header entry as PSI's senders write it (bsread.md §3.1)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "shape": self.wire_shape,
            "encoding": self.encoding,
        }
        if self.compression != "none":
            entry["compression"] = self.compression
        return entry


@dataclass(slots=True)
class Message:
    """One decoded bsread data message.

    Attributes:
        pulse_id: The beam pulse number.
        global_timestamp: (seconds, nanoseconds) of the message; (0, 0) when the header has none.
        hash: The data header's hash as received (an opaque change detector).
        channels: The channels of the data header, in header order.
        data: Channel name -> value: a numpy array (numpy shape), a numpy scalar for one-element
            values, a str for strings, or None when the value is missing.
        timestamps: Channel name -> (seconds, nanoseconds), or None when the value or its
            timestamp frame is empty.
        format_changed: True on the first message a decoder sees and whenever the header changes.
        nbytes: Total size of all frames of the message in bytes.
    """

    pulse_id: int
    global_timestamp: tuple[int, int]
    hash: str
    channels: list[Channel]
    data: dict[str, Any]
    timestamps: dict[str, tuple[int, int] | None]
    format_changed: bool = False
    nbytes: int = field(default=0)
