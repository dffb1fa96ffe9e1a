"""Interoperability with PSI's reference implementation, psi-bsread (bsread.md §5).

Our Encoder feeds bsread's `Source`, and bsread's `Sender` feeds our Decoder, over PUSH/PULL and
PUB/SUB on 127.0.0.1. PUB/SUB never sleeps a fixed time: the sender repeats until the subscriber
has joined, and the comparison starts from the first message received.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import numpy as np
import pytest
import zmq
from bsread import BIND, PUB, PULL, PUSH, SUB, Sender, Source

from supervisor.contract.bsread import Decoder, Encoder, Message
from tests.bsread_vectors import ioc_style_message

H, W = 40, 60
N_MESSAGES = 6
DEADLINE_S = 5.0
POLL_MS = 50
COMPRESSIONS = [
    pytest.param("none", "none", id="plain"),
    pytest.param("bitshuffle_lz4", "none", id="values-compressed"),
    pytest.param("bitshuffle_lz4", "bitshuffle_lz4", id="all-compressed"),
    pytest.param("none", "bitshuffle_lz4", id="header-compressed"),
]


def image(pulse_id: int) -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint16).reshape(H, W) + pulse_id).astype(np.uint16)


def wave(pulse_id: int) -> np.ndarray:
    return np.arange(1003, dtype=np.int32) * pulse_id


def sometimes(pulse_id: int) -> float | None:
    return None if pulse_id % 3 == 1 else float(pulse_id)


def expected(pulse_id: int) -> dict[str, Any]:
    """The values of one test message; "late" joins at pulse 3, changing the header."""
    data: dict[str, Any] = {
        "flag": pulse_id % 2 == 0,
        "text": f"Grüße {pulse_id} ✓",
        "big": np.uint64(2**64 - 1 - pulse_id),
        "image": image(pulse_id),
        "wave": wave(pulse_id),
        "sometimes": sometimes(pulse_id),
    }
    if pulse_id >= 3:
        data["late"] = np.int8(-pulse_id)
    return data


def assert_value(actual: Any, want: Any) -> None:
    if want is None or isinstance(want, str):
        assert actual == want
    else:
        np.testing.assert_array_equal(actual, want)
        assert np.asarray(actual).dtype == np.asarray(want).dtype


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for bsread's Sender and Source, which need a number."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SocketFactory = Callable[[int], zmq.Socket]


@pytest.fixture
def make_socket() -> Iterator[SocketFactory]:
    """Creates sockets with linger 0 and closes them, and their context, after the test."""
    context = zmq.Context()
    made: list[zmq.Socket] = []

    def make(kind: int) -> zmq.Socket:
        sock = context.socket(kind)
        sock.linger = 0
        sock.sndtimeo = int(DEADLINE_S * 1000)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close(linger=0)
    context.term()


def bind(make_socket: SocketFactory, kind: int) -> tuple[zmq.Socket, int]:
    sock = make_socket(kind)
    sock.bind("tcp://127.0.0.1:0")
    return sock, int(sock.last_endpoint.decode().rsplit(":", 1)[1])


# --- our Encoder -> bsread Source -------------------------------------------------------------


def bsread_values(message: Any) -> dict[str, Any]:
    return {name: entry.value for name, entry in message.data.data.items()}


def receive_bsread(source: Source) -> Any:
    message = source.receive()
    assert message is not None, "bsread Source received nothing (timeout or undecodable)"
    return message


@pytest.mark.parametrize(("compression", "header_compression"), COMPRESSIONS)
def test_encoder_feeds_bsread_source_over_push_pull(
    make_socket: SocketFactory, compression: str, header_compression: str
) -> None:
    """bsread decodes every type, image, missing value and header change we send."""
    push, port = bind(make_socket, zmq.PUSH)
    encoder = Encoder(compression=compression, header_compression=header_compression)
    with Source(host="127.0.0.1", port=port, mode=PULL, receive_timeout=5000) as source:
        hashes = []
        for pulse_id in range(N_MESSAGES):
            frames = encoder.encode(expected(pulse_id), pulse_id, (1_700_000_000, pulse_id))
            push.send_multipart(frames, copy=False)
            message = receive_bsread(source)
            assert message.data.pulse_id == pulse_id
            assert message.data.global_timestamp == 1_700_000_000
            assert message.data.global_timestamp_offset == pulse_id
            assert message.data.format_changed == (pulse_id in (0, 3))
            hashes.append(message.data.hash)
            values = bsread_values(message)
            assert list(values) == list(expected(pulse_id))
            for name, want in expected(pulse_id).items():
                assert_value(values[name], want)
            flag = message.data.data["flag"]
            assert (flag.timestamp, flag.timestamp_offset) == (1_700_000_000, pulse_id)
        assert hashes[0] == hashes[2] != hashes[3] == hashes[5]


def test_encoder_pushes_into_a_binding_bsread_source(make_socket: SocketFactory) -> None:
    """The inverse topology: our PUSH connects to a bsread Source that binds PULL."""
    port = free_port()
    encoder = Encoder()
    with Source(
        host="127.0.0.1", port=port, mode=PULL, conn_type=BIND, receive_timeout=5000
    ) as source:
        push = make_socket(zmq.PUSH)
        push.connect(f"tcp://127.0.0.1:{port}")
        push.send_multipart(encoder.encode(expected(4), 4, (1, 2)), copy=False)
        message = receive_bsread(source)
    assert message.data.pulse_id == 4
    for name, want in expected(4).items():
        assert_value(message.data.data[name].value, want)


def test_encoder_feeds_bsread_source_over_pub_sub(make_socket: SocketFactory) -> None:
    """bsread's SUB Source decodes our PUB stream once it has joined."""
    pub, port = bind(make_socket, zmq.PUB)
    encoder = Encoder(compression="bitshuffle_lz4", header_compression="bitshuffle_lz4")
    with Source(host="127.0.0.1", port=port, mode=SUB, receive_timeout=POLL_MS) as source:
        deadline = time.monotonic() + DEADLINE_S
        pulse_id = 0
        first = None
        while first is None:  # the slow joiner: repeat until the subscription is up
            assert time.monotonic() < deadline, "bsread SUB never received from our PUB"
            pub.send_multipart(encoder.encode(expected(pulse_id), pulse_id, (5, 0)), copy=False)
            first = source.receive()
            pulse_id += 1
        received = [first]
        start = pulse_id
        for later in range(start, start + N_MESSAGES):
            pub.send_multipart(encoder.encode(expected(later), later, (5, 0)), copy=False)
        while received[-1].data.pulse_id < start + N_MESSAGES - 1:
            assert time.monotonic() < deadline, "bsread SUB stopped receiving"
            message = source.receive()
            if message is not None:
                received.append(message)
    pulse_ids = [message.data.pulse_id for message in received]
    assert pulse_ids == sorted(pulse_ids)
    assert received[0].data.format_changed
    for message in received:
        for name, want in expected(message.data.pulse_id).items():
            assert_value(message.data.data[name].value, want)


def test_ioc_style_message_decodes_the_same_in_bsread_and_ours(make_socket: SocketFactory) -> None:
    """A hand-written IOC-style message (defaults omitted, compressed header) reads alike."""
    frames = ioc_style_message(0.25, "Zürich")
    ours = Decoder().decode(frames)
    assert ours is not None
    push, port = bind(make_socket, zmq.PUSH)
    with Source(host="127.0.0.1", port=port, mode=PULL, receive_timeout=5000) as source:
        push.send_multipart(frames)
        theirs = bsread_values(receive_bsread(source))
    assert list(theirs) == list(ours.data)
    for name, value in ours.data.items():
        assert_value(theirs[name], value)
    assert ours.data["StringScalar"] == "Zürich"


# --- bsread Sender -> our Decoder -------------------------------------------------------------


def add_test_channels(sender: Sender, compression: str) -> None:
    """Channel functions with explicit metadata: the only way bsread keeps declared types."""
    extra = {"compression": compression} if compression != "none" else {}
    sender.add_channel("flag", lambda p: p % 2 == 0, {"type": "bool"})
    sender.add_channel("text", lambda p: f"Grüße {p} ✓", {"type": "string", **extra})
    sender.add_channel("big", lambda p: np.uint64(2**64 - 1 - p), {"type": "uint64", **extra})
    sender.add_channel("image", image, {"type": "uint16", "shape": [W, H], **extra})
    sender.add_channel("wave", wave, {"type": "int32", "shape": [1003], **extra})
    sender.add_channel("sometimes", sometimes, {"type": "float64", "shape": [1]})


def receive_ours(sock: zmq.Socket, decoder: Decoder, timeout_ms: int = 5000) -> Message | None:
    if not sock.poll(timeout_ms):
        return None
    message = decoder.decode(sock.recv_multipart(copy=False))
    assert message is not None
    return message


@pytest.mark.parametrize(("compression", "header_compression"), COMPRESSIONS)
def test_bsread_sender_feeds_our_decoder_over_push_pull(
    make_socket: SocketFactory, compression: str, header_compression: str
) -> None:
    """Our Decoder reads bsread's stream, including a channel added mid-stream."""
    port = free_port()
    sender = Sender(
        port=port,
        address="tcp://127.0.0.1",
        mode=PUSH,
        data_header_compression=None if header_compression == "none" else header_compression,
        send_timeout=int(DEADLINE_S * 1000),
    )
    add_test_channels(sender, compression)
    pull = make_socket(zmq.PULL)
    decoder = Decoder()
    with sender:
        pull.connect(f"tcp://127.0.0.1:{port}")
        messages = []
        for pulse_id in range(N_MESSAGES):
            if pulse_id == 3:
                sender.add_channel("late", lambda p: np.int8(-p), {"type": "int8"})
            sender.send(pulse_id=pulse_id, timestamp=(1_700_000_000, 10 + pulse_id))
            message = receive_ours(pull, decoder)
            assert message is not None, f"no message for pulse {pulse_id}"
            messages.append(message)
    for pulse_id, message in enumerate(messages):
        assert message.pulse_id == pulse_id
        assert message.global_timestamp == (1_700_000_000, 10 + pulse_id)
        assert list(message.data) == list(expected(pulse_id))
        for name, want in expected(pulse_id).items():
            assert_value(message.data[name], want)
            stamp = None if want is None else (1_700_000_000, 10 + pulse_id)
            assert message.timestamps[name] == stamp
    assert [m.format_changed for m in messages] == [True, False, False, True, False, False]
    assert messages[0].channels[3].shape == (H, W)
    assert messages[0].channels[3].compression == compression


def test_bsread_sender_feeds_our_decoder_over_pub_sub(make_socket: SocketFactory) -> None:
    """Our SUB socket decodes bsread's PUB stream once it has joined."""
    port = free_port()
    sender = Sender(
        port=port,
        address="tcp://127.0.0.1",
        mode=PUB,
        data_header_compression="bitshuffle_lz4",
        send_timeout=int(DEADLINE_S * 1000),
    )
    add_test_channels(sender, "bitshuffle_lz4")
    sub = make_socket(zmq.SUB)
    sub.subscribe(b"")
    decoder = Decoder()
    received: list[Message] = []
    with sender:
        sub.connect(f"tcp://127.0.0.1:{port}")
        deadline = time.monotonic() + DEADLINE_S
        pulse_id = 0
        while not received:  # the slow joiner: repeat until the subscription is up
            assert time.monotonic() < deadline, "our SUB never received from bsread's PUB"
            sender.send(pulse_id=pulse_id, timestamp=(7, 0))
            first = receive_ours(sub, decoder, POLL_MS)
            if first is not None:
                received.append(first)
            pulse_id += 1
        last = pulse_id + N_MESSAGES - 1
        for later in range(pulse_id, last + 1):
            sender.send(pulse_id=later, timestamp=(7, 0))
        while received[-1].pulse_id < last:
            assert time.monotonic() < deadline, "our SUB stopped receiving"
            message = receive_ours(sub, decoder, POLL_MS)
            if message is not None:
                received.append(message)
    assert received[0].format_changed
    assert not any(message.format_changed for message in received[1:])
    for message in received:
        want = expected(message.pulse_id)
        for name in ("flag", "text", "big", "image", "wave", "sometimes"):
            assert_value(message.data[name], want[name])
