"""Malformed bsread messages: each raises DecodeError and leaves the decoder usable."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from supervisor.contract.bsread import DecodeError, Decoder, Encoder

Frames = list[Any]


def valid() -> Frames:
    data = {"a": np.arange(4, dtype=np.int32), "s": "text", "x": 1.5}
    return list(Encoder().encode(data, 10, (1, 2)))


def with_main(**changes: Any) -> Callable[[Frames], Frames]:
    def mutate(frames: Frames) -> Frames:
        main = json.loads(frames[0])
        main.update(changes)
        main = {key: value for key, value in main.items() if value is not ...}
        return [json.dumps(main).encode(), *frames[1:]]

    return mutate


def with_header(header: Any) -> Callable[[Frames], Frames]:
    """Replace the data header (and its hash, so it is re-parsed)."""

    def mutate(frames: Frames) -> Frames:
        raw = header if isinstance(header, bytes) else json.dumps(header).encode()
        main = json.loads(frames[0])
        main["hash"] = hashlib.md5(raw).hexdigest()
        return [json.dumps(main).encode(), raw, *frames[2:]]

    return mutate


def with_channel(index: int, **changes: Any) -> Callable[[Frames], Frames]:
    def mutate(frames: Frames) -> Frames:
        header = json.loads(bytes(frames[1]))
        header["channels"][index].update(changes)
        return with_header(header)(frames)

    return mutate


def with_frame(index: int, frame: Any) -> Callable[[Frames], Frames]:
    def mutate(frames: Frames) -> Frames:
        return [*frames[:index], frame, *frames[index + 1 :]]

    return mutate


MALFORMED: dict[str, Callable[[Frames], Frames]] = {
    "no-frames": lambda frames: [],
    "only-main-header": lambda frames: frames[:1],
    "frame-missing": lambda frames: frames[:-1],
    "frame-extra": lambda frames: [*frames, b""],
    "truncated-value": with_frame(2, b"\x00" * 15),
    "extended-value": with_frame(2, b"\x00" * 17),
    "bad-json-main": with_frame(0, b'{"htype": "bsr_m-1.1",'),
    "non-utf8-main": with_frame(0, b"\xff\xfe{}"),
    "main-not-object": with_frame(0, b"[1, 2]"),
    "main-without-htype": with_main(htype=...),
    "htype-not-string": with_main(htype=1),
    "pulse-id-float": with_main(pulse_id=1.5),
    "pulse-id-string": with_main(pulse_id="1"),
    "pulse-id-bool": with_main(pulse_id=True),
    "pulse-id-negative": with_main(pulse_id=-1),
    "pulse-id-too-big": with_main(pulse_id=2**64),
    "pulse-id-missing": with_main(pulse_id=...),
    "hash-missing": with_main(hash=...),
    "hash-not-string": with_main(hash=5),
    "bad-dh-compression": with_main(dh_compression="zip"),
    "global-timestamp-not-object": with_main(global_timestamp=5),
    "global-timestamp-float": with_main(global_timestamp={"sec": 1.5, "ns": 0}),
    "bad-json-data-header": with_header(b'{"channels": ['),
    "data-header-not-object": with_header([1]),
    "channels-not-list": with_header({"channels": {"a": 1}}),
    "channel-not-object": with_header({"channels": ["a"]}),
    "channel-without-name": with_header({"channels": [{"type": "int8"}]}),
    "duplicate-names": with_header({"channels": [{"name": "a"}, {"name": "a"}, {"name": "b"}]}),
    "unknown-type": with_channel(0, type="complex128"),
    "type-not-string": with_channel(0, type=4),
    "shape-not-list": with_channel(0, shape="4"),
    "shape-negative": with_channel(0, shape=[-4]),
    "shape-float": with_channel(0, shape=[4.0]),
    "unknown-compression": with_channel(0, compression="zip"),
    "shape-disagrees-with-value": with_channel(0, shape=[5]),
    "bad-bitshuffle-header": lambda frames: with_frame(2, b"\x00\x00\x00")(
        with_channel(0, compression="bitshuffle_lz4")(frames)
    ),
    "compressed-header-not-compressed": with_main(dh_compression="bitshuffle_lz4"),
    "invalid-utf8-string": with_frame(4, b"\xff\xfe"),
    "frame-is-str": with_frame(2, "not bytes"),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_raises_decode_error(mutate: Callable[[Frames], Frames]) -> None:
    """Each kind of malformed message raises DecodeError, a ValueError."""
    decoder = Decoder()
    with pytest.raises(DecodeError):
        decoder.decode(mutate(valid()))
    assert issubclass(DecodeError, ValueError)


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_does_not_poison_the_decoder(mutate: Callable[[Frames], Frames]) -> None:
    """After a malformed message the same decoder decodes a valid one, flagged as new format."""
    decoder = Decoder()
    with pytest.raises(DecodeError):
        decoder.decode(mutate(valid()))
    message = decoder.decode(valid())
    assert message is not None
    assert message.data["x"] == 1.5


def test_unknown_type_drops_the_whole_message() -> None:
    """An unknown type fails the message (we drop and count), unlike PSI's per-channel None."""
    frames = with_channel(1, type="float16")(valid())
    with pytest.raises(DecodeError, match="unknown type 'float16'"):
        Decoder().decode(frames)


def test_frame_count_error_names_the_counts() -> None:
    """The error for a wrong frame count quotes what was received and expected."""
    with pytest.raises(DecodeError, match="7 frames, expected 8"):
        Decoder().decode(valid()[:-1])


def test_timestamp_frame_of_8_bytes_is_tolerated() -> None:
    """A short timestamp frame is not an error: the global timestamp is used."""
    frames = with_frame(3, struct.pack("<q", 5))(valid())
    message = Decoder().decode(frames)
    assert message is not None
    assert message.timestamps["a"] == (1, 2)
