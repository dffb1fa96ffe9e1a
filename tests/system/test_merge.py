"""Two streams merged by pulse id for real: images from one sender, scalars from PSI's Sender.

The pipeline is a camera pipeline (``process_image``) whose entry merges a bsread stream of
scalars: they reach it as ``bsdata``, pulse by pulse, as in CamServer's image + bsread merge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Decoder, Encoder
from tests.support import SupervisorProcess, free_port, wait_for

pytestmark = [
    pytest.mark.system,
    # psi-bsread is a test-only peer; it warns about its own use of numpy/pyzmq APIs.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

T0 = 1_700_000_000
PIPELINE = """
def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata):
    return {
        "image_sum": int(image.sum()),
        "energy": bsdata.get("energy", -1.0),
        "has_energy": int("energy" in bsdata),
    }
"""


@pytest.fixture
def senders() -> Iterator[tuple[zmq.Socket, Any, int, int]]:
    """Our PUSH of images and psi-bsread's PUSH of scalars, each on a free port."""
    from bsread import PUSH, Sender

    context = zmq.Context()
    images = context.socket(zmq.PUSH)
    images.linger = 0
    image_port = images.bind_to_random_port("tcp://127.0.0.1")
    scalar_port = free_port()
    scalars = Sender(port=scalar_port, address="tcp://127.0.0.1", mode=PUSH, send_timeout=5000)
    scalars.add_channel("energy", lambda pulse_id: pulse_id * 0.5, {"type": "float64"})
    scalars.open()
    try:
        yield images, scalars, image_port, scalar_port
    finally:
        scalars.close()
        images.close()
        context.term()


def image_frames(encoder: Encoder, pulse_id: int) -> list[Any]:
    image = np.full((8, 16), pulse_id % 1000, dtype=np.uint16)
    return encoder.encode({"image": image}, pulse_id, (T0, pulse_id))


def receive(sock: zmq.Socket, until_pulse: int, timeout: float = 20.0) -> list[Any]:
    decoder = Decoder()
    got = []
    deadline = time.monotonic() + timeout
    while not got or got[-1].pulse_id < until_pulse:
        assert time.monotonic() < deadline, f"got pulses up to {[m.pulse_id for m in got[-3:]]}"
        if sock.poll(100):
            message = decoder.decode(sock.recv_multipart(copy=False))
            if message is not None:
                got.append(message)
    return got


def test_a_camera_and_a_scalar_stream_are_delivered_together_pulse_by_pulse(
    senders: tuple[zmq.Socket, Any, int, int], start_supervisor, write_entry
) -> None:
    images, scalars, image_port, scalar_port = senders
    write_entry("merged.py", PIPELINE)
    entry = {
        "program": "merged.py",
        "input": {"url": f"tcp://127.0.0.1:{image_port}", "mode": "PULL"},
        "merge": [{"url": f"tcp://127.0.0.1:{scalar_port}", "mode": "PULL"}],
        # The images come in a burst: let the output queue hold it for our reader.
        "parameters": {"merge_wait": 0.3, "output_queue_size": 500},
    }
    write_entry("merged.json", json.dumps(entry))
    sup: SupervisorProcess = start_supervisor()
    created = sup.api("POST", "/instances", json={"name": "merged", "entry": "merged"})
    assert created.status_code == 201, created.text
    info = wait_for(lambda: (i := sup.instance("merged"))["ready"] and i, what="merged ready")
    assert info["merge_urls"] == [f"tcp://127.0.0.1:{scalar_port}"]

    context = zmq.Context()
    out = context.socket(zmq.SUB)
    out.linger = 0
    out.subscribe(b"")
    out.connect(info["stream"])
    try:
        wait_for(lambda: sup.instance("merged")["stats"]["clients"] == 1, what="our subscription")
        encoder = Encoder()
        # The scalars run ahead of the images, each stream misses one pulse of the other's.
        for pulse in range(1000, 1100):
            if pulse != 1050:
                scalars.send(pulse_id=pulse, timestamp=(T0, pulse))
        for pulse in range(1000, 1100):
            if pulse != 1060:
                images.send_multipart(image_frames(encoder, pulse))
        got = receive(out, until_pulse=1099)

        expected = [p for p in range(1000, 1100) if p not in (1050, 1060)]
        assert [m.pulse_id for m in got] == expected
        for message in got:
            assert message.data["energy"] == message.pulse_id * 0.5
            assert message.data["image_sum"] == 8 * 16 * (message.pulse_id % 1000)
            assert message.global_timestamp == (T0, message.pulse_id)  # the image's

        def counted() -> dict[str, float] | None:
            counters = sup.instance("merged")["stats"]["counters"]
            return counters if counters.get("merge_pulses") == len(expected) else None

        counters = wait_for(counted, what="the merge counters")
        assert counters["merge_in0_received"] == 99
        assert counters["merge_in1_received"] == 99
        assert counters["merge_in0_missing"] == 1  # 1060
        assert counters["merge_in1_missing"] == 1  # 1050
        assert counters["merge_incomplete_dropped"] == 2
        metrics = sup.client.get(sup.url + "/metrics").text
        assert 'pipevisor_instance_counter{instance="merged",name="merge_pulses"} 98' in metrics

        # Live: deliver incomplete pulses instead, without the missing stream's channels.
        sup.api("PATCH", "/instances/merged/config", json={"merge_missing": "deliver"})
        for pulse in range(1100, 1110):
            images.send_multipart(image_frames(encoder, pulse))
            if pulse != 1105:
                scalars.send(pulse_id=pulse, timestamp=(T0, pulse))
        got = receive(out, until_pulse=1109)
        assert [m.pulse_id for m in got] == list(range(1100, 1110))
        assert [m.data["has_energy"] for m in got] == [int(p != 1105) for p in range(1100, 1110)]
    finally:
        out.close()
        context.term()


def test_an_entry_that_merges_without_an_input_is_refused_with_a_reason(
    start_supervisor, write_entry
) -> None:
    write_entry("merged.py", PIPELINE)
    entry = {"program": "merged.py", "merge": ["tcp://127.0.0.1:9"]}
    write_entry("lonely.json", json.dumps(entry))
    sup: SupervisorProcess = start_supervisor()
    sup.api("POST", "/instances", json={"name": "lonely", "entry": "lonely"})
    info = sup.wait_state("lonely", "failed")
    assert "merges streams but has no input" in info["reason"]
