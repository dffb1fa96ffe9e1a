"""``pipevisor receive``: a real bsread stream on loopback, read and printed by the CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Encoder
from tests.live_server import LiveServer, Run

PROFILE = np.arange(100, dtype=np.int64)


@dataclass
class Sender:
    """A bsread sender in a thread: pulse ids from 1000, one message every 5 ms until stopped."""

    url: str
    mode: str  # the sender's socket type, "PUB" or "PUSH"
    garbage_first: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


def _send(sock: zmq.Socket, sender: Sender) -> None:
    encoder = Encoder()
    pulse_id = 1000
    if sender.garbage_first:
        sock.send_multipart([b"not json", b"{}"])
    while not sender.stop.is_set():
        data = {
            "x_center_of_mass": 12.5 + pulse_id,
            "x_profile": PROFILE * pulse_id,
            "roi": np.array([1, 2, 3], np.int32),
            "camera": "SIM-CAM",
        }
        try:
            sock.send_multipart(encoder.encode(data, pulse_id, (1_700_000_000, 5000)), zmq.NOBLOCK)
        except zmq.Again:  # PUSH with no reader yet: try the same pulse again
            sender.stop.wait(0.005)
            continue
        pulse_id += 1
        sender.stop.wait(0.005)


@contextmanager
def _sending(mode: str, garbage_first: bool = False) -> Iterator[Sender]:
    """A sender on a free loopback port, stopped and closed on exit."""
    context = zmq.Context()
    sock = context.socket(getattr(zmq, mode))
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    started = Sender(f"tcp://127.0.0.1:{port}", mode, garbage_first)
    thread = threading.Thread(target=_send, args=(sock, started), daemon=True)
    thread.start()
    try:
        yield started
    finally:
        started.stop.set()
        thread.join(timeout=5)
        sock.close()
        context.term()


@pytest.fixture(params=["PUB", "PUSH"])
def sender(request: pytest.FixtureRequest) -> Iterator[Sender]:
    """A sender on a free loopback port, PUB or PUSH."""
    with _sending(request.param) as started:
        yield started


def _mode(sender: Sender) -> str:
    return "PULL" if sender.mode == "PUSH" else "SUB"


def test_receive_json_prints_one_object_per_message(run: Run, sender: Sender) -> None:
    """`receive URL -n 3 --json`: three messages in order, scalars as values, arrays summarised."""
    code, out, err = run(
        "receive", sender.url, "--mode", _mode(sender), "-n", "3", "--json", "--timeout", "20"
    )
    assert code == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    assert len(messages) == 3
    pulse_ids = [m["pulse_id"] for m in messages]
    assert pulse_ids == list(range(pulse_ids[0], pulse_ids[0] + 3))
    first = messages[0]
    assert first["global_timestamp"] == [1_700_000_000, 5000]
    data = first["data"]
    assert list(data) == ["x_center_of_mass", "x_profile", "roi", "camera"]
    assert data["x_center_of_mass"] == 12.5 + first["pulse_id"]
    assert data["x_profile"] == {
        "dtype": "int64",
        "shape": [100],
        "min": 0,
        "max": 99 * first["pulse_id"],
    }
    assert data["roi"] == [1, 2, 3]
    assert data["camera"] == "SIM-CAM"


def test_a_malformed_message_is_reported_and_skipped(run: Run) -> None:
    """Garbage before the stream is counted on stderr; the good messages still print.

    PUSH queues the garbage until the reader connects, so it is surely the first message read
    (a PUB would drop it before the subscription arrives)."""
    with _sending("PUSH", garbage_first=True) as sender:
        code, out, err = run("receive", sender.url, "--mode", "PULL", "-n", "2", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert "malformed message skipped (1)" in err


def test_receive_text_lists_channels_with_types(run: Run, sender: Sender) -> None:
    """Text output: a pulse line, then one line per selected channel with its bsread type."""
    code, out, err = run(
        "receive", sender.url, "--mode", _mode(sender), "-n", "1", "--channels", "x_profile,roi"
    )
    assert code == 0, err
    header, *lines = out.splitlines()
    pulse_id = int(header.split()[1])
    assert header.startswith(f"pulse_id {pulse_id}  2023-11-14T22:13:20.000005Z  4 channels")
    assert lines == [
        f"  x_profile  int64[100]        min 0  max {99 * pulse_id}",
        "  roi        int32[3]          [1, 2, 3]",
    ]


def test_values_prints_arrays_whole(run: Run, sender: Sender) -> None:
    """--values with --json gives the full array."""
    code, out, _ = run(
        "receive", sender.url, "--mode", _mode(sender), "-n", "1", "--json", "--values"
    )
    assert code == 0
    message = json.loads(out)
    assert message["data"]["x_profile"] == (PROFILE * message["pulse_id"]).tolist()


def test_an_instance_name_is_resolved_through_the_api(
    live: LiveServer, run: Run, sender: Sender
) -> None:
    """`receive NAME` reads the instance's stream, PULL for a PUSH output, SUB for PUB."""
    assert run("create", "cam1", "camera")[0] == 0
    info = live.fake.instances["cam1"]
    live.fake.instances["cam1"] = info.model_copy(
        update={"stream": sender.url, "output_mode": sender.mode}
    )
    code, out, err = run("receive", "cam1", "-n", "2", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert f"receiving {sender.url} ({_mode(sender)})" in err


def test_nothing_within_the_timeout_exits_1(run: Run) -> None:
    """A URL where nothing is sent: exit 1 after --timeout, saying how many arrived."""
    context = zmq.Context()
    sock = context.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        code, out, err = run("receive", f"tcp://127.0.0.1:{port}", "--timeout", "0.3")
    finally:
        sock.close()
        context.term()
    assert (code, out) == (1, "")
    assert f"0 message(s) from tcp://127.0.0.1:{port} in 0.3 s" in err


def test_an_unknown_instance_exits_1_quoting_it(live: LiveServer, run: Run) -> None:
    """`receive ghost` asks the node, which says there is no such instance."""
    code, _, err = run("receive", "ghost")
    assert code == 1
    assert "ghost" in err
