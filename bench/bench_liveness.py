"""Liveness: how long a frozen program (SIGSTOP) shows as running before it is unresponsive.

A real ``pipevisor serve`` (status interval 1 s) runs a simulated camera (the Python runner,
64x48 uint16 at 20 Hz). Each round waits a random 0-1 s (so the freeze falls anywhere between
two status messages), SIGSTOPs the program's process group, polls ``GET /instances/cam`` every
10 ms until ``unresponsive`` is true, then SIGCONTs it and waits until it sends again. The
baseline, in the same run: the status interval itself, as the gaps between two status messages
seen in the API (``stats.updated``). Target: every freeze noticed in under 2 status intervals.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path

from _harness import SupervisorServer, check_clean, summary, wait_for

CAMERA = {"builtin": "camera_simulation", "parameters": {"width": 64, "height": 48, "rate": 20}}
POLL = 0.01


def status_gaps(sup: SupervisorServer, seconds: float) -> list[float]:
    """Gaps between the status messages the API shows over ``seconds``."""
    seen: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        updated = sup.api("GET", "/instances/cam").json()["stats"]["updated"]
        if updated is not None and (not seen or updated != seen[-1]):
            seen.append(updated)
        time.sleep(POLL)
    return [b - a for a, b in itertools.pairwise(seen)]


def noticed_s(sup: SupervisorServer, pid: int) -> float:
    """Seconds from a SIGSTOP of the group to ``unresponsive`` in the API."""
    os.killpg(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        while not sup.api("GET", "/instances/cam").json()["unresponsive"]:
            if time.monotonic() - t0 > 30:
                raise SystemExit("not unresponsive within 30 s")
            time.sleep(POLL)
        return time.monotonic() - t0
    finally:
        os.killpg(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    rng = random.Random(15)
    noticed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-liveness-") as tmp:
        registry = Path(tmp) / "registry"
        registry.mkdir()
        (registry / "cam.json").write_text(json.dumps(CAMERA))
        sup = SupervisorServer(registry, Path(tmp) / "state").start()
        try:
            sup.api("POST", "/instances", json={"name": "cam", "entry": "cam"})

            def sending() -> dict | None:
                info = sup.api("GET", "/instances/cam").json()
                ok = info["ready"] and not info["unresponsive"] and info["stats"]["rate_out"] > 0
                return info if ok else None

            pid = wait_for(sending, timeout=30, what="cam sending")["pid"]
            gaps = status_gaps(sup, 3.0 if args.quick else 6.0)
            for _ in range(args.rounds):
                time.sleep(rng.uniform(0.0, 1.0))
                noticed.append(noticed_s(sup, pid))
                info = wait_for(sending, timeout=30, what="cam sending again")
                if info["pid"] != pid:
                    raise SystemExit(f"cam was restarted: {info['reason']}")
        finally:
            sup.stop()
    interval = statistics.median(gaps)
    n = summary(noticed)
    print(f"{args.rounds} freezes (SIGSTOP) of a Python-runner camera; API polled every 10 ms")
    print(f"{'':<36}{'p50 s':>8}{'max s':>8}{'intervals (max)':>17}")
    print(f"{'status interval (baseline)':<36}{interval:>8.3f}{max(gaps):>8.3f}{1.0:>17.2f}")
    print(
        f"{'SIGSTOP -> unresponsive in the API':<36}{n['median']:>8.3f}{n['max']:>8.3f}"
        f"{n['max'] / interval:>17.2f}"
    )
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT noticed_p50_s={n['median']:.3f} noticed_max_s={n['max']:.3f} "
        f"status_interval_s={interval:.3f} ratio={n['max'] / interval:.2f} "
        f"target=max<2intervals met={'yes' if n['max'] < 2 * interval else 'no'}"
    )


if __name__ == "__main__":
    main()
