"""An external bsread stream for real: psi-bsread's Sender -> camera_bsread -> two readers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Decoder, Message
from tests.support import SupervisorProcess, free_port, wait_for

pytestmark = [
    pytest.mark.system,
    # psi-bsread is a test-only peer that may warn about its own numpy/pyzmq use: only
    # deprecations raised from its code (and its mflow transport) are ignored.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(bsread|mflow)"),
]

H, W = 24, 32
T0 = 1_700_000_000
FIRST_PULSE = 5000
WANTED = 8  # messages each reader must get
DEADLINE = 20.0


def image(pulse_id: int) -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 5 + pulse_id).astype(np.uint16)


# (name, channel function, metadata), as an IOC-like bsread camera would send them.
CHANNELS: list[tuple[str, Any, dict[str, Any]]] = [
    ("CAM:FPICTURE", image, {"type": "uint16", "shape": [W, H]}),
    ("CAM:PULSE", lambda p: np.uint64(p), {"type": "uint64"}),
    ("CAM:GAIN", lambda p: p / 8, {"type": "float64"}),
    ("CAM:ROI", lambda p: np.array([p, -p, 3], np.int32), {"type": "int32", "shape": [3]}),
    ("CAM:NAME", lambda p: f"caméra {p}", {"type": "string"}),
    ("CAM:OK", lambda p: p % 3 != 0, {"type": "bool"}),
    ("CAM:SOMETIMES", lambda p: None if p % 2 else p * 1.5, {"type": "float64"}),
]


def expected(pulse_id: int) -> dict[str, Any]:
    return {name: function(pulse_id) for name, function, _ in CHANNELS}


def assert_channels(actual: dict[str, Any], pulse_id: int) -> None:
    want = expected(pulse_id)
    assert list(actual) == list(want)
    for name, value in want.items():
        if value is None or isinstance(value, str):
            assert actual[name] == value, name
        else:
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
            assert np.asarray(actual[name]).dtype == np.asarray(value).dtype, name


@pytest.fixture
def external_camera() -> Iterator[tuple[Any, int]]:
    """psi-bsread's Sender binding PUSH on a free port: the external bsread camera."""
    from bsread import PUSH, Sender

    port = free_port()
    sender = Sender(port=port, address="tcp://127.0.0.1", mode=PUSH, send_timeout=5000)
    for name, function, metadata in CHANNELS:
        sender.add_channel(name, function, dict(metadata))
    sender.open()
    yield sender, port
    sender.close()


def test_external_stream_is_republished_exactly(
    external_camera: tuple[Any, int], start_supervisor, write_entry
) -> None:
    """PSI's Source and our Decoder both read the sender's values and pulse ids back, exact."""
    from bsread import SUB, Source

    sender, port = external_camera
    entry = {
        "builtin": "camera_bsread",
        "parameters": {"source": f"tcp://127.0.0.1:{port}", "mode": "PULL"},
        "output": {"mode": "PUB"},
    }
    write_entry("bscam.json", json.dumps(entry))
    sup: SupervisorProcess = start_supervisor()
    response = sup.api("POST", "/instances", json={"name": "bscam", "entry": "bscam"})
    assert response.status_code == 201, response.text
    stream = wait_for(
        lambda: sup.instance("bscam")["ready"] and sup.instance("bscam")["stream"],
        timeout=15,
        what="bscam ready",
    )
    host, stream_port = stream.removeprefix("tcp://").rsplit(":", 1)

    context = zmq.Context()
    ours = context.socket(zmq.SUB)
    ours.linger = 0
    ours.subscribe(b"")
    ours.connect(stream)
    decoder = Decoder()
    mine: list[Message] = []
    theirs: list[Any] = []
    try:
        with Source(host=host, port=int(stream_port), mode=SUB, receive_timeout=20) as source:
            pulse_id = FIRST_PULSE
            deadline = time.monotonic() + DEADLINE
            # One message out, at most one in per reader: paced by the readers, no fixed sleep;
            # messages before a subscriber joined are lost (PUB), so compare what arrives.
            while len(mine) < WANTED or len(theirs) < WANTED:
                assert time.monotonic() < deadline, f"got {len(mine)}, {len(theirs)} messages"
                sender.send(pulse_id=pulse_id, timestamp=(T0, pulse_id))
                pulse_id += 1
                if ours.poll(20):
                    message = decoder.decode(ours.recv_multipart(copy=False))
                    assert message is not None
                    mine.append(message)
                if (message := source.receive()) is not None:
                    theirs.append(message)
    finally:
        ours.close(linger=0)
        context.term()

    for message in mine:
        assert message.global_timestamp == (T0, message.pulse_id)
        assert_channels(message.data, message.pulse_id)
    for message in theirs:
        data = message.data
        assert (data.global_timestamp, data.global_timestamp_offset) == (T0, data.pulse_id)
        assert_channels({name: entry.value for name, entry in data.data.items()}, data.pulse_id)
    for received in ([m.pulse_id for m in mine], [m.data.pulse_id for m in theirs]):
        assert received == list(range(received[0], received[0] + len(received)))  # none lost
        assert FIRST_PULSE <= received[0] < pulse_id
    stats = wait_for(
        lambda: (s := sup.instance("bscam")["stats"])["messages_out"] >= WANTED and s,
        what="the instance's status",
    )
    assert stats["errors"] == 0
