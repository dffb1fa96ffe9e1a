"""Fan-out and fan-in for real: a PUSH camera deals frames to two workers, a fan-in gathers.

The workers take a random time per frame, so their outputs interleave out of order; the fan-in
(the passthrough builtin with a list as input) hands every pulse on once, in pulse-id order.
"""

from __future__ import annotations

import json
import time

import pytest
import zmq

from supervisor.contract.bsread import Decoder
from tests.support import SupervisorProcess, wait_for

pytestmark = pytest.mark.system

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {
        "width": 32,
        "height": 24,
        "rate": 100,
        "deterministic": True,
        "pulse_id_start": 5000,
    },
    "output": {"mode": "PUSH"},
}
WORKER = """
import os
import random
import time

def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata):
    time.sleep(random.uniform(0.0, 0.03))  # at its own pace: outputs cross
    return {"worker": os.environ["PIPEVISOR_INSTANCE"], "total": int(image.sum())}
"""


def test_two_workers_fed_by_one_push_are_gathered_in_pulse_id_order(
    start_supervisor, write_entry
) -> None:
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("worker.py", WORKER)
    # Each worker keeps every frame it is dealt (no latest-wins), and its PUSH output waits
    # for the fan-in (a PUB would lose what it sent before the fan-in's SUB joined).
    worker = {
        "program": "worker.py",
        "input": "cam",
        "parameters": {"queue_size": 50},
        "output": {"mode": "PUSH"},
    }
    write_entry("worker.json", json.dumps(worker))
    write_entry(
        "fanin.json", json.dumps({"builtin": "passthrough", "input": ["worker1", "worker2"]})
    )
    sup: SupervisorProcess = start_supervisor()
    for name in ("worker1", "worker2"):
        body = {"name": name, "entry": "worker", "start": False}
        assert sup.api("POST", "/instances", json=body).status_code == 201
    created = sup.api("POST", "/instances", json={"name": "fanin", "entry": "fanin"})
    assert created.status_code == 201, created.text
    info = wait_for(lambda: (i := sup.instance("fanin"))["ready"] and i, what="fan-in ready")
    assert len(info["gather_urls"]) == 1  # worker2's; worker1's is DATA
    for name in ("worker1", "worker2", "cam"):  # the fan-in started its inputs, they theirs
        wait_for(lambda n=name: sup.instance(n)["ready"], what=f"{name} ready")

    # Until the fan-in has joined a worker, that worker's outputs go nowhere: start reading
    # once both deliver to it.
    def both_deliver() -> bool:
        counters = sup.instance("fanin")["stats"]["counters"]
        return all(counters.get(f"gather_in{i}_received", 0) > 0 for i in (0, 1))

    wait_for(both_deliver, what="both workers delivering to the fan-in")
    context = zmq.Context()
    out = context.socket(zmq.SUB)
    out.linger = 0
    out.subscribe(b"")
    out.connect(info["stream"])
    wait_for(lambda: sup.instance("fanin")["stats"]["clients"] == 1, what="our subscription")
    decoder = Decoder()
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 200:
            assert time.monotonic() < deadline, f"{len(got)} messages from the fan-in"
            if out.poll(100):
                message = decoder.decode(out.recv_multipart(copy=False))
                if message is not None:
                    got.append(message)
    finally:
        out.close()
        context.term()

    pulses = [m.pulse_id for m in got]
    assert pulses == sorted(pulses), "the fan-in's output is in pulse-id order"
    assert len(set(pulses)) == len(pulses)
    assert pulses[-1] - pulses[0] == len(pulses) - 1, "no pulse lost between the first and last"
    workers = {m.data["worker"] for m in got}
    assert workers == {"worker1", "worker2"}, "both workers took part"
    counters = sup.instance("fanin")["stats"]["counters"]
    assert counters["gather_in0_received"] > 0
    assert counters["gather_in1_received"] > 0
    assert counters["gather_late"] == 0
