"""The PNG encoder: files a strict reader decodes to the exact pixels, with valid CRCs."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from supervisor.colormaps import lookup_table
from supervisor.png import encode_png
from tests.png_reader import SIGNATURE, read_png


def _random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_an_rgb_image_decodes_to_its_pixels() -> None:
    """Every byte of an RGB image comes back; the layout is signature, IHDR, IDAT, IEND."""
    rgb = _random((7, 5, 3))
    image = read_png(encode_png(rgb))
    assert image.colour_type == 2
    assert image.chunks == [b"IHDR", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(image.rgb, rgb)


def test_a_palette_image_shows_the_lookup_table_colours_exactly() -> None:
    """Indices with a colormap as palette decode to exactly the table's colour of each index."""
    lut = lookup_table("viridis")
    indices = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = read_png(encode_png(indices, palette=lut))
    assert image.colour_type == 3
    assert image.chunks == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(image.palette, lut)
    np.testing.assert_array_equal(image.rgb, lut[indices])


def test_a_grayscale_image_decodes_to_its_levels() -> None:
    """A 2-D image without a palette is grey: R, G and B equal its levels."""
    gray = _random((3, 9), seed=1)
    image = read_png(encode_png(gray))
    assert image.colour_type == 0
    np.testing.assert_array_equal(image.rgb[:, :, 1], gray)


def test_the_header_and_the_crcs_are_the_png_specification_s() -> None:
    """IHDR holds width, height, depth 8, colour type, and zeros; CRC-32 over type and data."""
    data = encode_png(_random((2, 3, 3)))
    assert data.startswith(SIGNATURE)
    length, kind = struct.unpack_from(">I4s", data, 8)
    assert (length, kind) == (13, b"IHDR")
    assert struct.unpack_from(">IIBBBBB", data, 16) == (3, 2, 8, 2, 0, 0, 0)
    (crc,) = struct.unpack_from(">I", data, 29)
    assert crc == zlib.crc32(data[12:29])
    assert data.endswith(b"\x00\x00\x00\x00IEND\xae\x42\x60\x82")  # the well-known IEND bytes


def test_non_contiguous_pixels_are_encoded_as_they_look() -> None:
    """A strided view (reversed rows, every other column) is encoded as its values."""
    base = _random((6, 10, 3), seed=2)
    view = base[::-1, ::2]
    np.testing.assert_array_equal(read_png(encode_png(view)).rgb, view)


def test_a_large_image_is_compressed() -> None:
    """A smooth 1000x1000 image deflates to a small fraction of its size."""
    ramp = np.tile(np.arange(1000, dtype=np.uint16) // 4, (1000, 1)).astype(np.uint8)
    data = encode_png(ramp)
    assert len(data) < ramp.nbytes // 20
    np.testing.assert_array_equal(read_png(data).rgb[:, :, 0], ramp)


@pytest.mark.parametrize(
    ("pixels", "palette", "message"),
    [
        (np.zeros((2, 2), np.uint16), None, "uint8 image"),
        (np.zeros((0, 2), np.uint8), None, "non-empty"),
        (np.zeros((2, 2, 4), np.uint8), None, "height x width x 3"),
        (np.zeros((2, 2, 3), np.uint8), np.zeros((4, 3), np.uint8), "height x width x 3"),
        (np.zeros((2, 2), np.uint8), np.zeros((4, 4), np.uint8), "n x 3 uint8"),
        (np.full((2, 2), 4, np.uint8), np.zeros((4, 3), np.uint8), "past the 4 colours"),
    ],
)
def test_arrays_a_png_cannot_hold_are_refused(pixels, palette, message) -> None:
    """Wrong dtype, shape or palette raise ValueError saying what was given."""
    with pytest.raises(ValueError, match=message):
        encode_png(pixels, palette=palette)
