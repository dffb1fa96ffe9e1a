"""Parsing of bsread's two JSON headers into what the decoder needs (bsread.md §1.2, §1.3)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from .compression import bitshuffle_decompress, lz4_decompress, read_bitshuffle_nbytes
from .errors import DecodeError
from .message import Channel
from .types import BSREAD_TYPES, COMPRESSIONS, STRING, dtype_for

__all__ = [
    "Buffer",
    "ChannelPlan",
    "DataHeader",
    "MainHeader",
    "parse_data_header",
    "parse_main_header",
]

Buffer = bytes | memoryview

_MAX_PULSE_ID: Final = 2**64 - 1
_TIMESTAMP: Final = {"little": struct.Struct("<qq"), "big": struct.Struct(">qq")}
_BYTES_DTYPE: Final = np.dtype(np.uint8)

MainHeader = tuple[int, tuple[int, int], str, str]
"""(pulse_id, global_timestamp, hash, dh_compression) of a data message."""


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """How to decode one channel's frames, computed once per data header."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    count: int
    nbytes: int
    string: bool
    compression: str
    timestamp: struct.Struct


@dataclass(frozen=True, slots=True)
class DataHeader:
    """A parsed data header: its channels and their decoding plans, in header order."""

    channels: tuple[Channel, ...]
    plans: tuple[ChannelPlan, ...]


def _json(buffer: Buffer) -> Any:
    return json.loads(buffer if type(buffer) is bytes else bytes(buffer))


def parse_main_header(buffer: Buffer) -> MainHeader | None:
    header = _json(buffer)
    if not isinstance(header, dict):
        raise DecodeError(f"main header is not a JSON object: {header!r:.80}")
    htype = header.get("htype")
    if not isinstance(htype, str):
        raise DecodeError(f"main header has no htype string: {htype!r:.80}")
    if not htype.startswith("bsr_m"):
        return None
    pulse_id = header.get("pulse_id")
    if type(pulse_id) is not int or not 0 <= pulse_id <= _MAX_PULSE_ID:
        raise DecodeError(f"main header pulse_id must be an unsigned integer, got {pulse_id!r:.80}")
    hash_ = header.get("hash")
    if not isinstance(hash_, str):
        raise DecodeError(f"main header hash must be a string, got {hash_!r:.80}")
    dh_compression = header.get("dh_compression")
    if dh_compression is None:
        dh_compression = "none"
    elif not isinstance(dh_compression, str) or dh_compression.lower() not in COMPRESSIONS:
        raise DecodeError(f"unknown dh_compression {dh_compression!r:.80}")
    timestamp = _parse_global_timestamp(header.get("global_timestamp"))
    return pulse_id, timestamp, hash_, dh_compression.lower()


def _parse_global_timestamp(value: Any) -> tuple[int, int]:
    if value is None:
        return (0, 0)
    if not isinstance(value, dict):
        raise DecodeError(f"global_timestamp must be an object, got {value!r:.80}")
    sec = value["sec"] if "sec" in value else value.get("epoch")  # "epoch": legacy senders
    ns = value.get("ns", 0)
    if type(sec) is not int or type(ns) is not int:
        raise DecodeError(f"global_timestamp needs integer sec and ns, got {value!r:.80}")
    return (sec, ns)


def parse_data_header(buffer: Buffer, compression: str) -> DataHeader:
    if compression == "bitshuffle_lz4":
        if read_bitshuffle_nbytes(buffer) == 0:
            raise DecodeError("compressed data header is empty")
        raw: Buffer = bitshuffle_decompress(buffer, _BYTES_DTYPE).tobytes()
    elif compression == "lz4":
        raw = lz4_decompress(buffer, None)
    else:
        raw = buffer
    header = _json(raw)
    if not isinstance(header, dict) or not isinstance(header.get("channels"), list):
        raise DecodeError(f"data header is not an object with a channels list: {header!r:.80}")
    channels = tuple(_parse_channel(entry) for entry in header["channels"])
    names = {channel.name for channel in channels}
    if len(names) != len(channels):
        raise DecodeError("data header lists a channel name twice")
    return DataHeader(channels, tuple(_plan(channel) for channel in channels))


def _parse_channel(entry: Any) -> Channel:
    """Build a Channel from a data-header entry, applying bsread's defaults."""
    if not isinstance(entry, dict):
        raise DecodeError(f"data header channel is not an object: {entry!r:.80}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise DecodeError(f"data header channel has no name: {entry!r:.80}")
    type_name = _lower(entry, "type", "float64")
    if type_name not in BSREAD_TYPES:
        raise DecodeError(f"channel {name!r} has unknown type {entry.get('type')!r:.80}")
    shape = entry.get("shape")
    if shape is None:
        shape = [1]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise DecodeError(f"channel {name!r} has a bad shape {shape!r:.80}")
    # Java reads any encoding containing "big" as big-endian; Rust also accepts ">".
    encoding = _lower(entry, "encoding", "little")
    encoding = "big" if "big" in encoding or encoding == ">" else "little"
    compression = _lower(entry, "compression", "none")
    if compression not in COMPRESSIONS:
        raise DecodeError(f"channel {name!r} has unknown compression {compression!r:.80}")
    return Channel(name, type_name, tuple(reversed(shape)), encoding, compression)


def _lower(entry: dict[str, Any], key: str, default: str) -> str:
    value = entry.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise DecodeError(
            f"channel {entry.get('name')!r}: {key} must be a string, got {value!r:.80}"
        )
    return value.lower()


def _plan(channel: Channel) -> ChannelPlan:
    dtype = dtype_for(channel.type, channel.encoding)
    count = math.prod(channel.shape)
    return ChannelPlan(
        name=channel.name,
        dtype=dtype,
        shape=channel.shape,
        count=count,
        nbytes=count * dtype.itemsize,
        string=channel.type == STRING,
        compression=channel.compression,
        timestamp=_TIMESTAMP[channel.encoding],
    )
