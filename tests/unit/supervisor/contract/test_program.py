"""The program side of CONFIG and LOG: ProgramChannels and its logging handler."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from supervisor.contract import (
    ConfigUpdate,
    ContractEnv,
    ContractLogHandler,
    LogRecord,
    ProgramChannels,
    dump_message,
    parse_log_record,
    parse_program_message,
)


class Peer:
    """The supervisor's ends: a ROUTER for CONFIG and a PULL for LOG."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.pull = self.context.socket(zmq.PULL)
        for sock in (self.router, self.pull):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, 5000)
            sock.bind("tcp://127.0.0.1:*")
        self.env = ContractEnv(
            instance="cam1-sp",
            run=3,
            config={"from": "env"},
            config_url=self.router.getsockopt_string(zmq.LAST_ENDPOINT),
            log_url=self.pull.getsockopt_string(zmq.LAST_ENDPOINT),
        )

    def receive(self):
        identity, frame = self.router.recv_multipart()
        return identity, parse_program_message(frame)

    def log(self) -> LogRecord:
        return parse_log_record(self.pull.recv())

    def close(self) -> None:
        self.router.close()
        self.pull.close()
        self.context.term()


@pytest.fixture
def peer() -> Iterator[Peer]:
    """The supervisor's sockets, bound on loopback."""
    peer = Peer()
    yield peer
    peer.close()


@pytest.fixture
def channels(peer: Peer) -> Iterator[ProgramChannels]:
    """A program's channels connected to ``peer``."""
    context = zmq.Context()
    channels = ProgramChannels(peer.env, context, program="test program 1.0", log_hwm=5)
    yield channels
    channels.close()
    context.term()


def test_hello_returns_the_supervisors_config(peer: Peer, channels: ProgramChannels) -> None:
    """hello() sends Hello with pid and program, and returns the ConfigUpdate answering it."""

    def answer() -> None:
        identity, hello = peer.receive()
        assert (hello.kind, hello.instance, hello.run) == ("hello", "cam1-sp", 3)
        assert hello.program == "test program 1.0"
        peer.router.send_multipart(
            [identity, dump_message(ConfigUpdate(seq=9, config={"from": "supervisor"}))]
        )

    thread = threading.Thread(target=answer)
    thread.start()
    update = channels.hello(timeout=5)
    thread.join()
    assert update == ConfigUpdate(seq=9, config={"from": "supervisor"})


def test_hello_times_out_with_a_warning_on_log(peer: Peer, channels: ProgramChannels) -> None:
    """Without an answer, hello() returns None after the timeout and warns on LOG."""
    start = time.monotonic()
    assert channels.hello(timeout=0.2) is None
    assert 0.2 <= time.monotonic() - start < 2
    record = peer.log()
    assert record.level == "warning"
    assert "environment" in record.message


def test_replies_and_status_reach_the_supervisor(peer: Peer, channels: ProgramChannels) -> None:
    """ready, status, config_ack and config_error arrive in order, with the instance and run."""
    channels.ready("tcp://127.0.0.1:9000")
    channels.status(messages_in=4, clients=2, last_pulse_id=77)
    channels.ack(1)
    channels.error(2, "gain='x' is not a number")
    messages = [peer.receive()[1] for _ in range(4)]
    assert [m.kind for m in messages] == ["ready", "status", "config_ack", "config_error"]
    assert messages[0].output_url == "tcp://127.0.0.1:9000"
    assert (messages[1].messages_in, messages[1].clients, messages[1].last_pulse_id) == (4, 2, 77)
    assert (messages[2].seq, messages[3].seq) == (1, 2)
    assert messages[3].message == "gain='x' is not a number"
    assert all((m.instance, m.run) == ("cam1-sp", 3) for m in messages)


def test_poll_config_returns_pending_updates_without_blocking(
    peer: Peer, channels: ProgramChannels
) -> None:
    """poll_config() returns the waiting updates in order, skipping invalid frames."""
    assert channels.poll_config() == []
    channels.ready()
    identity, _ = peer.receive()
    for frame in (
        dump_message(ConfigUpdate(seq=1, config={"a": 1})),
        b"not json",
        dump_message(ConfigUpdate(seq=2, config={"a": 2})),
    ):
        peer.router.send_multipart([identity, frame])
    deadline = time.monotonic() + 5
    updates: list[ConfigUpdate] = []
    while len(updates) < 2 and time.monotonic() < deadline:
        channels.config_socket.poll(100)
        updates += channels.poll_config()
    assert [u.seq for u in updates] == [1, 2]
    assert "ignored a CONFIG frame" in peer.log().message


def test_log_drops_are_counted_when_log_is_full() -> None:
    """With nobody reading LOG, records beyond the HWM are dropped and counted, never blocking."""
    context = zmq.Context()
    env = ContractEnv(instance="x", run=0, log_url="tcp://127.0.0.1:1")  # nobody listens there
    channels = ProgramChannels(env, context, log_hwm=5)
    start = time.monotonic()
    sent = [channels.log_message("info", f"record {i}") for i in range(50)]
    assert time.monotonic() - start < 1
    assert channels.log_drops == sent.count(False) >= 40
    channels.close()
    context.term()


def test_without_urls_every_method_is_a_no_op() -> None:
    """A program started outside the supervisor runs: nothing is sent, nothing blocks."""
    context = zmq.Context()
    channels = ProgramChannels(ContractEnv(instance="alone", run=0), context)
    assert channels.hello(timeout=5) is None
    assert channels.poll_config() == []
    channels.ready()
    channels.status(messages_in=1)
    channels.ack(0)
    assert channels.log_message("info", "nowhere") is False
    assert channels.config_socket is None
    assert not channels.has_log
    channels.close()
    context.term()


def test_handler_turns_python_records_into_structured_log_records(
    peer: Peer, channels: ProgramChannels
) -> None:
    """Level, logger, message, extra fields (repr if not JSON) and tracebacks are carried."""
    logger = logging.getLogger("test_program.handler")
    logger.propagate = False
    handler = ContractLogHandler(channels)
    logger.addHandler(handler)
    try:
        logger.warning("beam lost at %s", "BPM1", extra={"pulse_id": 12, "obj": object()})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("processing failed")
        logger.critical("the end")
    finally:
        logger.removeHandler(handler)
    warning, error, critical = peer.log(), peer.log(), peer.log()
    assert (warning.level, warning.logger) == ("warning", "test_program.handler")
    assert warning.message == "beam lost at BPM1"
    assert warning.fields["pulse_id"] == 12
    assert warning.fields["obj"].startswith("<object object")
    assert warning.exc is None
    assert error.level == "error"
    assert "ZeroDivisionError: division by zero" in error.exc
    assert "Traceback" in error.exc
    assert critical.level == "critical"
    assert abs(critical.time - time.time()) < 5
