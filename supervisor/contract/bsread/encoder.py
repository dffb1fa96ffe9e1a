"""bsread sender side: values in, frames out (bsread.md §3.1)."""

from __future__ import annotations

import hashlib
import json
import math
import operator
import struct
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np

from .compression import bitshuffle_compress
from .message import Channel
from .types import STRING, dtype_for, type_for_dtype

__all__ = ["Encoder"]

_SENDABLE_COMPRESSIONS: Final = ("none", "bitshuffle_lz4")
_MAX_PULSE_ID: Final = 2**64 - 1
_NS_PER_S: Final = 1_000_000_000
_TIMESTAMP: Final = {"little": struct.Struct("<qq"), "big": struct.Struct(">qq")}
_EMPTY: Final = b""
# Target dtype kind -> value kinds a declared channel converts without losing meaning.
_CONVERTIBLE_KINDS: Final = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}


class Encoder:
    """Encodes one stream's messages; keep one encoder per output socket.

    The data header (frame 1) and its hash are built once and reused until the channel set,
    a type, a shape or a compression changes, so the steady state costs one small main header.
    Uncompressed C-contiguous little-endian arrays go out zero-copy: the frames reference the
    caller's memory, which must not change until the frames are sent.

    Args:
        compression: Value compression for channels not declared in `channels`:
            "none" or "bitshuffle_lz4" (plain lz4 is never sent, bsread.md §1.11).
        header_compression: Compression of the data header, "none" or "bitshuffle_lz4".

    Raises:
        ValueError: For any other compression.
    """

    def __init__(self, compression: str = "none", header_compression: str = "none") -> None:
        for option, value in (
            ("compression", compression),
            ("header_compression", header_compression),
        ):
            if value not in _SENDABLE_COMPRESSIONS:
                raise ValueError(f"{option} must be one of {_SENDABLE_COMPRESSIONS}, got {value!r}")
        self._compression = compression
        self._header_compression = header_compression
        self._known: dict[str, Channel] = {}
        self._layout: tuple[Channel, ...] | None = None
        self._header_frame = _EMPTY
        self._hash = ""

    @property
    def hash(self) -> str:
        """The hash of the data header of the last message encoded ("" before the first)."""
        return self._hash

    def encode(
        self,
        data: Mapping[str, Any],
        pulse_id: int,
        timestamp: tuple[int, int] | float | None = None,
        channels: Mapping[str, Channel] | None = None,
        *,
        channel_timestamps: Mapping[str, tuple[int, int] | None] | None = None,
        hints: Mapping[str, Channel] | None = None,
    ) -> list[bytes | memoryview]:
        """Encode one message.

        Args:
            data: Channel name -> value: a numpy array or scalar, a Python bool, int (int64),
                float (float64) or str, a list (via `np.asarray`), or None for a missing value.
                An empty str or empty array arrives as missing too: bsread cannot tell them apart.
            pulse_id: The pulse number, 0 <= pulse_id < 2**64.
            timestamp: (seconds, nanoseconds), float seconds, or None for now. Every channel's
                timestamp frame carries it too, as PSI's Python sender does, unless
                `channel_timestamps` gives the channel its own.
            channels: Optional declarations, used as given (type, shape, encoding, compression).
                Declared channels come first, in declaration order; a declared channel missing
                from `data` is sent as missing. A None value of an undeclared channel keeps the
                type and shape of its hint, else those this encoder last sent for it, else
                float64 `[1]`.
            channel_timestamps: Optional channel name -> (seconds, nanoseconds) for its
                timestamp frame, packed as given (two int64), e.g. an IOC's per-record
                timestamps being republished; a channel absent or None here carries `timestamp`.
            hints: Optional channel name -> the type and shape a missing (None) value of an
                undeclared channel is declared with, e.g. a received data header's channel;
                its encoding and compression are not taken (this encoder's are).

        Returns:
            The 2 + 2N frames, ready for `socket.send_multipart(frames, copy=False)`.

        Raises:
            ValueError: For a value or declaration bsread cannot carry (naming the channel),
                a bad pulse id or a bad timestamp.
        """
        sec, ns = _split_timestamp(timestamp)
        pulse_id = operator.index(pulse_id)
        if not 0 <= pulse_id <= _MAX_PULSE_ID:
            raise ValueError(f"pulse_id must be in [0, 2**64), got {pulse_id}")
        names: Iterable[str] = data
        if channels:
            names = [*channels, *(name for name in data if name not in channels)]
        layout: list[Channel] = []
        payloads: list[bytes | memoryview | None] = []
        for name in names:
            declared = channels.get(name) if channels else None
            hint = hints.get(name) if hints else None
            channel, payload = self._prepare(name, data.get(name), declared, hint)
            layout.append(channel)
            payloads.append(payload)
        layout_key = tuple(layout)
        if layout_key != self._layout:
            self._rebuild_header(layout_key)
        main = (
            f'{{"htype":"bsr_m-1.1","pulse_id":{pulse_id},'
            f'"global_timestamp":{{"sec":{sec},"ns":{ns}}},'
            f'"hash":"{self._hash}","dh_compression":"{self._header_compression}"}}'
        )
        frames: list[bytes | memoryview] = [main.encode(), self._header_frame]
        stamps = {encoding: packer.pack(sec, ns) for encoding, packer in _TIMESTAMP.items()}
        for channel, payload in zip(layout, payloads, strict=True):
            if payload is None:
                frames += (_EMPTY, _EMPTY)
                continue
            own = channel_timestamps.get(channel.name) if channel_timestamps else None
            if own is None:
                frames += (payload, stamps[channel.encoding])
            else:
                frames += (payload, _pack_timestamp(channel, own))
        return frames

    def _prepare(
        self, name: str, value: Any, declared: Channel | None, hint: Channel | None = None
    ) -> tuple[Channel, bytes | memoryview | None]:
        if declared is not None:
            if declared.name != name:
                raise ValueError(f"channel {name!r} is declared under the name {declared.name!r}")
            if declared.compression not in _SENDABLE_COMPRESSIONS:
                raise ValueError(f"channel {name!r}: {declared.compression!r} is receive-only")
            if value is None:
                return declared, None
            return declared, _serialize(declared, _as_array(name, value, declared))
        if value is None:
            known = self._known.get(name)
            if hint is not None:
                shape = hint.shape or (1,)
                if known is None or (known.type, known.shape) != (hint.type, shape):
                    known = Channel(name, hint.type, shape, compression=self._compression)
                    self._known[name] = known
            elif known is None:
                known = Channel(name, "float64", (1,), compression=self._compression)
                self._known[name] = known
            return known, None
        array = _as_array(name, value, None)
        if isinstance(array, str):
            type_name = STRING
        else:
            carried = type_for_dtype(array.dtype)
            if carried is None:
                raise ValueError(f"channel {name!r}: bsread cannot carry dtype {array.dtype}")
            type_name = carried
        shape = (1,) if isinstance(array, str) or array.ndim == 0 else array.shape
        known = self._known.get(name)
        if (
            known is None
            or known.type != type_name
            or known.shape != shape
            or known.compression != self._compression
            or known.encoding != "little"
        ):
            known = Channel(name, type_name, shape, compression=self._compression)
            self._known[name] = known
        return known, _serialize(known, array)

    def _rebuild_header(self, layout: tuple[Channel, ...]) -> None:
        header = {"htype": "bsr_d-1.1", "channels": [channel.header_entry() for channel in layout]}
        frame = json.dumps(header).encode()
        if self._header_compression == "bitshuffle_lz4":
            frame = bitshuffle_compress(np.frombuffer(frame, dtype=np.uint8))
        self._layout = layout
        self._header_frame = frame
        self._hash = hashlib.md5(frame, usedforsecurity=False).hexdigest()


def _as_array(name: str, value: Any, declared: Channel | None) -> np.ndarray | str:
    """Turn a value into a str or a numpy array, checking it against a declaration if any."""
    if isinstance(value, str):
        if declared is not None and declared.type != STRING:
            raise ValueError(f"channel {name!r} is declared {declared.type}, got a str")
        return value
    if declared is not None and declared.type == STRING:
        raise ValueError(f"channel {name!r} is declared string, got {type(value).__name__}")
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, bool | int | float | np.generic | list | tuple):
        try:
            array = np.asarray(value)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"channel {name!r}: cannot send {value!r:.80}: {exc}") from exc
    else:
        raise ValueError(f"channel {name!r}: cannot send a value of type {type(value).__name__}")
    if declared is None:
        return array
    if array.shape != declared.shape and not (array.size == 1 == math.prod(declared.shape)):
        raise ValueError(
            f"channel {name!r} is declared with shape {declared.shape}, got {array.shape}"
        )
    target = dtype_for(declared.type, declared.encoding)
    if array.dtype.kind not in _CONVERTIBLE_KINDS[target.kind]:
        raise ValueError(f"channel {name!r} is declared {declared.type}, got {array.dtype}")
    if array is not value:
        try:  # Python scalars and lists: numpy refuses ints out of the declared range
            array = np.asarray(value, dtype=target)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"channel {name!r}: {value!r:.80} is not {declared.type}") from exc
    return array


def _serialize(channel: Channel, value: np.ndarray | str) -> bytes | memoryview | None:
    if isinstance(value, str):
        raw = value.encode()
        if channel.compression == "none":
            return raw
        return bitshuffle_compress(np.frombuffer(raw, dtype=np.uint8))
    target = dtype_for(channel.type, channel.encoding)
    if value.dtype != target or not value.flags.c_contiguous:
        value = np.ascontiguousarray(value, dtype=target)  # the one copy: cast, swap or gather
    if channel.compression == "none":
        return value.reshape(-1).view(np.uint8).data  # a memoryview of the bytes, no copy
    return bitshuffle_compress(value)


def _pack_timestamp(channel: Channel, timestamp: tuple[int, int]) -> bytes:
    """A channel's own timestamp frame, packed as given: a received one goes out verbatim."""
    try:
        sec, ns = timestamp
        return _TIMESTAMP[channel.encoding].pack(operator.index(sec), operator.index(ns))
    except (TypeError, ValueError, struct.error) as exc:
        raise ValueError(f"channel {channel.name!r}: bad timestamp {timestamp!r:.80}") from exc


def _split_timestamp(timestamp: tuple[int, int] | float | None) -> tuple[int, int]:
    if timestamp is None:
        return divmod(time.time_ns(), _NS_PER_S)
    if isinstance(timestamp, tuple):
        if len(timestamp) != 2:
            raise ValueError(f"timestamp must be (sec, ns), got {timestamp!r}")
        sec, ns = operator.index(timestamp[0]), operator.index(timestamp[1])
        if not 0 <= ns < _NS_PER_S:
            raise ValueError(f"timestamp nanoseconds must be in [0, 1e9), got {ns}")
        return sec, ns
    seconds = float(timestamp)
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp must be finite, got {timestamp!r}")
    sec = math.floor(seconds)
    ns = min(round((seconds - sec) * _NS_PER_S), _NS_PER_S - 1)
    return sec, ns
