"""On demand: from the stream request to the first message at the client, cold and warm.

A real ``pipevisor serve`` with a simulated camera (640x480 uint16 at 100 Hz) and a Python
pipeline reading it (the README's beam profile example). Each cold round asks for the
pipeline's stream (``POST /api/v1/streams/beam``): the supervisor creates the on-demand
pipeline instance, and the camera instance it reads, and starts both; the client connects a
SUB to the returned URL and waits for the first message. Both instances are then deleted. The
baseline, in the same run: the same request and first message when both already run (warm).
Target: cold under 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import zmq
from _harness import ROOT, SupervisorServer, check_clean, summary, wait_for

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 640, "height": 480, "rate": 100},
}
PIPELINE = {"program": "beam_profile.py", "input": {"camera": "cam"}}


def first_message_s(sup: SupervisorServer, context: zmq.Context) -> float:
    """Seconds from the request to the first message of the returned stream."""
    t0 = time.perf_counter()
    stream = sup.api("POST", "/streams/beam").json()["stream"]
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(stream)
    try:
        if not sock.poll(30_000):
            raise SystemExit("no first message within 30 s")
        sock.recv_multipart()
        return time.perf_counter() - t0
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-on-demand-") as tmp:
        registry = Path(tmp) / "registry"
        registry.mkdir()
        (registry / "cam.json").write_text(json.dumps(CAMERA))
        (registry / "beam.json").write_text(json.dumps(PIPELINE))
        shutil.copy(ROOT / "examples" / "registry" / "beam_profile.py", registry)
        sup = SupervisorServer(registry, Path(tmp) / "state").start()
        context = zmq.Context()
        try:
            for _ in range(args.rounds):
                cold.append(first_message_s(sup, context))
                warm.append(first_message_s(sup, context))
                for name in ("beam", "cam"):
                    sup.api("DELETE", f"/instances/{name}")
                wait_for(
                    lambda: sup.api("GET", "/instances").json() == [],
                    timeout=30,
                    what="both instances deleted",
                )
        finally:
            context.term()
            sup.stop()
    c, w = summary(cold), summary(warm)
    print(f"{args.rounds} rounds; camera 640x480 uint16 at 100 Hz, Python pipeline on it")
    print(f"{'request -> first message':<28}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, s in (("cold (both started)", c), ("warm (both running)", w)):
        print(f"{label:<28}{s['median'] * 1e3:>9.0f}{s['p99'] * 1e3:>9.0f}{s['max'] * 1e3:>9.0f}")
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT cold_p50_ms={c['median'] * 1e3:.0f} cold_max_ms={c['max'] * 1e3:.0f} "
        f"warm_p50_ms={w['median'] * 1e3:.0f} ratio={c['median'] / w['median']:.1f} "
        f"target=cold<1000ms met={'yes' if c['max'] < 1.0 else 'no'}"
    )


if __name__ == "__main__":
    main()
