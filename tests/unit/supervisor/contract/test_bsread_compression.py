"""bitshuffle_lz4 framing (bsread.md §1.10), header compression (§1.5), plain lz4 (§1.11)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import bitshuffle
import lz4.block
import numpy as np
import pytest

from supervisor.contract.bsread import BSREAD_TYPES, DecodeError, Decoder, Encoder, Message
from supervisor.contract.bsread import compression as compression_module
from tests.bsread_vectors import IOC_PULSE_ID, IOC_WAVEFORM, ioc_style_message


def decode(frames: list[Any]) -> Message:
    message = Decoder().decode(frames)
    assert message is not None
    return message


def hand_made(channel: dict[str, Any], value: bytes) -> list[bytes]:
    """A one-channel message with an uncompressed data header."""
    header = json.dumps({"htype": "bsr_d-1.1", "channels": [channel]}).encode()
    main = {"htype": "bsr_m-1.1", "pulse_id": 1, "hash": hashlib.md5(header).hexdigest()}
    return [json.dumps(main).encode(), header, value, struct.pack("<qq", 1, 2)]


def split(frame: bytes | memoryview) -> tuple[int, int, bytes]:
    raw = bytes(frame)
    total, block = struct.unpack(">QI", raw[:12])
    return total, block, raw[12:]


@pytest.mark.parametrize("type_name", [name for name in BSREAD_TYPES if name != "string"])
def test_every_type_round_trips_compressed(type_name: str) -> None:
    """bitshuffle_lz4 values of every numeric type and bool decode to the original."""
    dtype = BSREAD_TYPES[type_name]
    array = (np.arange(5000) % 7).astype(dtype).reshape(50, 100)
    frames = Encoder(compression="bitshuffle_lz4").encode({"a": array}, 1, (1, 0))
    assert json.loads(frames[1])["channels"][0]["compression"] == "bitshuffle_lz4"
    np.testing.assert_array_equal(decode(frames).data["a"], array)


@pytest.mark.parametrize("dtype", ["u1", "u2", "<i4", "<f8"])
def test_block_size_field_is_8192_bytes(dtype: str) -> None:
    """The header holds the byte count and bshuf_default_block_size(itemsize) in bytes."""
    array = np.arange(10_000).astype(dtype)
    frames = Encoder(compression="bitshuffle_lz4").encode({"a": array}, 1, (1, 0))
    total, block, body = split(frames[2])
    assert total == array.nbytes
    assert block == 8192
    assert body == bitshuffle.compress_lz4(array, 8192 // array.itemsize).tobytes()


def test_raw_tail_of_1003_int32_elements() -> None:
    """The last n mod 8 elements are appended raw, neither shuffled nor compressed."""
    array = np.arange(1003, dtype="<i4")
    frames = Encoder(compression="bitshuffle_lz4").encode({"w": array}, 1, (1, 0))
    _, _, body = split(frames[2])
    assert body[-12:] == array[-3:].tobytes()
    np.testing.assert_array_equal(decode(frames).data["w"], array)


def test_compressed_scalar_and_non_ascii_string_round_trip() -> None:
    """Scalars may be compressed; strings use element size 1."""
    frames = Encoder(compression="bitshuffle_lz4").encode({"x": 2.5, "s": "Ünïcode ✓"}, 1, (1, 0))
    total, block, _ = split(frames[4])
    assert (total, block) == (len("Ünïcode ✓".encode()), 8192)
    message = decode(frames)
    assert message.data == {"x": 2.5, "s": "Ünïcode ✓"}


def test_compressed_data_header_hash_covers_the_bytes_as_sent() -> None:
    """dh_compression is announced and the hash is the md5 of the compressed frame 1."""
    frames = Encoder(header_compression="bitshuffle_lz4").encode({"a": 1.0}, 1, (1, 0))
    main = json.loads(frames[0])
    assert main["dh_compression"] == "bitshuffle_lz4"
    assert main["hash"] == hashlib.md5(bytes(frames[1])).hexdigest()
    total, block, body = split(frames[1])
    assert block == 8192
    raw = bitshuffle.decompress_lz4(np.frombuffer(body, np.uint8), (total,), np.dtype("u1"), 8192)
    assert json.loads(raw.tobytes())["channels"][0]["name"] == "a"
    assert decode(frames).data["a"] == 1.0


def test_ioc_style_compressed_data_header_decodes_with_defaults() -> None:
    """An IOC-style header omitting defaults, bitshuffle-compressed, decodes like an IOC's."""
    frames = ioc_style_message(0.5, "OK", ns=1)
    message = decode(frames)
    assert message.pulse_id == IOC_PULSE_ID
    assert message.data["Float64Scalar"] == 0.5
    np.testing.assert_array_equal(message.data["Int8Waveform"], IOC_WAVEFORM)
    assert message.data["StringScalar"] == "OK"
    assert [c.type for c in message.channels] == ["float64", "int8", "string"]


def test_block_size_is_read_from_the_frame_header() -> None:
    """A non-default block size (256 elements) in the header is honoured."""
    array = np.arange(3000, dtype="<u4")
    body = bitshuffle.compress_lz4(array, 256).tobytes()
    frame = struct.pack(">QI", array.nbytes, 256 * 4) + body
    channel = {"name": "a", "type": "uint32", "shape": [3000], "compression": "bitshuffle_lz4"}
    np.testing.assert_array_equal(decode(hand_made(channel, frame)).data["a"], array)


def test_zero_byte_count_is_a_missing_value() -> None:
    """A bitshuffle frame whose byte count is 0 decodes to None."""
    channel = {"name": "a", "type": "int32", "shape": [4], "compression": "bitshuffle_lz4"}
    message = decode(hand_made(channel, struct.pack(">QI", 0, 8192)))
    assert message.data["a"] is None


@pytest.mark.parametrize("order", ["<I", ">I"])
def test_plain_lz4_is_accepted_with_either_size_byte_order(order: str) -> None:
    """Plain lz4 values decode whichever byte order the size prefix uses."""
    array = np.arange(100, dtype="<f4")
    frame = struct.pack(order, array.nbytes) + lz4.block.compress(array.tobytes(), store_size=False)
    channel = {"name": "a", "type": "float32", "shape": [100], "compression": "lz4"}
    np.testing.assert_array_equal(decode(hand_made(channel, frame)).data["a"], array)


def test_plain_lz4_without_the_lz4_package_is_a_decode_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the optional lz4 package an lz4 channel fails with a clear message."""
    monkeypatch.setattr(compression_module, "_lz4_block", None)
    frame = struct.pack("<I", 8) + lz4.block.compress(b"\x00" * 8, store_size=False)
    channel = {"name": "a", "compression": "lz4"}
    with pytest.raises(DecodeError, match="'lz4' package"):
        Decoder().decode(hand_made(channel, frame))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda f: f[:-1], id="truncated"),
        pytest.param(lambda f: f + b"\x00", id="extended"),
        pytest.param(
            lambda f: f[:8] + struct.pack(">I", 12) + f[12:], id="block-not-multiple-of-8"
        ),
        pytest.param(lambda f: f[:8] + struct.pack(">I", 0) + f[12:], id="zero-block"),
        pytest.param(lambda f: f[:12] + b"\xff\xff\xff\x7f" + f[16:], id="block-past-end"),
        pytest.param(lambda f: f[:20] + bytes(b ^ 0x55 for b in f[20:60]) + f[60:], id="garbage"),
        pytest.param(lambda f: f[:5], id="short-header"),
    ],
)
def test_corrupt_bitshuffle_frames_raise_decode_error(mutate: Any) -> None:
    """Every corruption of a bitshuffle frame is a DecodeError, never a crash."""
    array = np.arange(5000, dtype="<i4")
    frames = Encoder(compression="bitshuffle_lz4").encode({"a": array}, 1, (1, 0))
    frames[2] = mutate(bytes(frames[2]))
    with pytest.raises(DecodeError):
        Decoder().decode(frames)


def test_byte_count_disagreeing_with_shape_is_a_decode_error() -> None:
    """A compressed value holding a different number of bytes than declared is rejected."""
    body = bitshuffle.compress_lz4(np.arange(16, dtype="<i4"), 2048).tobytes()
    frame = struct.pack(">QI", 64, 8192) + body
    channel = {"name": "a", "type": "int32", "shape": [8], "compression": "bitshuffle_lz4"}
    with pytest.raises(DecodeError, match="expected 32"):
        Decoder().decode(hand_made(channel, frame))


def test_default_block_size_matches_bitshuffle() -> None:
    """bshuf_default_block_size: 8192 bytes for item sizes 1-8, at least 128 elements."""
    sizes = {n: compression_module.default_block_size(n) for n in (1, 2, 4, 8, 16, 128)}
    assert sizes == {1: 8192, 2: 4096, 4: 2048, 8: 1024, 16: 512, 128: 128}
