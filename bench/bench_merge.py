"""Merge: two 100 Hz streams aligned by pulse id for a minute, loss and added latency.

A real ``pipevisor serve`` runs a Python pipeline whose entry merges two streams: images
(1280x1024 uint16 by default, with the time they were sent) and scalars (with theirs), both
sent by this script at 100 Hz on PUSH sockets, the scalars a random 0-5 ms before or after
the image of the same pulse. The pipeline returns both send times; a SUB here notes when each
pulse arrives. Latency of a merged pulse: from the later of its two sends to its arrival.

Baseline, in the same run: the same image stream through the same pipeline without a merge
(latency from its send). Target: no pulse lost over the merged window, and the merged p99
latency under 20 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from _harness import SupervisorServer, check_clean, summary, wait_for

from supervisor.contract.bsread import Decoder, Encoder

PIPELINE = """
def process(data, pulse_id, timestamp, parameters):
    return {
        "image_sent": data["image_sent"],
        "scalar_sent": data.get("scalar_sent", data["image_sent"]),
        "rows": int(data["image"].shape[0]),
    }
"""
RATE = 100.0


def send(
    images: zmq.Socket,
    scalars: zmq.Socket | None,
    image: np.ndarray,
    seconds: float,
    first_pulse: int,
    stop: threading.Event,
) -> int:
    """Send both streams at RATE for ``seconds``; returns the number of pulses sent."""
    image_encoder, scalar_encoder = Encoder(), Encoder()
    rng = random.Random(1)
    start = time.perf_counter()
    sent = 0
    while not stop.is_set() and sent < seconds * RATE:
        pulse = first_pulse + sent
        due = start + sent / RATE
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.002))
        skew = rng.uniform(-0.005, 0.005)
        if scalars is not None and skew < 0:
            scalars.send_multipart(
                scalar_encoder.encode({"scalar_sent": time.time()}, pulse, (0, pulse)), copy=False
            )
            time.sleep(-skew)
        images.send_multipart(
            image_encoder.encode({"image": image, "image_sent": time.time()}, pulse, (0, pulse)),
            copy=False,
        )
        if scalars is not None and skew >= 0:
            time.sleep(skew)
            scalars.send_multipart(
                scalar_encoder.encode({"scalar_sent": time.time()}, pulse, (0, pulse)), copy=False
            )
        sent += 1
    return sent


def run_window(
    sup: SupervisorServer,
    context: zmq.Context,
    name: str,
    entry: dict,
    registry: Path,
    image: np.ndarray,
    seconds: float,
    merged: bool,
) -> tuple[int, dict[int, float], dict]:
    """One instance, one window: (pulses sent, pulse -> latency s, the instance's counters)."""
    images = context.socket(zmq.PUSH)
    scalars = context.socket(zmq.PUSH) if merged else None
    for sock in (images, scalars):
        if sock is not None:
            sock.linger = 0
            sock.sndhwm = 1000
    image_port = images.bind_to_random_port("tcp://127.0.0.1")
    entry = dict(entry, input={"url": f"tcp://127.0.0.1:{image_port}", "mode": "PULL"})
    if scalars is not None:
        scalar_port = scalars.bind_to_random_port("tcp://127.0.0.1")
        entry["merge"] = [{"url": f"tcp://127.0.0.1:{scalar_port}", "mode": "PULL"}]
    (registry / f"{name}.json").write_text(json.dumps(entry))
    wait_for(
        lambda: any(e["name"] == name for e in sup.api("GET", "/registry").json()),
        timeout=10,
        what=f"entry {name}",
    )
    sup.api("POST", "/instances", json={"name": name, "entry": name}).raise_for_status()
    info = wait_for(
        lambda: (i := sup.api("GET", f"/instances/{name}").json())["ready"] and i,
        timeout=30,
        what=f"{name} ready",
    )
    out = context.socket(zmq.SUB)
    out.linger = 0
    out.subscribe(b"")
    out.connect(info["stream"])
    wait_for(
        lambda: sup.api("GET", f"/instances/{name}").json()["stats"]["clients"] == 1,
        timeout=10,
        what="the reader connected",
    )
    latencies: dict[int, float] = {}
    stop = threading.Event()
    result: list[int] = []
    sender = threading.Thread(
        target=lambda: result.append(send(images, scalars, image, seconds, 1_000_000, stop)),
        daemon=True,
    )
    decoder = Decoder()
    sender.start()
    try:
        deadline = time.monotonic() + seconds + 10
        while sender.is_alive() or out.poll(500):
            if time.monotonic() > deadline:
                break
            if not out.poll(100):
                continue
            message = decoder.decode(out.recv_multipart(copy=False))
            arrived = time.time()
            if message is None:
                continue
            later = max(message.data["image_sent"], message.data["scalar_sent"])
            latencies[message.pulse_id] = arrived - later
    finally:
        stop.set()
        sender.join(10)
        counters = sup.api("GET", f"/instances/{name}").json()["stats"]["counters"]
        sup.api("DELETE", f"/instances/{name}")
        for sock in (out, images, scalars):
            if sock is not None:
                sock.close()
    return (result[0] if result else 0), latencies, counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="merged window")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x1024", help="image WxH (uint16)")
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    args = parser.parse_args()
    if args.quick:
        args.seconds = args.baseline_seconds = 5.0
    width, height = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, (height, width), dtype=np.uint16)
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        registry = Path(tmp) / "registry"
        registry.mkdir()
        (registry / "relay.py").write_text(PIPELINE)
        base_entry = {"program": "relay.py", "parameters": {"queue_size": 100}}
        sup = SupervisorServer(registry, Path(tmp) / "state").start()
        context = zmq.Context()
        try:
            b_sent, b_lat, _ = run_window(
                sup, context, "single", base_entry, registry, image, args.baseline_seconds, False
            )
            m_sent, m_lat, counters = run_window(
                sup, context, "merged", base_entry, registry, image, args.seconds, True
            )
        finally:
            context.term()
            sup.stop()
    b, m = summary(list(b_lat.values())), summary(list(m_lat.values()))
    lost = m_sent - len(m_lat)
    print(f"two streams at {RATE:g} Hz: images {width}x{height} uint16 + scalars, skew +-5 ms")
    print(f"{'window':<26}{'s':>5}{'sent':>7}{'got':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, seconds, sent, lat, s in (
        ("single stream (baseline)", args.baseline_seconds, b_sent, b_lat, b),
        ("merged by pulse id", args.seconds, m_sent, m_lat, m),
    ):
        print(
            f"{label:<26}{seconds:>5.0f}{sent:>7}{len(lat):>7}{s['median'] * 1e3:>9.1f}"
            f"{s['p99'] * 1e3:>9.1f}{s['max'] * 1e3:>9.1f}"
        )
    shown = {k: int(v) for k, v in counters.items() if "in" in k or k == "merge_pulses"}
    print(f"merge counters: {shown}")
    print(f"cleanup: {check_clean()}")
    met = lost == 0 and m["p99"] < 0.020
    print(
        f"RESULT merged_p99_ms={m['p99'] * 1e3:.1f} baseline_p99_ms={b['p99'] * 1e3:.1f} "
        f"lost={lost} ratio={m['p99'] / b['p99']:.2f} target=lost==0,p99<20ms "
        f"met={'yes' if met else 'no'}"
    )


if __name__ == "__main__":
    main()
