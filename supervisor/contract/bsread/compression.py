"""bitshuffle_lz4 framing (bsread.md §1.10) and receive-only plain lz4 (§1.11).

A bitshuffle_lz4 frame is a 12-byte big-endian header (u64 uncompressed bytes, u32 block size in
bytes) followed by bitshuffle's LZ4 stream. bitshuffle's C decoder trusts the stream blindly, so
`bitshuffle_decompress` walks the block lengths first: malformed input raises ValueError instead
of reading past the frame.
"""

from __future__ import annotations

import struct
from typing import Final

import bitshuffle
import numpy as np

try:
    import lz4.block as _lz4_block
except ImportError:  # lz4 is receive-only and not a runtime dependency
    _lz4_block = None

__all__ = [
    "bitshuffle_compress",
    "bitshuffle_decompress",
    "default_block_size",
    "lz4_decompress",
    "read_bitshuffle_nbytes",
]

_HEADER: Final = struct.Struct(">QI")
_BLOCK_LENGTH: Final = struct.Struct(">I")
_HEADER_SIZE: Final = _HEADER.size
# LZ4 cannot expand more than ~255 times; anything claiming more is corrupt, and refusing it
# keeps a forged size field from making us allocate gigabytes.
_MAX_RATIO: Final = 256
_BLOCKED_MULT: Final = 8


def default_block_size(itemsize: int) -> int:
    """bitshuffle's `bshuf_default_block_size`: the block size in elements PSI senders use."""
    return max(8192 // itemsize // _BLOCKED_MULT * _BLOCKED_MULT, 128)


def bitshuffle_compress(arr: np.ndarray) -> bytes:
    """Frame a C-contiguous array (any shape) as bitshuffle_lz4, with the default block size."""
    itemsize = arr.dtype.itemsize
    block = default_block_size(itemsize)
    header = _HEADER.pack(arr.nbytes, block * itemsize)
    if arr.size == 0:
        return header
    compressed: np.ndarray = bitshuffle.compress_lz4(arr.reshape(-1), block)
    return header + compressed.tobytes()


def read_bitshuffle_nbytes(frame: bytes | memoryview) -> int:
    """Return the uncompressed byte count of a bitshuffle_lz4 frame (0 means an empty value)."""
    if len(frame) < _HEADER_SIZE:
        raise ValueError(f"bitshuffle_lz4 frame of {len(frame)} bytes is shorter than its header")
    nbytes: int = _HEADER.unpack_from(frame)[0]
    return nbytes


def bitshuffle_decompress(frame: bytes | memoryview, dtype: np.dtype) -> np.ndarray:
    """Decompress a non-empty bitshuffle_lz4 frame into a flat array of `dtype`.

    Raises:
        ValueError: When the header or the stream is malformed or decompression fails.
    """
    nbytes, block_bytes = _HEADER.unpack_from(frame)
    itemsize = dtype.itemsize
    if nbytes % itemsize or block_bytes % itemsize:
        raise ValueError(
            f"bitshuffle_lz4 sizes ({nbytes} bytes, block {block_bytes} bytes) "
            f"are not multiples of the element size {itemsize}"
        )
    block = block_bytes // itemsize
    if block <= 0 or block % _BLOCKED_MULT:
        raise ValueError(f"bitshuffle_lz4 block size {block} elements is not a multiple of 8")
    stream_size = len(frame) - _HEADER_SIZE
    if nbytes > _MAX_RATIO * stream_size + _BLOCKED_MULT * itemsize:
        raise ValueError(f"bitshuffle_lz4 claims {nbytes} bytes from a {len(frame)}-byte frame")
    count = nbytes // itemsize
    _check_stream(frame, count, block, itemsize)
    stream = np.frombuffer(frame, dtype=np.uint8, offset=_HEADER_SIZE)
    try:
        values: np.ndarray = bitshuffle.decompress_lz4(stream, (count,), dtype, block)
    except RuntimeError as exc:
        raise ValueError(f"bitshuffle_lz4 decompression failed: {exc}") from exc
    return values


def _check_stream(frame: bytes | memoryview, count: int, block: int, itemsize: int) -> None:
    """Check that the stream's block lengths and raw tail exactly fill the frame."""
    end = len(frame)
    offset = _HEADER_SIZE
    n_blocks = count // block + (1 if count % block >= _BLOCKED_MULT else 0)
    unpack = _BLOCK_LENGTH.unpack_from
    for _ in range(n_blocks):
        if offset + 4 > end:
            raise ValueError("bitshuffle_lz4 stream ends inside a block header")
        offset += 4 + unpack(frame, offset)[0]
    tail = count % _BLOCKED_MULT * itemsize
    if offset + tail != end:
        raise ValueError(
            f"bitshuffle_lz4 stream has {end - offset} bytes after its blocks, expected {tail}"
        )


def lz4_decompress(frame: bytes | memoryview, expected: int | None) -> bytes:
    """Decompress a plain lz4 frame (4-byte size prefix in either byte order, then an LZ4 block).

    Args:
        frame: The frame as received.
        expected: The uncompressed size the data header implies, or None for strings.

    Raises:
        ValueError: When lz4 is not installed, or no byte order of the prefix decompresses.
    """
    if _lz4_block is None:
        raise ValueError("lz4 compression needs the 'lz4' package, which is not installed")
    if len(frame) < 4:
        raise ValueError(f"lz4 frame of {len(frame)} bytes is shorter than its size prefix")
    payload = bytes(frame[4:])
    errors = []
    for order in ("<I", ">I"):
        (size,) = struct.unpack_from(order, frame)
        if expected is not None and size != expected:
            continue
        if size > _MAX_RATIO * len(payload) + 16:
            continue
        try:
            out: bytes = _lz4_block.decompress(payload, uncompressed_size=size)
        except _lz4_block.LZ4BlockError as exc:
            errors.append(str(exc))
            continue
        if len(out) == size:
            return out
    raise ValueError(f"lz4 frame does not decompress with either size byte order {errors}")
