"""Monitoring overhead: supervisor CPU with 50 pipelines at 10 Hz, monitoring on and off.

Each set-up is a real ``pipevisor serve`` with 50 instances of a simulated camera (64x48, 10 Hz,
a Python runner each, status every second). The supervisor's own CPU (user + system, all its
threads: the psutil sampling runs in a worker thread) is measured over a window after a
warm-up, once with ``--monitor-interval 1`` (the default: every process tree and the node
sampled every second, stall checks) and once with ``--monitor-interval 0`` (off), in the same
run, alternating. Target: monitoring adds under 2 % of one core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from _harness import SupervisorServer, check_clean, wait_for

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {"width": 64, "height": 48, "rate": 10},
    "output": {"mode": "PUB"},
}


def measure(root: Path, interval: float, count: int, warmup: float, seconds: float) -> dict:
    """Supervisor CPU (% of one core) over the window, with ``count`` cameras running."""
    registry = root / f"registry-{interval:g}"
    registry.mkdir(parents=True)
    (registry / "cam.json").write_text(json.dumps(CAMERA))
    sup = SupervisorServer(
        registry, root / f"state-{interval:g}", extra_args=["--monitor-interval", f"{interval:g}"]
    ).start()
    try:
        for i in range(count):
            sup.api("POST", "/instances", json={"name": f"cam{i:02d}", "entry": "cam"})

        def all_sending() -> bool:
            instances = sup.api("GET", "/instances").json()
            return sum(i["ready"] and i["stats"]["rate_out"] > 5 for i in instances) >= count

        wait_for(all_sending, timeout=180, interval=0.5, what=f"{count} cameras sending")
        time.sleep(warmup)
        proc = psutil.Process(sup.proc.pid)
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = proc.cpu_times(), time.monotonic()
        used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        sampled = sum(
            i["resources"]["sampled_at"] is not None for i in sup.api("GET", "/instances").json()
        )
        return {"cpu": used / (t1 - t0) * 100, "sampled": sampled}
    finally:
        sup.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="on/off pairs")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 cameras, 5 s")
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds, args.warmup = 5, 5.0, 1.0
    results: dict[str, list[dict]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        for round_ in range(args.rounds):
            for mode, interval in (("on", 1.0), ("off", 0.0)):
                root = Path(tmp) / f"{mode}-{round_}"
                results[mode].append(measure(root, interval, args.count, args.warmup, args.seconds))
    on = statistics.median(r["cpu"] for r in results["on"])
    off = statistics.median(r["cpu"] for r in results["off"])
    print(f"{args.count} cameras at 10 Hz, {args.seconds:g} s windows, {args.rounds} round(s)")
    print(f"{'set-up':<34}{'supervisor CPU, % of a core':>30}   rounds")
    for mode, label in (("on", "monitoring every 1 s"), ("off", "monitoring off")):
        rounds = " ".join(f"{r['cpu']:.2f}" for r in results[mode])
        print(f"{label:<34}{statistics.median(r['cpu'] for r in results[mode]):>30.2f}   {rounds}")
    sampled = results["on"][0]["sampled"]
    print(f"instances with a resource sample (monitoring on): {sampled} of {args.count}")
    print(f"monitoring adds {on - off:.2f} % of one core (target < 2)")
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT cpu_on={on:.2f} cpu_off={off:.2f} overhead={on - off:.2f} "
        f"ratio={on / off if off else float('nan'):.2f} target=overhead<2 "
        f"met={'yes' if on - off < 2 else 'no'}"
    )


if __name__ == "__main__":
    main()
