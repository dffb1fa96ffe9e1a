"""End to end: simulated camera 2560x2160 uint16 at 100 Hz -> beam metrics -> a subscriber.

    camera_simulation (PUB) --> beam_metrics (SUB -> pre-process, metrics -> PUB) --> subscriber

A real ``pipevisor serve`` runs both instances from a registry; the subscriber is this script
(a SUB socket reading only the main header and the data header of each message). Per message it
records the receive time minus the camera's global timestamp (the same clock: one machine), and
the pulse id: the camera runs in deterministic mode, so its pulse ids are consecutive and a gap
at the subscriber is a frame lost somewhere on the way (the camera's own lateness shows as a
send rate under 100 Hz, printed apart from the instances' status counters).

Baseline in the same run: the same subscriber on the camera's stream directly, for the same
window, before the pipeline's window (the camera -> subscriber hop alone). Targets: 100 Hz
sustained through the pipeline with no drops, p99 latency under 50 ms.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import zmq
from _harness import SupervisorServer, check_clean, summary, wait_for

WIDTH, HEIGHT = 2560, 2160


def registry(folder: Path, rate: float, image_out: bool, queue_size: int | None) -> None:
    """The camera and the pipeline entries."""
    folder.mkdir(parents=True)
    camera = {
        "builtin": "camera_simulation",
        "parameters": {
            "width": WIDTH,
            "height": HEIGHT,
            "rate": rate,
            "noise": 20,
            "deterministic": True,
            "beam_sigma_x": 80,
            "beam_sigma_y": 60,
        },
        "output": {"mode": "PUB"},
    }
    parameters: dict = {} if image_out else {"exclude": ["image"]}
    if queue_size is not None:
        parameters["queue_size"] = queue_size
    pipeline = {
        "builtin": "beam_metrics",
        "input": {"camera": "cam"},
        "parameters": parameters,
        "output": {"mode": "PUB"},
    }
    (folder / "cam.json").write_text(json.dumps(camera))
    (folder / "beam.json").write_text(json.dumps(pipeline))


def subscribe(url: str, seconds: float, warmup: float) -> dict[str, float]:
    """Read ``url`` for ``seconds`` after ``warmup``; frames/s, pulse-id gaps, latency."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 100)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(url)
    latencies: list[float] = []
    pulses: list[int] = []
    malformed = 0
    try:
        end_warmup = time.monotonic() + warmup
        while time.monotonic() < end_warmup:
            if socket.poll(100):
                socket.recv_multipart(copy=False)
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            if not socket.poll(100):
                continue
            frames = socket.recv_multipart(copy=False)
            now = time.time()
            try:  # the main header only: the values stay unread
                header = json.loads(frames[0].bytes)
                stamp = header["global_timestamp"]
                sent = stamp["sec"] + stamp["ns"] * 1e-9
                pulse_id = int(header["pulse_id"])
            except (ValueError, KeyError, TypeError):
                malformed += 1
                continue
            latencies.append((now - sent) * 1000)
            pulses.append(pulse_id)
        elapsed = time.monotonic() - start
    finally:
        socket.close(linger=0)
        context.term()
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(pulses) if b > a + 1)
    stats = summary(latencies) if latencies else {"median": float("nan"), "p99": float("nan")}
    return {
        "frames": len(pulses),
        "fps": len(pulses) / elapsed,
        "drops": gaps,
        "malformed": malformed,
        "p50_ms": stats["median"],
        "p99_ms": stats["p99"],
        "max_ms": stats.get("max", float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="window per set-up")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--rate", type=float, default=100.0, help="camera frame rate, Hz")
    parser.add_argument("--no-image", action="store_true", help="exclude the image from output")
    parser.add_argument(
        "--queue-size", type=int, help="the pipeline's queue_size (default: the runner's)"
    )
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 4.0, 2.0
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as tmp:
        root = Path(tmp)
        registry(root / "registry", args.rate, not args.no_image, args.queue_size)
        sup = SupervisorServer(root / "registry", root / "state").start()
        try:
            sup.api("POST", "/instances", json={"name": "beam", "entry": "beam"})

            def ready(name: str) -> dict | None:
                info = sup.api("GET", f"/instances/{name}").json()
                return info if info["ready"] and info["stats"]["messages_out"] > 0 else None

            camera = wait_for(lambda: ready("cam"), timeout=60, what="camera output")
            beam = wait_for(lambda: ready("beam"), timeout=60, what="pipeline output")
            before = sup.api("GET", "/instances/cam").json()["stats"]["messages_out"]
            t0 = time.monotonic()
            direct = subscribe(camera["stream"], args.seconds, args.warmup)
            through = subscribe(beam["stream"], args.seconds, args.warmup)
            sent = sup.api("GET", "/instances/cam").json()["stats"]["messages_out"] - before
            camera_rate = sent / (time.monotonic() - t0)
            stats = sup.api("GET", "/instances/beam").json()["stats"]
        finally:
            sup.stop()
    print(
        f"image {WIDTH}x{HEIGHT} uint16, camera at {args.rate:g} Hz, {args.seconds:g} s windows, "
        f"image {'excluded' if args.no_image else 'sent'}, pipeline queue_size "
        f"{args.queue_size or 'default'}"
    )
    print(f"camera send rate over both windows: {camera_rate:.1f} frames/s")
    header = f"{'set-up':<26}{'frames/s':>10}{'drops':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header)
    for label, r in (("camera -> subscriber", direct), ("camera -> beam -> sub", through)):
        print(
            f"{label:<26}{r['fps']:>10.1f}{r['drops']:>7}{r['p50_ms']:>9.1f}"
            f"{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}"
        )
    print(
        f"pipeline status: in {stats['messages_in']}, out {stats['messages_out']}, "
        f"input drops {stats['drops']}, output drops {stats['output_drops']}, "
        f"errors {stats['errors']}, processing avg {stats['processing_time_avg'] * 1000:.2f} ms "
        f"max {stats['processing_time_max'] * 1000:.2f} ms"
    )
    ratio = through["fps"] / direct["fps"] if direct["fps"] else float("nan")
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT fps={through['fps']:.1f} drops={through['drops']} "
        f"p50_ms={through['p50_ms']:.1f} p99_ms={through['p99_ms']:.1f} "
        f"direct_fps={direct['fps']:.1f} direct_p99_ms={direct['p99_ms']:.1f} "
        f"ratio={ratio:.3f} target=100Hz,0drops,p99<50ms"
    )


if __name__ == "__main__":
    main()
