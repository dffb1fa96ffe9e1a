"""EPICS camera source: frames/s and drops reading a 1280x1024 uint16 caproto camera at 100 Hz.

The IOC is the test bed's (``tests/epics_ioc.py``): a caproto camera serving FPICTURE as
DBR_SHORT, its frame number in the first two pixels, publishing at ``--rate``. The source is
``builtin_pipelines.camera_epics``, its generator driven here in a tight loop, as the runner
drives it (minus the send). Everything runs in a private network namespace with only ``lo``
(libca registers with the repeater through the host's address after ~10 s otherwise).

Baseline (same run): the IOC's own publish rate, from the frame numbers and the IOC's EPICS
timestamps of the frames received (frames published / IOC seconds), so ``ratio`` is frames
delivered per frame published. A drop is a frame number the source never yielded; the source's
own count of frames replaced unread (latest wins) is printed beside it. Latency: receive time
minus the IOC's timestamp (same clock). Every 50th frame is compared pixel for pixel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _harness import ROOT, check_clean, free_port, kill_tree, summary


def measure(args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Start repeater and IOC, read for warm-up + duration; the figures of the window."""
    from tests.epics_ioc import RING, CameraIoc, Repeater, client_env, expected_frame, frame_counter

    repeater = Repeater(free_port()).start()
    ioc = CameraIoc(
        "BENCH-CAM", free_port(), repeater.port, work, args.width, args.height, rate=args.rate
    )
    try:
        ioc.start()
        os.environ.update(client_env([ioc.port], repeater.port, 4 * args.width * args.height))
        from builtin_pipelines import camera_epics

        # Precomputed, so that checking a frame costs a comparison, not a pattern.
        patterns = [expected_frame(k, args.width, args.height).reshape(-1) for k in range(RING)]
        frames = camera_epics.generate({"prefix": "BENCH-CAM"})
        seen: list[tuple[int, float, float]] = []  # (frame number, IOC stamp, received)
        exact = True
        start = time.monotonic()
        window_start = start + args.warmup
        end = window_start + args.duration
        cpu = None
        me, ioc_proc = psutil.Process(), psutil.Process(ioc.proc.pid)
        while (now := time.monotonic()) < end:
            if cpu is None and now >= window_start:
                cpu = (me.cpu_times(), ioc_proc.cpu_times(), time.monotonic())
            item = next(frames)
            if item is None or now < window_start:
                continue
            channels, _, (seconds, nanoseconds) = item
            image = channels["image"]
            counter = frame_counter(image)
            seen.append((counter, seconds + nanoseconds * 1e-9, time.time()))
            if len(seen) % 50 == 1:
                pixels = image.reshape(-1)[2:]  # past the frame number
                exact &= bool((pixels == patterns[counter % RING][2:]).all())
        elapsed = time.monotonic() - cpu[2]
        cpu_me = sum(me.cpu_times()[:2]) - sum(cpu[0][:2])
        cpu_ioc = sum(ioc_proc.cpu_times()[:2]) - sum(cpu[1][:2])
        # The source's own count (latest wins), read from the suspended generator's locals.
        replaced = frames.gi_frame.f_locals["camera"].drops
        frames.close()
    finally:
        ioc.stop()
        repeater.stop()
        kill_tree([p for p in (ioc.proc, repeater.proc) if p is not None])
    published = seen[-1][0] - seen[0][0] + 1
    ioc_seconds = seen[-1][1] - seen[0][1]
    latency = summary([(received - stamp) * 1000 for _, stamp, received in seen])
    return {
        "received": len(seen),
        "published": published,
        "source_fps": len(seen) / elapsed,
        "ioc_fps": (published - 1) / ioc_seconds,
        "drops": published - len(seen),
        "replaced": replaced,
        "latency_median_ms": latency["median"],
        "latency_p95_ms": latency["p95"],
        "cpu_source": 100 * cpu_me / elapsed,
        "cpu_ioc": 100 * cpu_ioc / elapsed,
        "exact": exact,
        "ports": [ioc.port],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--rate", type=float, default=100.0, help="IOC frames per second")
    parser.add_argument("--duration", type=float, default=20.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    sys.path.insert(0, str(ROOT))  # the test bed's IOC and namespace helper
    from tests.netns import private_network_namespace, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"needs a private network namespace: {reason}")
    with private_network_namespace(), tempfile.TemporaryDirectory(prefix="bench-epics-") as tmp:
        r = measure(args, Path(tmp))
        clean = check_clean(r["ports"])
    ratio = r["source_fps"] / r["ioc_fps"]
    print(
        f"EPICS camera source, {args.width}x{args.height} uint16 (DBR_SHORT) at "
        f"{args.rate:g} Hz, {args.duration:g} s window"
    )
    print(f"{'':<22}{'frames/s':>10}{'frames':>9}{'CPU %':>8}")
    print(f"{'IOC (baseline)':<22}{r['ioc_fps']:>10.2f}{r['published']:>9}{r['cpu_ioc']:>8.1f}")
    print(
        f"{'source (pyepics)':<22}{r['source_fps']:>10.2f}{r['received']:>9}{r['cpu_source']:>8.1f}"
    )
    print(
        f"drops: {r['drops']} (replaced unread in the source: {r['replaced']}, warm-up "
        f"included); latency median {r['latency_median_ms']:.1f} ms, p95 "
        f"{r['latency_p95_ms']:.1f} ms; sampled frames exact: {r['exact']}"
    )
    print(f"cleanup: {clean}")
    print(
        f"RESULT source_fps={r['source_fps']:.2f} ioc_fps={r['ioc_fps']:.2f} "
        f"drops={r['drops']} latency_median_ms={r['latency_median_ms']:.2f} "
        f"latency_p95_ms={r['latency_p95_ms']:.2f} cpu_source={r['cpu_source']:.1f} "
        f"cpu_ioc={r['cpu_ioc']:.1f} ratio={ratio:.3f} target=1.0,drops=0"
    )


if __name__ == "__main__":
    main()
