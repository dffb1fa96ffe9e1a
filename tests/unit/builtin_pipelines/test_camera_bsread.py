"""The bsread source: psi-bsread's Sender is the external stream, ``generate()`` runs in-process.

Every port comes from ``free_port()`` on 127.0.0.1. PUB/SUB never sleeps a fixed time: the
sender repeats until the subscriber has joined and the comparison starts from the first message
received (bsread.md §5.3).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from bsread import BIND, CONNECT, PUB, PUSH, Sender
from zmq.utils.monitor import recv_monitor_message

from builtin_pipelines import camera_bsread
from builtin_pipelines.camera_bsread import configure, generate
from supervisor.contract import SocketMode
from supervisor.contract.bsread import Channel, DecodeError, Encoder, Message
from tests.support import free_port, wait_for
from tests.unit.runners.python.conftest import FakeSupervisor

H, W = 30, 40
T0 = 1_700_000_000
DEADLINE = 5.0  # seconds any one wait may take
MAX_TICK = 0.25  # the longest next() may take: receive_timeout (50 ms), on a loaded machine

# psi-bsread is a test-only peer that may warn about its own numpy/pyzmq use: only deprecations
# raised from its code (and its mflow transport) are ignored.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:(bsread|mflow)")

Item = tuple[dict[str, Any], int, tuple[int, int]]
Yielded = Message | DecodeError | None


def image(pulse_id: int) -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 3 + pulse_id).astype(np.uint16)


def sometimes_image(pulse_id: int) -> np.ndarray | None:
    return None if pulse_id % 2 else image(pulse_id)


def sometimes(pulse_id: int) -> np.int32 | None:
    return None if pulse_id % 2 else np.int32(-pulse_id)


# (name, channel function, metadata): functions are the only way psi-bsread keeps declared types.
CHANNELS: list[tuple[str, Callable[[int], Any], dict[str, Any]]] = [
    ("flag", lambda p: p % 2 == 0, {"type": "bool"}),
    ("count", lambda p: np.int32(-p), {"type": "int32"}),
    ("big", lambda p: np.uint64(2**64 - 1 - p), {"type": "uint64"}),
    ("energy", lambda p: p * 0.25, {"type": "float64"}),
    ("text", lambda p: f"Grüße {p} ✓", {"type": "string"}),
    ("wave", lambda p: np.arange(7, dtype=np.float32) * p, {"type": "float32", "shape": [7]}),
    ("image", image, {"type": "uint16", "shape": [W, H]}),
    ("sometimes", sometimes, {"type": "int32"}),
]


def expected(pulse_id: int) -> dict[str, Any]:
    return {name: function(pulse_id) for name, function, _ in CHANNELS}


def assert_channels(actual: dict[str, Any], want: dict[str, Any]) -> None:
    """Same names in the same order, same values of the same dtypes."""
    assert list(actual) == list(want)
    for name, value in want.items():
        if value is None or isinstance(value, str):
            assert actual[name] == value, name
        else:
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
            assert np.asarray(actual[name]).dtype == np.asarray(value).dtype, name


class Peers:
    """Senders and sources of one test; senders close first, so no send waits for linger."""

    def __init__(self) -> None:
        self.senders: list[Sender] = []
        self.sources: list[Iterator[Yielded]] = []
        self.longest_tick = 0.0

    def sender(
        self, port: int, mode: int = PUSH, conn_type: str = BIND, channels=CHANNELS
    ) -> Sender:
        sender = Sender(
            port=port,
            address="tcp://127.0.0.1",
            mode=mode,
            conn_type=conn_type,
            send_timeout=int(DEADLINE * 1000),
        )
        for name, function, metadata in channels:
            sender.add_channel(name, function, dict(metadata))
        self.senders.append(sender)
        return sender

    def source(self, parameters: dict[str, Any]) -> Iterator[Yielded]:
        source = generate(parameters)
        self.sources.append(source)
        assert self.tick(source) is None  # opens the socket; nothing can be there yet
        return source

    def tick(self, source: Iterator[Yielded]) -> Yielded:
        """One ``next()``, timed: the runner needs it back within a poll."""
        start = time.monotonic()
        item = next(source)
        self.longest_tick = max(self.longest_tick, time.monotonic() - start)
        return item

    def receive(self, source: Iterator[Yielded]) -> Item:
        """The next message the source yields, skipping idle ticks and malformed messages."""
        deadline = time.monotonic() + DEADLINE
        while not isinstance(item := self.tick(source), Message):
            assert time.monotonic() < deadline, "the source yielded nothing"
        return item.data, item.pulse_id, item.global_timestamp

    def join(self, source: Iterator[Yielded], sender: Sender, pulse_id: int) -> Item:
        """Send until the first message comes through (the PUB/SUB slow joiner)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            assert time.monotonic() < deadline, "no message came through"
            sender.send(pulse_id=pulse_id, timestamp=(T0, pulse_id))
            pulse_id += 1
            for _ in range(2):
                if isinstance(item := self.tick(source), Message):
                    return item.data, item.pulse_id, item.global_timestamp

    def close(self) -> None:
        for sender in self.senders:
            if sender.status_stream_open:
                sender.close()
        for source in self.sources:
            source.close()  # type: ignore[attr-defined]


@pytest.fixture
def peers() -> Iterator[Peers]:
    """Makes senders and sources, closes them after the test."""
    made = Peers()
    yield made
    made.close()
    assert made.longest_tick < MAX_TICK, f"next() blocked for {made.longest_tick:.3f} s"


def url(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("mode", "bind"),
    [("PULL", False), ("PULL", True), ("SUB", False), ("SUB", True)],
    ids=[
        "push-bind-pull-connect",
        "push-connect-pull-bind",
        "pub-bind-sub-connect",
        "pub-connect-sub-bind",
    ],
)
def test_every_channel_goes_out_with_its_pulse_id_and_timestamp(
    peers: Peers, mode: str, bind: bool
) -> None:
    """Types, strings, an image and a missing value come out exact, in order, on each topology."""
    port = free_port()
    source = peers.source({"source": url(port), "mode": mode, "bind": bind})
    sender = peers.sender(port, PUSH if mode == "PULL" else PUB, CONNECT if bind else BIND)
    sender.open()
    received = [peers.join(source, sender, 100)]
    first = received[0][1]
    for pulse_id in range(first + 1, first + 4):
        sender.send(pulse_id=pulse_id, timestamp=(T0, pulse_id))
        received.append(peers.receive(source))
    assert [pulse_id for _, pulse_id, _ in received] == list(range(first, first + 4))
    if mode == "PULL":
        assert first == 100  # nothing is lost to a slow joiner
    for data, pulse_id, timestamp in received:
        assert timestamp == (T0, pulse_id)
        assert_channels(data, expected(pulse_id))
        assert data["image"].shape == (H, W)
    assert {data["sometimes"] is None for data, _, _ in received} == {True, False}


def test_image_channel_is_renamed_and_geometry_added(peers: Peers, caplog) -> None:
    """image_channel goes out as image, in place; missing geometry is added, the stream's kept."""
    calibrated = np.linspace(-1.0, 1.0, W)
    channels = [
        ("CAM:GAIN", lambda p: 1.5, {"type": "float64"}),
        ("image", lambda p: np.ones((2, 2), np.uint8), {"type": "uint8", "shape": [2, 2]}),
        ("CAM:FPICTURE", sometimes_image, {"type": "uint16", "shape": [W, H]}),
        ("x_axis", lambda p: calibrated, {"type": "float64", "shape": [W]}),
    ]
    port = free_port()
    source = peers.source({"source": url(port), "mode": "PULL", "image_channel": "CAM:FPICTURE"})
    sender = peers.sender(port, channels=channels)
    sender.open()
    for pulse_id in (10, 11):
        sender.send(pulse_id=pulse_id, timestamp=(T0, 0))
        data, received_id, _ = peers.receive(source)
        assert received_id == pulse_id
        assert list(data) == ["CAM:GAIN", "image", "x_axis", "width", "height", "y_axis"]
        if pulse_id == 10:
            assert data["image"].dtype == np.uint16
            np.testing.assert_array_equal(data["image"], image(10))
        else:
            assert data["image"] is None  # missing stays missing; geometry from the header
        assert (data["width"], data["height"]) == (W, H)
        assert data["width"].dtype == data["height"].dtype == np.int64
        assert data["y_axis"].dtype == np.float32
        np.testing.assert_array_equal(data["y_axis"], np.arange(H))
        assert data["x_axis"].dtype == np.float64
        np.testing.assert_array_equal(data["x_axis"], calibrated)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["the stream's own 'image' channel is shadowed by 'CAM:FPICTURE'"]


def test_an_image_channel_not_in_the_stream_passes_it_on_with_one_warning(
    peers: Peers, caplog
) -> None:
    """A misnamed image_channel changes nothing and is reported once, not per message."""
    port = free_port()
    source = peers.source({"source": url(port), "mode": "PULL", "image_channel": "CAM:NOPE"})
    sender = peers.sender(port)
    sender.open()
    for pulse_id in (1, 2):
        sender.send(pulse_id=pulse_id, timestamp=(T0, pulse_id))
        data, _, _ = peers.receive(source)
        assert_channels(data, expected(pulse_id))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'CAM:NOPE' is not in the stream" in warnings[0]


def test_malformed_messages_are_dropped_counted_and_reported_rate_limited(
    peers: Peers, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad messages never stop the stream; one report per interval carries the counts."""
    monkeypatch.setattr(camera_bsread, "_REPORT_INTERVAL", 0.2)
    port = free_port()
    source = peers.source({"source": url(port), "mode": "PULL"})
    sender = peers.sender(port)
    sender.open()
    raw = sender.stream.socket  # the same connection, for frames no bsread sender would send
    truncated = Encoder().encode({"x": 1.0, "y": 2.0}, 5, (T0, 0))[:-2]

    def reports() -> list[logging.LogRecord]:
        return [r for r in caplog.records if hasattr(r, "malformed")]

    raw.send_multipart([b"not json", b"{}"])
    raw.send_multipart(truncated)
    raw.send(b'{"htype": "bsr_stop-1.0", "sentMessages": 3}')  # not data, not malformed
    sent = 2
    pulse_id = 0
    deadline = time.monotonic() + DEADLINE
    while len(reports()) < 2:  # one bad message per good one until the interval has passed
        assert time.monotonic() < deadline, f"reports: {[r.getMessage() for r in reports()]}"
        if pulse_id:
            raw.send_multipart(truncated)
            sent += 1
        sender.send(pulse_id=pulse_id, timestamp=(T0, pulse_id))
        data, received_id, _ = peers.receive(source)
        assert received_id == pulse_id
        assert_channels(data, expected(pulse_id))
        pulse_id += 1
    first, second = reports()
    assert (first.malformed, first.args[0]) == (1, 1)  # type: ignore[attr-defined,index]
    assert (second.malformed, second.args[0]) == (sent, sent - 1)  # type: ignore[attr-defined,index]
    assert "expected 6 for 2 channels" in second.getMessage()


def test_silence_for_camera_timeout_reopens_the_socket(peers: Peers, caplog) -> None:
    """No message for camera_timeout: a warning, a new connection, and data flows again."""
    port = free_port()
    sender = peers.sender(port)
    sender.open()
    monitor = sender.stream.socket.get_monitor_socket(zmq.EVENT_ACCEPTED)
    accepted = 0

    def connections() -> int:
        nonlocal accepted
        while monitor.poll(0):
            accepted += recv_monitor_message(monitor)["event"] == zmq.EVENT_ACCEPTED
        return accepted

    try:
        source = peers.source({"source": url(port), "mode": "PULL", "camera_timeout": 0.3})
        sender.send(pulse_id=1, timestamp=(T0, 1))
        assert peers.receive(source)[1] == 1
        last_message = time.monotonic()
        wait_for(connections, what="the first connection's monitor event")
        assert connections() == 1
        deadline = last_message + DEADLINE
        while connections() < 2:
            assert time.monotonic() < deadline, "the socket was not reopened"
            assert peers.tick(source) is None
        assert time.monotonic() - last_message >= 0.3
        (record,) = [r for r in caplog.records if hasattr(r, "reconnects")]
        assert record.reconnects == 1  # type: ignore[attr-defined]
        assert record.getMessage() == f"no message from {url(port)} for 0.3 s: reopening the socket"
        sender.send(pulse_id=2, timestamp=(T0, 2))
        assert peers.receive(source)[1] == 2
    finally:
        sender.stream.socket.disable_monitor()
        monitor.close(linger=0)


def test_a_busy_port_to_bind_is_retried_and_reported_once_it_lasts(
    peers: Peers, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bind to a port in use: idle ticks, a warning after the grace, the bind once it is free."""
    monkeypatch.setattr(camera_bsread, "_OPEN_GRACE", 0.2)
    port = free_port()
    context = zmq.Context()
    squatter = context.socket(zmq.PULL)
    squatter.bind(url(port))

    def reported() -> bool:
        return any("cannot bind" in record.getMessage() for record in caplog.records)

    try:
        start = time.monotonic()
        source = peers.source({"source": url(port), "mode": "PULL", "bind": True})
        assert not reported()  # a port just unbound is busy for a moment: not worth a warning
        deadline = start + DEADLINE
        while not reported():
            assert time.monotonic() < deadline, "the failing bind was never reported"
            assert peers.tick(source) is None
        assert time.monotonic() - start >= 0.2
    finally:
        squatter.close(linger=0)
        context.term()
    sender = peers.sender(port, conn_type=CONNECT)
    sender.open()
    sender.send(pulse_id=3, timestamp=(T0, 3))
    assert peers.receive(source)[1] == 3


def test_a_new_source_applies_live(peers: Peers) -> None:
    """Changing source in the live parameters reconnects to the new stream."""
    first_port, second_port = free_port(), free_port()
    parameters = {"source": url(first_port), "mode": "PULL"}
    source = peers.source(parameters)
    first, second = peers.sender(first_port), peers.sender(second_port)
    first.open()
    second.open()
    first.send(pulse_id=1, timestamp=(T0, 1))
    assert peers.receive(source)[1] == 1
    parameters["source"] = url(second_port)
    assert peers.tick(source) is None  # reopened on the new source; nothing there yet
    second.send(pulse_id=1000, timestamp=(T0, 1000))
    data, pulse_id, timestamp = peers.receive(source)
    assert (pulse_id, timestamp) == (1000, (T0, 1000))
    assert_channels(data, expected(1000))


@pytest.mark.parametrize(
    ("change", "quoted"),
    [
        ({"source": None}, "source must be a URL"),
        ({"source": "127.0.0.1:9999"}, "'127.0.0.1:9999'"),
        ({"source": "udp://127.0.0.1:9999"}, "'udp://127.0.0.1:9999'"),
        ({"source": "tcp://127.0.0.1:0"}, "'tcp://127.0.0.1:0'"),
        ({"source": "tcp://*:9999"}, "only be bound"),
        ({"mode": "PUB"}, "'PUB'"),
        ({"bind": "yes"}, "'yes'"),
        ({"receive_timeout": 100}, "got 100"),
        ({"receive_timeout": 0}, "got 0"),
        ({"camera_timeout": 0}, "got 0"),
        ({"camera_timeout": True}, "got True"),
        ({"image_channel": ""}, "got ''"),
        ({"queue_size": 0}, "got 0"),
        ({"queue_size": 2.5}, "got 2.5"),
    ],
)
def test_configure_refuses_bad_options_quoting_them(change: dict, quoted: str) -> None:
    """Each bad option is refused with a ValueError that names the key and quotes the value."""
    parameters = {"source": "tcp://127.0.0.1:9999", **change}
    with pytest.raises(ValueError, match=next(iter(change))) as info:
        configure(parameters)
    assert quoted in str(info.value)


def test_configure_accepts_the_documented_options() -> None:
    """The defaults, both modes in any case, binding to all interfaces and ipc are accepted."""
    configure({"source": "tcp://camera.psi.ch:9999"})
    configure(
        {
            "source": "tcp://*:9999",
            "bind": True,
            "mode": "pull",
            "receive_timeout": 1,
            "camera_timeout": 0.5,
            "image_channel": "CAM:FPICTURE",
            "queue_size": 1,
        }
    )
    configure({"source": "ipc:///tmp/camera", "mode": "SUB", "bind": None, "queue_size": None})


# -- under the Python runner: the status counts, the channels' own timestamps, declared types --

IOC_STAMPS = {"CAM:GAIN": (T0 - 3, 111_111_111), "CAM:NAME": (T0 - 2, 222_222_222)}


def ioc_message(encoder: Encoder, pulse_id: int, late: np.ndarray | None) -> list[Any]:
    """An IOC-like message: ``CAM:LATE`` declared int32[3] even when missing, and each present
    channel's timestamp frame holding its record's own time, not the global one."""
    frames = encoder.encode(
        {"CAM:LATE": late, "CAM:GAIN": pulse_id / 8, "CAM:NAME": f"n{pulse_id}"},
        pulse_id,
        (T0, pulse_id),
        {"CAM:LATE": Channel("CAM:LATE", "int32", (3,))},
    )
    frames = [bytes(frame) for frame in frames]
    for index, name in ((5, "CAM:GAIN"), (7, "CAM:NAME")):
        frames[index] = struct.pack("<qq", *IOC_STAMPS[name])
    return frames


def start_runner(tmp_path: Path, upstream_port: int, output_mode: SocketMode) -> FakeSupervisor:
    fake = FakeSupervisor(tmp_path)
    config = {"source": url(upstream_port), "mode": "PULL"}
    fake.start(builtin="camera_bsread", config=config, data=False, output_mode=output_mode)
    fake.handshake()
    return fake


@pytest.fixture
def upstream() -> Iterator[tuple[zmq.Socket, int]]:
    """A raw PUSH bound on a free port: the IOC, sending frames no bsread sender would."""
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.linger = 0
    sock.sndtimeo = int(DEADLINE * 1000)
    port = free_port()
    sock.bind(url(port))
    yield sock, port
    sock.close(linger=0)
    context.term()


def test_the_runner_counts_messages_and_malformed_ones_keeps_timestamps_and_types(
    tmp_path: Path, upstream: tuple[zmq.Socket, int]
) -> None:
    """messages_in, bytes_in and malformed in the status like DATA's; each channel's own
    timestamp survives; a channel missing in the first message keeps its declared int32[3]."""
    sock, port = upstream
    fake = start_runner(tmp_path, port, SocketMode.PUSH)
    try:
        output = fake.connect_output()
        encoder = Encoder()
        good = [ioc_message(encoder, 1, None), ioc_message(encoder, 2, np.array([1, -2, 3]))]
        bad = [[b"not json", b"{}"], good[1][:-2]]  # undecodable; frames missing
        sent_bytes = 0
        for frames in (good[0], *bad, good[1]):
            sock.send_multipart(frames)
            sent_bytes += sum(len(frame) for frame in frames)
        first, second = fake.receive(), fake.receive()
        assert not output.poll(100)  # the malformed ones went nowhere
        for message, late in ((first, None), (second, [1, -2, 3])):
            assert message.global_timestamp == (T0, message.pulse_id)
            assert message.channels[0] == Channel("CAM:LATE", "int32", (3,))  # never float64
            assert message.hash == first.hash  # one data header: the type never changed
            assert [message.timestamps[name] for name in IOC_STAMPS] == list(IOC_STAMPS.values())
            if late is None:
                assert message.data["CAM:LATE"] is None
            else:
                assert message.data["CAM:LATE"].dtype == np.int32
                np.testing.assert_array_equal(message.data["CAM:LATE"], late)
                assert message.timestamps["CAM:LATE"] == (T0, 2)  # its frame held the global
        status = fake.status_where(lambda s: s.messages_in >= 4 and s.messages_out >= 2)
        assert (status.messages_in, status.malformed, status.messages_out) == (4, 2, 2)
        assert status.bytes_in == sent_bytes
        assert status.errors == 0
        fake.expect_log(lambda record: "dropped 1 malformed message(s)" in record.message)
        assert fake.process is not None
        assert fake.process.poll() is None  # still running
    finally:
        fake.stop()


def test_psi_bsread_reads_each_channels_own_timestamp_back(
    tmp_path: Path, upstream: tuple[zmq.Socket, int]
) -> None:
    """PSI's reference receiver sees the IOC's per-channel timestamps on the republished stream."""
    from bsread import PULL, Source

    sock, port = upstream
    fake = start_runner(tmp_path, port, SocketMode.PUSH)
    try:
        host, output_port = fake.env.output_url.removeprefix("tcp://").rsplit(":", 1)
        encoder = Encoder()
        with Source(host=host, port=int(output_port), mode=PULL, receive_timeout=100) as source:
            sock.send_multipart(ioc_message(encoder, 7, np.array([4, 5, 6])))
            deadline = time.monotonic() + DEADLINE
            while (received := source.receive()) is None:
                assert time.monotonic() < deadline, "psi-bsread received nothing"
        data = received.data
        assert (data.pulse_id, data.global_timestamp, data.global_timestamp_offset) == (7, T0, 7)
        for name, stamp in IOC_STAMPS.items():
            value = data.data[name]
            assert (value.timestamp, value.timestamp_offset) == stamp, name
        assert data.data["CAM:NAME"].value == "n7"
        np.testing.assert_array_equal(data.data["CAM:LATE"].value, [4, 5, 6])
        assert data.data["CAM:LATE"].value.dtype == np.int32
    finally:
        fake.stop()
