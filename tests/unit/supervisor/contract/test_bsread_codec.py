"""Round trips and wire layout of the bsread codec (bsread.md §1)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import (
    BSREAD_TYPES,
    Channel,
    DecodeError,
    Decoder,
    Encoder,
    Message,
)

NUMERIC_TYPES = [name for name in BSREAD_TYPES if name not in ("string", "bool")]


def roundtrip(data: dict[str, Any], **encoder_options: str) -> Message:
    frames = Encoder(**encoder_options).encode(data, pulse_id=7, timestamp=(1_700_000_000, 5))
    message = Decoder().decode(frames)
    assert message is not None
    return message


def hand_made(
    channels: list[dict[str, Any]], values: list[bytes], *, main: dict[str, Any] | None = None
) -> list[bytes]:
    """Frames of a message written by hand, with one timestamp frame per value."""
    header = json.dumps({"htype": "bsr_d-1.1", "channels": channels}).encode()
    main_header = {
        "htype": "bsr_m-1.1",
        "pulse_id": 1,
        "global_timestamp": {"sec": 100, "ns": 200},
        "hash": hashlib.md5(header).hexdigest(),
    }
    main_header.update(main or {})
    frames = [json.dumps(main_header).encode(), header]
    for value in values:
        frames += [value, struct.pack("<qq", 1, 2) if value else b""]
    return frames


def header_of(frames: list[bytes | memoryview]) -> dict[str, Any]:
    return json.loads(bytes(frames[1]))


@pytest.mark.parametrize("type_name", NUMERIC_TYPES)
def test_every_numeric_type_round_trips_as_array_and_scalar(type_name: str) -> None:
    """Arrays keep dtype, shape and values; one-element values come back as numpy scalars."""
    dtype = BSREAD_TYPES[type_name]
    array = np.arange(12, dtype=dtype).reshape(3, 4)
    message = roundtrip({"a": array, "s": dtype.type(5)})
    assert message.data["a"].dtype == dtype
    np.testing.assert_array_equal(message.data["a"], array)
    assert isinstance(message.data["s"], np.generic)
    assert message.data["s"] == 5
    assert message.channels[1] == Channel("s", type_name, (1,))


def test_extreme_integers_round_trip() -> None:
    """uint64 max and int64 min survive the wire unchanged."""
    message = roundtrip({"u": np.uint64(2**64 - 1), "i": np.int64(-(2**63))})
    assert message.data["u"] == np.uint64(2**64 - 1)
    assert message.data["i"] == np.int64(-(2**63))


def test_python_values_map_to_bsread_types() -> None:
    """int -> int64, float -> float64, bool -> bool, str -> string, list -> array."""
    frames = Encoder().encode({"i": 3, "f": 2.5, "b": True, "s": "x", "l": [1.0, 2.0]}, 1, (1, 0))
    types = {entry["name"]: entry["type"] for entry in header_of(frames)["channels"]}
    assert types == {"i": "int64", "f": "float64", "b": "bool", "s": "string", "l": "float64"}
    message = Decoder().decode(frames)
    assert message is not None
    assert message.data["b"] is np.True_
    np.testing.assert_array_equal(message.data["l"], [1.0, 2.0])


def test_bool_values_are_one_byte_each() -> None:
    """A bool array goes out as bytes 0/1 and comes back as bool."""
    frames = Encoder().encode({"b": np.array([True, False, True])}, 1, (1, 0))
    assert bytes(frames[2]) == b"\x01\x00\x01"
    message = Decoder().decode(frames)
    assert message is not None
    np.testing.assert_array_equal(message.data["b"], [True, False, True])


def test_non_ascii_string_is_raw_utf8() -> None:
    """A string goes out as its UTF-8 bytes with shape [1] and comes back as str."""
    frames = Encoder().encode({"s": "Grüße, 光"}, 1, (1, 0))
    assert bytes(frames[2]) == "Grüße, 光".encode()
    assert header_of(frames)["channels"][0]["shape"] == [1]
    assert roundtrip({"s": "Grüße, 光"}).data["s"] == "Grüße, 光"


def test_image_shape_is_reversed_on_the_wire() -> None:
    """A numpy (H, W) image is declared [W, H] and its bytes are C order."""
    image = np.arange(6 * 4, dtype=np.uint16).reshape(6, 4)
    frames = Encoder().encode({"img": image}, 1, (1, 0))
    assert header_of(frames)["channels"][0]["shape"] == [4, 6]
    assert bytes(frames[2]) == image.tobytes()
    decoded = Decoder().decode(frames)
    assert decoded is not None
    assert decoded.data["img"].shape == (6, 4)
    assert decoded.channels[0].shape == (6, 4)


def test_big_endian_input_is_sent_little_endian() -> None:
    """A big-endian array is converted once and declared little-endian."""
    array = np.arange(5, dtype=">f8")
    frames = Encoder().encode({"a": array}, 1, (1, 0))
    assert header_of(frames)["channels"][0]["encoding"] == "little"
    assert bytes(frames[2]) == array.astype("<f8").tobytes()


def test_big_endian_channel_decodes_values_and_timestamps() -> None:
    """A channel declared big-endian has its value and timestamp read big-endian."""
    channel = {"name": "a", "type": "int32", "shape": [3], "encoding": "big"}
    frames = hand_made([channel], [np.array([1, 2, 3], ">i4").tobytes()])
    frames[3] = struct.pack(">qq", 1_700_000_000, 42)
    message = Decoder().decode(frames)
    assert message is not None
    np.testing.assert_array_equal(message.data["a"], [1, 2, 3])
    assert message.timestamps["a"] == (1_700_000_000, 42)


def test_declared_big_endian_channel_round_trips() -> None:
    """An encoder-declared big-endian channel writes big-endian value and timestamp."""
    declared = {"a": Channel("a", "uint16", (2,), encoding="big")}
    frames = Encoder().encode({"a": np.array([1, 2], "<u2")}, 1, (3, 4), channels=declared)
    assert bytes(frames[2]) == b"\x00\x01\x00\x02"
    assert bytes(frames[3]) == struct.pack(">qq", 3, 4)
    message = Decoder().decode(frames)
    assert message is not None
    np.testing.assert_array_equal(message.data["a"], [1, 2])
    assert message.timestamps["a"] == (3, 4)


def test_missing_value_is_two_empty_frames_and_decodes_to_none() -> None:
    """None goes out as empty value and timestamp frames and comes back as None."""
    frames = Encoder().encode({"a": None, "b": 1.0}, 1, (1, 0))
    assert [len(frame) for frame in frames[2:4]] == [0, 0]
    assert header_of(frames)["channels"][0] == {
        "name": "a",
        "type": "float64",
        "shape": [1],
        "encoding": "little",
    }
    message = Decoder().decode(frames)
    assert message is not None
    assert message.data["a"] is None
    assert message.timestamps["a"] is None


def test_empty_value_frame_is_missing_whatever_the_timestamp() -> None:
    """An empty value frame means None even when the timestamp frame is filled."""
    frames = hand_made([{"name": "a"}], [b""])
    frames[3] = struct.pack("<qq", 5, 6)
    message = Decoder().decode(frames)
    assert message is not None
    assert message.data["a"] is None
    assert message.timestamps["a"] is None


def test_missing_value_keeps_the_previous_type_so_the_hash_is_stable() -> None:
    """A channel going from a value to None keeps its type and shape, and the hash."""
    encoder = Encoder()
    first = encoder.encode({"img": np.zeros((2, 3), np.uint8)}, 1, (1, 0))
    second = encoder.encode({"img": None}, 2, (1, 0))
    assert second[1] is first[1]
    assert json.loads(second[0])["hash"] == json.loads(first[0])["hash"]


def test_declared_channel_types_a_missing_value() -> None:
    """A declared channel that is None or absent from data is sent as missing with its type."""
    declared = {"x": Channel("x", "int32", (4,)), "y": Channel("y", "string", ())}
    frames = Encoder().encode({"z": 1.0}, 1, (1, 0), channels=declared)
    entries = header_of(frames)["channels"]
    assert [entry["name"] for entry in entries] == ["x", "y", "z"]
    assert entries[0]["type"] == "int32"
    assert entries[0]["shape"] == [4]
    assert [len(frame) for frame in frames[2:6]] == [0, 0, 0, 0]


def test_declared_type_converts_python_values() -> None:
    """A declared uint16 channel sends a Python int as uint16."""
    declared = {"x": Channel("x", "uint16", (1,))}
    frames = Encoder().encode({"x": 7}, 1, (1, 0), channels=declared)
    assert bytes(frames[2]) == b"\x07\x00"


def test_declared_type_rejects_values_it_cannot_hold() -> None:
    """A float for an int channel, or an int out of range, is a caller bug."""
    declared = {"x": Channel("x", "uint16", (1,))}
    with pytest.raises(ValueError, match="declared uint16"):
        Encoder().encode({"x": 1.5}, 1, (1, 0), channels=declared)
    with pytest.raises(ValueError, match="is not uint16"):
        Encoder().encode({"x": 70000}, 1, (1, 0), channels=declared)


def test_timestamp_frames_carry_the_global_timestamp() -> None:
    """Each timestamp frame is 16 bytes of little-endian (sec, ns) int64."""
    frames = Encoder().encode({"a": 1.0}, 9, (1_700_000_000, 123_456_789))
    assert bytes(frames[3]) == struct.pack("<qq", 1_700_000_000, 123_456_789)
    main = json.loads(frames[0])
    assert main["global_timestamp"] == {"sec": 1_700_000_000, "ns": 123_456_789}
    assert main["pulse_id"] == 9


def test_float_timestamp_is_split_into_seconds_and_nanoseconds() -> None:
    """A float timestamp becomes (sec, ns)."""
    frames = Encoder().encode({"a": 1.0}, 1, 12.25)
    assert json.loads(frames[0])["global_timestamp"] == {"sec": 12, "ns": 250_000_000}


def test_timestamp_frame_of_other_length_falls_back_to_global() -> None:
    """A timestamp frame that is not 16 bytes means the global timestamp."""
    frames = hand_made([{"name": "a"}], [struct.pack("<d", 1.5)])
    frames[3] = b"\x00" * 8
    message = Decoder().decode(frames)
    assert message is not None
    assert message.timestamps["a"] == (100, 200)
    assert message.global_timestamp == (100, 200)


def test_main_header_has_every_key_receivers_need() -> None:
    """htype bsr_m-1.1, dh_compression always present, hash = md5 of frame 1."""
    frames = Encoder().encode({"a": 1.0}, 1, (1, 0))
    main = json.loads(frames[0])
    assert main["htype"] == "bsr_m-1.1"
    assert main["dh_compression"] == "none"
    assert main["hash"] == hashlib.md5(bytes(frames[1])).hexdigest()
    assert header_of(frames)["htype"] == "bsr_d-1.1"


def test_header_change_mid_stream_sets_format_changed_and_new_hash() -> None:
    """format_changed is True on the first message and on a header change only."""
    encoder, decoder = Encoder(), Decoder()
    messages = []
    for pulse_id, data in enumerate(
        [{"a": 1.0}, {"a": 2.0}, {"a": 3.0, "b": 1}, {"a": 4.0, "b": 2}]
    ):
        message = decoder.decode(encoder.encode(data, pulse_id, (1, 0)))
        assert message is not None
        messages.append(message)
    assert [m.format_changed for m in messages] == [True, False, True, False]
    assert messages[0].hash == messages[1].hash != messages[2].hash == messages[3].hash
    assert list(messages[3].data) == ["a", "b"]


def test_shape_change_changes_the_hash() -> None:
    """A waveform changing length gets a new data header and hash."""
    encoder = Encoder()
    first = encoder.encode({"w": np.zeros(3)}, 1, (1, 0))
    second = encoder.encode({"w": np.zeros(4)}, 2, (1, 0))
    assert json.loads(first[0])["hash"] != json.loads(second[0])["hash"]
    assert header_of(second)["channels"][0]["shape"] == [4]


def test_decoder_reuses_the_cached_header_for_the_same_hash_and_bytes() -> None:
    """An unchanged frame 1 under an unchanged hash is not parsed again."""
    decoder = Decoder()
    frames = hand_made([{"name": "a"}], [struct.pack("<d", 1.5)])
    first = decoder.decode(frames)
    second = decoder.decode(frames)
    assert first is not None
    assert second is not None
    assert first.channels == second.channels
    assert first.format_changed
    assert not second.format_changed


def test_a_corrupt_frame_1_under_the_same_hash_does_not_poison_the_cache() -> None:
    """One corrupted data header is dropped; the stream's next good messages still decode."""
    decoder = Decoder()
    good = hand_made([{"name": "a"}], [struct.pack("<d", 1.5)])
    assert decoder.decode(good) is not None
    bad = [good[0], b"not json at all", *good[2:]]
    with pytest.raises(DecodeError):
        decoder.decode(bad)
    message = decoder.decode(good)
    assert message is not None
    assert message.data["a"] == 1.5
    assert not message.format_changed


def test_a_changed_frame_1_under_a_stale_hash_is_followed() -> None:
    """A sender that changes the header but not the hash is read with the new header."""
    decoder = Decoder()
    first = hand_made([{"name": "a"}], [struct.pack("<d", 1.5)])
    assert decoder.decode(first) is not None
    renamed = hand_made([{"name": "b"}], [struct.pack("<d", 2.5)])
    renamed[0] = first[0]  # the old main header, hash included
    message = decoder.decode(renamed)
    assert message is not None
    assert message.data == {"b": 2.5}
    assert message.format_changed


def test_zero_copy_encode_shares_memory_with_the_source_array() -> None:
    """An uncompressed C-contiguous little-endian array is sent without a copy."""
    image = np.arange(2160 * 2560, dtype=np.uint16).reshape(2160, 2560)
    frames = Encoder().encode({"img": image}, 1, (1, 0))
    assert isinstance(frames[2], memoryview)
    assert np.shares_memory(np.frombuffer(frames[2], np.uint8), image)


def test_zero_copy_decode_views_the_zmq_frame_buffer() -> None:
    """A decoded array is a view on the received zmq.Frame's buffer, not a copy."""
    image = np.arange(2160 * 2560, dtype=np.uint16).reshape(2160, 2560)
    frames = [zmq.Frame(bytes(frame)) for frame in Encoder().encode({"img": image}, 1, (1, 0))]
    message = Decoder().decode(frames)
    assert message is not None
    decoded = message.data["img"]
    np.testing.assert_array_equal(decoded, image)
    assert np.shares_memory(decoded, np.frombuffer(frames[2].buffer, np.uint8))


def test_non_contiguous_input_is_copied_correctly() -> None:
    """A transposed view is gathered into C order before sending."""
    array = np.arange(12, dtype=np.int32).reshape(3, 4).T
    message = roundtrip({"a": array})
    np.testing.assert_array_equal(message.data["a"], array)


def test_nbytes_is_the_total_frame_size() -> None:
    """Message.nbytes sums the sizes of all frames."""
    frames = Encoder().encode({"a": np.zeros(10)}, 1, (1, 0))
    message = Decoder().decode(frames)
    assert message is not None
    assert message.nbytes == sum(len(frame) for frame in frames)


def test_defaults_apply_to_ioc_style_channel_entries() -> None:
    """Missing type, shape, encoding and compression take bsread's defaults, case-insensitively."""
    channels = [
        {"name": "Float64Scalar"},
        {"name": "Int8Waveform", "type": "INT8", "shape": [2048]},
        {"name": "StringScalar", "type": "string"},
    ]
    values = [struct.pack("<d", 2.5), np.arange(2048, dtype=np.int8).tobytes(), b"on"]
    message = Decoder().decode(hand_made(channels, values))
    assert message is not None
    assert message.data["Float64Scalar"] == 2.5
    assert message.data["Int8Waveform"].shape == (2048,)
    assert message.data["StringScalar"] == "on"
    assert message.channels == [
        Channel("Float64Scalar", "float64", (1,)),
        Channel("Int8Waveform", "int8", (2048,)),
        Channel("StringScalar", "string", (1,)),
    ]


def test_legacy_epoch_and_missing_dh_compression_are_accepted() -> None:
    """global_timestamp.epoch stands for sec, and no dh_compression means none."""
    frames = hand_made(
        [{"name": "a"}], [struct.pack("<d", 1.0)], main={"global_timestamp": {"epoch": 9, "ns": 8}}
    )
    message = Decoder().decode(frames)
    assert message is not None
    assert message.global_timestamp == (9, 8)


def test_hash_is_not_verified() -> None:
    """A hash that is not md5(frame 1) is still a valid cache key."""
    frames = hand_made([{"name": "a"}], [struct.pack("<d", 1.0)], main={"hash": "x"})
    message = Decoder().decode(frames)
    assert message is not None
    assert message.hash == "x"


@pytest.mark.parametrize("htype", ["bsr_stop-1.0", "bsr_reconnect-1.0", "something_else"])
def test_non_data_messages_return_none(htype: str) -> None:
    """Messages whose htype does not start with bsr_m are skipped."""
    assert Decoder().decode([json.dumps({"htype": htype, "sentMessages": 3}).encode()]) is None


def test_empty_channel_list_gives_an_empty_message() -> None:
    """A data header with no channels is legal and yields no data."""
    message = Decoder().decode(hand_made([], []))
    assert message is not None
    assert message.data == {}


def test_decoder_accepts_memoryview_and_bytearray_frames() -> None:
    """Frames may be any bytes-like objects."""
    frames = Encoder().encode({"a": np.arange(3.0)}, 1, (1, 0))
    message = Decoder().decode([bytearray(frame) for frame in frames])
    assert message is not None
    np.testing.assert_array_equal(message.data["a"], [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (object(), "cannot send"),
        (b"bytes", "cannot send"),
        (np.zeros(2, np.float16), "cannot carry"),
        (np.zeros(2, np.complex64), "cannot carry"),
        (["a", "b"], "cannot carry"),
    ],
)
def test_unsupported_values_raise_value_error_naming_the_channel(value: Any, match: str) -> None:
    """Values bsread cannot carry are a caller bug reported with the channel name."""
    with pytest.raises(ValueError, match=rf"'bad'.*{match}") as info:
        Encoder().encode({"bad": value}, 1, (1, 0))
    assert not isinstance(info.value, DecodeError)


def test_declared_shape_mismatch_raises() -> None:
    """A value whose shape differs from its declaration is rejected."""
    declared = {"x": Channel("x", "uint8", (2, 3))}
    with pytest.raises(ValueError, match="declared with shape"):
        Encoder().encode({"x": np.zeros((3, 2), np.uint8)}, 1, (1, 0), channels=declared)


@pytest.mark.parametrize("pulse_id", [-1, 2**64])
def test_encoder_rejects_pulse_ids_out_of_range(pulse_id: int) -> None:
    """Pulse ids must fit an unsigned 64-bit integer."""
    with pytest.raises(ValueError, match="pulse_id"):
        Encoder().encode({"a": 1.0}, pulse_id, (1, 0))


def test_encoder_never_sends_plain_lz4() -> None:
    """lz4 is receive-only: neither the encoder nor a declared channel may use it."""
    with pytest.raises(ValueError, match="compression"):
        Encoder(compression="lz4")
    with pytest.raises(ValueError, match="receive-only"):
        Encoder().encode(
            {"a": 1.0}, 1, channels={"a": Channel("a", "float64", (), compression="lz4")}
        )


def test_channel_rejects_unknown_type() -> None:
    """Channel validates its type name."""
    with pytest.raises(ValueError, match="unknown bsread type"):
        Channel("a", "complex128", ())


def test_channel_normalises_type_case() -> None:
    """Type names are case-insensitive."""
    assert Channel("a", "UInt16", [2]).type == "uint16"  # type: ignore[arg-type]
