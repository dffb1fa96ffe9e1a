"""The C library (runners/c): its own unit tests, and its example program under a fake supervisor.

The example, threshold_projections, runs as a real process with hand-set PIPEVISOR_* variables:
the test binds the supervisor's ROUTER and PULL and the DATA PUSH, sends images made by our
Python Encoder, and reads the output with our Decoder and with PSI's psi-bsread handler.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from bsread.handlers.compact import Handler

from supervisor.contract import LogRecord, parse_log_record, parse_program_message
from supervisor.contract.bsread import Decoder, Encoder, Message

REPO = Path(__file__).resolve().parents[4]
C_DIR = REPO / "runners" / "c"
PROGRAM = C_DIR / "build" / "threshold_projections"
DEADLINE = 10.0
H, W = 48, 64
PROBE_PULSE = 1_000_000  # pulse ids from here on are probes, skipped by receive()


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    """Build the library and the examples, plain and sanitized, once for the module."""
    subprocess.run(
        ["make", "-s", "-C", str(C_DIR), "all", "sanitize"],
        check=True,
        capture_output=True,
        timeout=240,
    )


def thresholded(image: np.ndarray, threshold: float) -> dict[str, Any]:
    """What the example must send, by the definition in threshold_projections.c."""
    kept = image * (image >= threshold)
    return {
        "x_profile": kept.sum(axis=0, dtype=np.int64),
        "y_profile": kept.sum(axis=1, dtype=np.int64),
        "intensity": kept.sum(dtype=np.int64),
        "max_value": np.int64(kept.max()),
    }


class _Frames:
    """psi-bsread's receiver interface over frames already received."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = list(frames)

    def next(self, as_json: bool = False) -> Any:
        frame = self._frames.pop(0)
        return json.loads(frame) if as_json else frame

    def has_more(self) -> bool:
        return bool(self._frames)


class FakeSupervisor:
    """The supervisor's side of the contract for one threshold_projections process."""

    def __init__(self, config: dict[str, Any], program: Path = PROGRAM, gather: int = 0) -> None:
        self.program = program
        self.context = zmq.Context()
        self.router = self._bind(zmq.ROUTER)
        self.logs_socket = self._bind(zmq.PULL)
        self.data = self._bind(zmq.PUSH)
        self.data.setsockopt(zmq.SNDHWM, 1000)
        # A fan-in's other inputs (PIPEVISOR_GATHER), besides DATA.
        self.gathered = [self._bind(zmq.PUSH) for _ in range(gather)]
        self.output: zmq.Socket | None = None
        self.identity: bytes | None = None
        self.messages: list[Any] = []
        self.logs: list[LogRecord] = []
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.psi = Handler()
        env = {
            **os.environ,
            "PIPEVISOR_CONTRACT": "1",
            "PIPEVISOR_INSTANCE": "proj",
            "PIPEVISOR_RUN": "3",
            "PIPEVISOR_CONFIG": json.dumps(config),
            "PIPEVISOR_DATA_URL": self._endpoint(self.data),
            "PIPEVISOR_DATA_MODE": "PULL",
            "PIPEVISOR_OUTPUT_URL": "tcp://127.0.0.1:0",
            "PIPEVISOR_OUTPUT_MODE": "PUSH",
            "PIPEVISOR_CONFIG_URL": self._endpoint(self.router),
            "PIPEVISOR_LOG_URL": self._endpoint(self.logs_socket),
            "PIPEVISOR_STATUS_INTERVAL": "0.2",
            "PIPEVISOR_GATHER": json.dumps(
                [{"url": self._endpoint(s), "mode": "PULL"} for s in self.gathered]
            )
            if gather
            else "",
        }
        self.process = subprocess.Popen([str(program)], env=env, stderr=subprocess.PIPE)

    def _bind(self, kind: int) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind("tcp://127.0.0.1:*")
        return sock

    @staticmethod
    def _endpoint(sock: zmq.Socket) -> str:
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def expect(self, kind: str, **fields: Any) -> Any:
        """Wait for the next CONFIG message of this kind (and these field values)."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            self.collect_logs()
            if not self.router.poll(50):
                continue
            identity, frame = self.router.recv_multipart()
            self.identity = identity
            message = parse_program_message(frame)  # strict: an unknown field fails
            self.messages.append(message)
            assert (message.instance, message.run) == ("proj", 3)
            if message.kind == kind and all(getattr(message, k) == v for k, v in fields.items()):
                return message
        kinds = [m.kind for m in self.messages[-10:]]
        raise AssertionError(f"no {kind} {fields} within {DEADLINE} s; last seen {kinds}")

    def send_config(self, seq: int, config: dict[str, Any]) -> None:
        assert self.identity is not None
        frame = json.dumps({"kind": "config", "seq": seq, "config": config}).encode()
        self.router.send_multipart([self.identity, frame])

    def start(self, config: dict[str, Any], output_hwm: int = 1000) -> None:
        """Answer hello with the configuration, wait for ack and ready, connect the output."""
        hello = self.expect("hello")
        assert hello.contract == 1
        assert hello.pid == self.process.pid
        assert hello.program.startswith(self.program.name)
        self.send_config(0, config)
        self.expect("config_ack", seq=0)
        ready = self.expect("ready")
        self.output = self.context.socket(zmq.PULL)
        self.output.setsockopt(zmq.LINGER, 0)
        self.output.setsockopt(zmq.RCVHWM, output_hwm)
        self.output.connect(ready.output_url)
        self._wait_output_connected()

    def _wait_output_connected(self) -> None:
        """Probe until an output comes back: a PUSH output drops what it sends before we join."""
        assert self.output is not None
        deadline = time.monotonic() + DEADLINE
        probe = PROBE_PULSE
        while time.monotonic() < deadline:
            self.send_image(np.zeros((2, 2), np.uint8), probe)
            probe += 1
            if self.output.poll(100):
                self.output.recv_multipart()
                return
        raise AssertionError("the output never answered a probe")

    def collect_logs(self) -> None:
        while self.logs_socket.poll(0):
            self.logs.append(parse_log_record(self.logs_socket.recv()))

    def wait_log(self, *words: str) -> LogRecord:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            self.collect_logs()
            for record in self.logs:
                if all(word in record.message for word in words):
                    return record
            self.logs_socket.poll(50)
        raise AssertionError(f"no log with {words}; got {[r.message for r in self.logs]}")

    def send_image(self, image: np.ndarray, pulse_id: int, **extra: Any) -> None:
        frames = self.encoder.encode({"image": image, **extra}, pulse_id, (1_700_000_000, pulse_id))
        self.data.send_multipart(frames, copy=False)

    def receive(self) -> tuple[Message, Any]:
        """The next output message, decoded by our Decoder and by psi-bsread."""
        assert self.output is not None
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if not self.output.poll(50):
                continue
            frames = self.output.recv_multipart()
            message = self.decoder.decode(frames)
            assert message is not None
            if message.pulse_id < PROBE_PULSE:  # a late answer to a probe is skipped
                return message, self.psi.receive(_Frames(frames))
        raise AssertionError("no output message in time")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.context.destroy(linger=0)


@pytest.fixture
def supervisor() -> Iterator[FakeSupervisor]:
    fake = FakeSupervisor({"threshold": 0})
    try:
        yield fake
    finally:
        fake.close()


def assert_projections(message: Message, psi: Any, image: np.ndarray, threshold: float) -> None:
    want = thresholded(image, threshold)
    for name, value in want.items():
        np.testing.assert_array_equal(message.data[name], value)
        assert np.asarray(message.data[name]).dtype == np.int64
        np.testing.assert_array_equal(psi.data[name].value, value)


def test_c_unit_tests_pass_normal_and_sanitized() -> None:
    """`make test` runs the codec and contract tests plain and under ASan+UBSan, all passing."""
    done = subprocess.run(
        ["make", "-s", "-C", str(C_DIR), "test"], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.count("test_bsread: ") == 2
    assert "0 failed" in done.stderr


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int32])
def test_projections_equal_numpy_read_by_both_decoders(
    supervisor: FakeSupervisor, dtype: type
) -> None:
    """Every output matches numpy exactly, with the input's pulse id and timestamp."""
    threshold = 100
    supervisor.start({"threshold": threshold})
    rng = np.random.default_rng(7)
    high = min(np.iinfo(dtype).max, 1000)
    for pulse_id in range(10, 15):
        image = rng.integers(0, high, size=(H, W), endpoint=True).astype(dtype)
        supervisor.send_image(image, pulse_id, other=np.float64(1.5))
        message, psi = supervisor.receive()
        assert message.pulse_id == pulse_id == psi.pulse_id
        assert message.global_timestamp == (1_700_000_000, pulse_id)
        assert sorted(message.data) == ["intensity", "max_value", "x_profile", "y_profile"]
        assert_projections(message, psi, image, threshold)
    supervisor.wait_log("threshold_projections started as proj run 3")


def test_config_updates_are_acked_or_refused_quoting_the_key(supervisor: FakeSupervisor) -> None:
    """A good update is acked and used; a bad one is refused quoting key and value, old kept."""
    supervisor.start({"threshold": 0})
    supervisor.send_config(1, {"threshold": 2.5})
    supervisor.expect("config_ack", seq=1)
    supervisor.wait_log("threshold changes from 0 to 2.5")
    supervisor.send_config(2, {"threshold": "abc"})
    error = supervisor.expect("config_error", seq=2)
    assert "'threshold'" in error.message
    assert '"abc"' in error.message
    supervisor.send_config(3, {"threshold": -1})
    error = supervisor.expect("config_error", seq=3)
    assert "'threshold'" in error.message
    assert "-1" in error.message
    image = np.arange(H * W, dtype=np.uint16).reshape(H, W) % 7
    supervisor.send_image(image, 1)
    message, psi = supervisor.receive()
    assert_projections(message, psi, image, 2.5)  # 2 dropped, 3 kept


def test_malformed_input_is_counted_and_the_program_goes_on(supervisor: FakeSupervisor) -> None:
    """Garbage and bitshuffle_lz4 are counted as malformed and logged; data still flows."""
    supervisor.start({"threshold": 0})
    supervisor.data.send_multipart([b"not json", b"x"])
    compressed = Encoder(compression="bitshuffle_lz4")
    frames = compressed.encode({"cam": np.ones((4, 4), np.uint16)}, 5, (1, 2))
    supervisor.data.send_multipart(frames)
    image = np.full((H, W), 3, np.uint8)
    supervisor.send_image(image, 6)
    message, psi = supervisor.receive()
    assert_projections(message, psi, image, 0)
    status = supervisor.expect("status", malformed=2, last_pulse_id=6)
    assert status.messages_in >= 4  # the probes, 2 malformed, 1 image
    assert status.messages_out >= 2
    assert status.last_pulse_id == 6
    assert status.bytes_in > 0
    assert status.bytes_out > 0
    assert status.errors == 0
    assert status.processing_time_max >= status.processing_time_avg >= 0
    record = supervisor.wait_log("not supported by the C library")
    assert "'cam'" in record.message
    assert "bitshuffle_lz4" in record.message
    assert record.level == "warning"
    assert record.instance == "proj"
    assert record.run == 3


def test_sigterm_exits_0_after_a_last_status(supervisor: FakeSupervisor) -> None:
    """SIGTERM ends the loop: the program closes its sockets and exits 0."""
    supervisor.start({"threshold": 0})
    supervisor.expect("status")
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.process.wait(timeout=DEADLINE) == 0
    supervisor.wait_log("threshold_projections stops")


def test_refused_initial_config_exits_3() -> None:
    """An initial configuration the program refuses is answered with config_error and exit 3."""
    fake = FakeSupervisor({"threshold": 0})
    try:
        fake.expect("hello")
        fake.send_config(0, {"threshold": [1]})
        error = fake.expect("config_error", seq=0)
        assert "'threshold'" in error.message
        assert "[1]" in error.message
        assert fake.process.wait(timeout=DEADLINE) == 3
    finally:
        fake.close()


@pytest.mark.parametrize("build", ["build", "build/sanitize"])
def test_passthrough_forwards_every_channel_exactly(build: str) -> None:
    """passthrough: values, types, shapes, missing values and strings come back as sent;
    big-endian values (which the decoder swaps, so they are copied) too. The ASan+UBSan build
    exits 0 after SIGTERM: no leak of the frames it shared, no error."""
    fake = FakeSupervisor({}, program=C_DIR / build / "passthrough")
    try:
        fake.start({})
        image = np.arange(H * W, dtype=np.uint16).reshape(H, W)
        big = np.arange(6, dtype=">i4").reshape(2, 3)
        for pulse_id in range(20, 23):
            fake.send_image(image + pulse_id, pulse_id, big=big, name="cam é", gone=None)
            message, psi = fake.receive()
            assert message.pulse_id == pulse_id
            assert list(message.data) == ["image", "big", "name", "gone"]
            np.testing.assert_array_equal(message.data["image"], image + pulse_id)
            assert message.data["image"].dtype == np.uint16
            np.testing.assert_array_equal(message.data["big"], big)
            assert message.data["name"] == "cam é"
            assert message.data["gone"] is None
            np.testing.assert_array_equal(psi.data["image"].value, image + pulse_id)
        status = fake.expect("status")
        while status.messages_out < 4:  # the three and an answered probe (earlier ones drop)
            status = fake.expect("status")
        assert (status.malformed, status.errors) == (0, 0)
        assert status.messages_in == status.messages_out + status.output_drops
        fake.process.send_signal(signal.SIGTERM)
        assert fake.process.wait(timeout=DEADLINE) == 0, fake.process.stderr.read().decode()
    finally:
        fake.close()


def test_a_connected_push_consumer_gets_every_message_and_is_counted() -> None:
    """A slow PUSH consumer gets backpressure, not drops (output_wait), and shows in clients.

    40 images of 8 MB are queued at once and read one every 20 ms by a consumer that holds one
    message in ZMQ: without the wait, what the TCP buffers and ZMQ's queues cannot hold (about
    a dozen such images) would be dropped."""
    fake = FakeSupervisor({}, program=C_DIR / "build" / "passthrough")
    try:
        fake.start({}, output_hwm=1)
        image = np.zeros((2000, 2000), np.uint16)
        for pulse_id in range(100, 140):
            fake.send_image(image, pulse_id)
        received = []
        for _ in range(40):
            received.append(fake.receive()[0].pulse_id)
            time.sleep(0.02)  # the slow consumer (a writer), not a wait for readiness
        assert received == list(range(100, 140))
        status = fake.expect("status")
        while status.messages_out < 41:
            status = fake.expect("status")
        assert status.clients == 1
    finally:
        fake.close()


def test_a_fan_in_reads_every_gathered_input_as_data() -> None:
    """With PIPEVISOR_GATHER, DATA also reads the other inputs: every message of each."""
    fake = FakeSupervisor({}, program=C_DIR / "build" / "passthrough", gather=2)
    try:
        fake.start({})
        image = np.arange(12, dtype=np.uint16).reshape(3, 4)
        senders = [fake.data, *fake.gathered]
        for pulse_id in range(200, 230):
            frames = fake.encoder.encode({"image": image}, pulse_id, (1_700_000_000, pulse_id))
            senders[pulse_id % 3].send_multipart(frames)
        received = sorted(fake.receive()[0].pulse_id for _ in range(30))
        assert received == list(range(200, 230))
    finally:
        fake.close()


def test_a_gathered_input_of_another_mode_is_refused_at_start() -> None:
    """DATA is one socket: a gathered input must use its mode, or the program does not start."""
    env = {
        **os.environ,
        "PIPEVISOR_INSTANCE": "fanin",
        "PIPEVISOR_DATA_URL": "tcp://127.0.0.1:9",
        "PIPEVISOR_DATA_MODE": "PULL",
        "PIPEVISOR_GATHER": json.dumps([{"url": "tcp://127.0.0.1:9", "mode": "SUB"}]),
    }
    done = subprocess.run(
        [str(C_DIR / "build" / "passthrough")], env=env, capture_output=True, timeout=DEADLINE
    )
    assert done.returncode != 0
    assert b"its mode differs from PIPEVISOR_DATA_MODE" in done.stderr


def test_a_bad_output_wait_is_refused_by_the_library() -> None:
    """output_wait is the library's own key: a bad value is a config_error quoting it."""
    fake = FakeSupervisor({}, program=C_DIR / "build" / "passthrough")
    try:
        fake.start({})
        fake.send_config(1, {"output_wait": "long"})
        error = fake.expect("config_error", seq=1)
        assert "config key 'output_wait' must be a number of seconds" in error.message
        assert '"long"' in error.message
    finally:
        fake.close()
