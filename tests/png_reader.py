"""A strict reader of the PNG files the supervisor writes, for the tests (stdlib zlib only).

It checks what a browser relies on: the signature, every chunk's CRC, IHDR first and IEND last,
8-bit samples without interlacing, a palette before the data, and rows of the advertised size;
it undoes filter types 0 (none) and 2 (up), the ones a preview may use.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["PngImage", "read_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1}  # colour type -> samples per pixel


@dataclass
class PngImage:
    """A decoded PNG: its RGB pixels, and how it was stored."""

    rgb: np.ndarray  # height x width x 3, uint8 (grey and palette images expanded)
    colour_type: int
    chunks: list[bytes]  # the chunk types, in file order
    filters: set[int]  # the row filter types used
    palette: np.ndarray | None  # n x 3 uint8 for a palette image
    indices: np.ndarray | None  # height x width palette indices for a palette image


def read_png(data: bytes) -> PngImage:
    """Decode ``data``; an ``AssertionError`` says what is wrong with the file."""
    assert data[:8] == SIGNATURE, f"bad signature {data[:8]!r}"
    chunks: list[tuple[bytes, bytes]] = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        assert len(body) == length, f"chunk {kind!r} is cut short"
        assert crc == zlib.crc32(kind + body), f"bad CRC of chunk {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR", f"first chunk is {kinds[0]!r}"
    assert kinds[-1] == b"IEND", f"last chunk is {kinds[-1]!r}"
    assert chunks[-1][1] == b"", "IEND has data"
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert depth == 8, f"bit depth {depth}"
    assert colour in _CHANNELS, f"colour type {colour}"
    assert (compression, filtering, interlace) == (0, 0, 0)
    assert width > 0, "width 0"
    assert height > 0, "height 0"
    palette = None
    if colour == 3:
        assert b"PLTE" in kinds, "a palette image without PLTE"
        assert kinds.index(b"PLTE") < kinds.index(b"IDAT"), "PLTE after IDAT"
        plte = chunks[kinds.index(b"PLTE")][1]
        assert len(plte) % 3 == 0, f"PLTE of {len(plte)} bytes"
        assert 3 <= len(plte) <= 768, f"PLTE of {len(plte)} bytes"
        palette = np.frombuffer(plte, np.uint8).reshape(-1, 3)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * _CHANNELS[colour]
    assert len(raw) == height * (1 + stride), f"{len(raw)} bytes of data for {width}x{height}"
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + stride)
    filters = set(rows[:, 0].tolist())
    assert filters <= {0, 2}, f"filter types {filters}"
    pixels = rows[:, 1:].copy()
    for y in range(1, height):
        if rows[y, 0] == 2:
            pixels[y] += pixels[y - 1]  # wraps modulo 256, as the filter does
    indices = None
    if colour == 2:
        rgb = pixels.reshape(height, width, 3)
    elif colour == 0:
        rgb = np.repeat(pixels[:, :, None], 3, axis=2)
    else:
        assert palette is not None
        indices = pixels
        assert int(indices.max()) < len(palette), "an index past the palette"
        rgb = palette[indices]
    return PngImage(rgb, colour, kinds, filters, palette, indices)
