"""Idle cost: CPU and memory of the supervisor process with N sleeping instances vs none.

The program is ``exec sleep 3600`` in a shell script with its output disabled, so nothing but
the supervisor's own bookkeeping runs. One real ``pipevisor serve`` is measured twice in the
same run: first with 0 instances (the baseline), then with N started and running. CPU is the
process's user+system time over the window (psutil), as % of one core; RSS at the window's end.
Nothing touches the supervisor during a window (no API calls).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil
from _harness import SupervisorServer, add_sleeper_entry, check_clean, start_sleepers


def measure(proc: psutil.Process, seconds: float) -> dict[str, float]:
    """CPU % of one core over ``seconds``, then RSS (MB), threads and open fds."""
    c0, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = proc.cpu_times(), time.monotonic()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "cpu_pct": 100 * cpu / (t1 - t0),
        "rss_mb": proc.memory_info().rss / 2**20,
        "threads": proc.num_threads(),
        "fds": proc.num_fds(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window, each state")
    parser.add_argument("--settle", type=float, default=5.0, help="wait before each window")
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.seconds, args.settle = 20, 2.0, 1.0

    sup: SupervisorServer | None = None
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        add_sleeper_entry(work / "registry")
        try:
            sup = SupervisorServer(work / "registry", work / "state").start()
            assert sup.proc is not None
            proc = psutil.Process(sup.proc.pid)
            time.sleep(args.settle)
            base = measure(proc, args.seconds)
            created, running = start_sleepers(sup, args.instances)
            programs = len(proc.children(recursive=True))
            time.sleep(args.settle)
            loaded = measure(proc, args.seconds)
        finally:
            port = sup.port if sup else 0
            if sup is not None:
                t = time.monotonic()
                sup.stop()
                stop_s = time.monotonic() - t
            clean = check_clean([port] if port else [])

    print(
        f"supervisor via {sup.launcher}; window {args.seconds:g} s each; "
        f"{args.instances} instances created in {created:.1f} s, "
        f"all running after {running:.1f} s, "
        f"{programs} child processes; shutdown took {stop_s:.1f} s"
    )
    print(f"{'instances':<12}{'CPU % core':>12}{'RSS MB':>10}{'threads':>9}{'fds':>7}")
    for n, m in ((0, base), (args.instances, loaded)):
        print(f"{n:<12}{m['cpu_pct']:>12.2f}{m['rss_mb']:>10.1f}{m['threads']:>9}{m['fds']:>7}")
    rss_per = (loaded["rss_mb"] - base["rss_mb"]) / max(1, args.instances) * 1024
    print(
        f"per instance: {rss_per:.0f} KB RSS, "
        f"{(loaded['fds'] - base['fds']) / max(1, args.instances):.1f} fds"
    )
    print(f"cleanup: {clean}")
    print(
        f"RESULT idle_cpu_pct={loaded['cpu_pct']:.2f} idle_rss_mb={loaded['rss_mb']:.1f} "
        f"baseline_cpu_pct={base['cpu_pct']:.2f} baseline_rss_mb={base['rss_mb']:.1f} "
        f"cpu_diff_pct={loaded['cpu_pct'] - base['cpu_pct']:.2f} "
        f"rss_ratio={loaded['rss_mb'] / base['rss_mb']:.2f} instances={args.instances} "
        f"target_cpu_pct=1 target_rss_mb=150"
    )


if __name__ == "__main__":
    main()
