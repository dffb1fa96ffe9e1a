"""Fuzzing the decoder: whatever arrives, decode() returns Message or None or raises DecodeError."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.contract.bsread import DecodeError, Decoder, Encoder, Message

_DATA = {
    "img": np.arange(60, dtype=np.uint16).reshape(6, 10),
    "w": np.arange(1003, dtype=np.int32),
    "x": 2.5,
    "b": True,
    "s": "Grüße",
    "n": None,
}
SEEDS = [
    [bytes(frame) for frame in Encoder(values, header).encode(_DATA, 5, (1, 2))]
    for values in ("none", "bitshuffle_lz4")
    for header in ("none", "bitshuffle_lz4")
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
channel_entries = st.fixed_dictionaries(
    {"name": st.sampled_from(["img", "w", "x", "b"]) | json_values},
    optional={
        "type": st.sampled_from(["int8", "UINT16", "int32", "float64", "string", "bool", "x"])
        | json_values,
        "shape": st.lists(st.integers(-2, 2000), max_size=3) | json_values,
        "encoding": st.sampled_from(["little", "big", ">", "BIG"]) | json_values,
        "compression": st.sampled_from(["none", "bitshuffle_lz4", "lz4", "zip"]) | json_values,
    },
)
main_headers = st.fixed_dictionaries(
    {},
    optional={
        "htype": st.sampled_from(["bsr_m-1.1", "bsr_m-1.0", "bsr_stop-1.0"]) | json_values,
        "pulse_id": st.integers(-5, 2**65) | json_values,
        "hash": st.text(max_size=4) | json_values,
        "global_timestamp": st.fixed_dictionaries(
            {}, optional={"sec": json_values, "epoch": st.integers(), "ns": json_values}
        )
        | json_values,
        "dh_compression": st.sampled_from(["none", "bitshuffle_lz4", "lz4", None]) | json_values,
    },
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> list[bytes]:
    frames = list(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["flip", "truncate", "extend", "drop", "add", "main", "header"])
        )
        index = draw(st.integers(0, max(len(frames) - 1, 0)))
        if kind == "add":
            frames.insert(index, draw(st.binary(max_size=24)))
        elif not frames:
            continue
        elif kind == "drop":
            del frames[index]
        elif kind == "flip" and frames[index]:
            position = draw(st.integers(0, len(frames[index]) - 1))
            frame = bytearray(frames[index])
            frame[position] ^= draw(st.integers(1, 255))
            frames[index] = bytes(frame)
        elif kind == "truncate":
            frames[index] = frames[index][: draw(st.integers(0, len(frames[index])))]
        elif kind == "extend":
            frames[index] += draw(st.binary(min_size=1, max_size=16))
        elif kind == "main":
            frames[0] = json.dumps(draw(main_headers | json_values)).encode()
        elif kind == "header":
            channels = draw(st.lists(channel_entries, max_size=4) | json_values)
            header: Any = draw(st.just({"channels": channels}) | json_values)
            frames[1] = json.dumps(header).encode()
            main = {"htype": "bsr_m-1.1", "pulse_id": 1, "hash": str(len(frames[1]))}
            frames[0] = json.dumps(main).encode()
    return frames


def check(decoder: Decoder, frames: list[bytes]) -> None:
    try:
        result = decoder.decode(frames)
    except DecodeError:
        return
    assert result is None or isinstance(result, Message)


@FUZZ
@given(frames=mutated_messages())
def test_mutated_messages_only_decode_or_raise_decode_error(frames: list[bytes]) -> None:
    """Flipped, truncated, extended, dropped or added frames never escape as other errors."""
    decoder = Decoder()
    check(decoder, frames)
    message = decoder.decode(SEEDS[0])
    assert message is not None
    assert message.data["s"] == "Grüße"


@FUZZ
@given(frames=st.lists(st.binary(max_size=40), max_size=8))
def test_random_frames_only_decode_or_raise_decode_error(frames: list[bytes]) -> None:
    """Arbitrary bytes are rejected cleanly."""
    check(Decoder(), frames)


def test_seeds_decode() -> None:
    """The unmutated seed messages are valid, so the fuzzing starts from real messages."""
    for seed in SEEDS:
        message = Decoder().decode(seed)
        assert message is not None
        np.testing.assert_array_equal(message.data["w"], _DATA["w"])
