"""Restart latency: from a program's exit to the first executed line of the next run.

One program serves every set-up: a ``#!python -S`` script whose first line reads
CLOCK_MONOTONIC and appends it to a file, then sleeps ``--life`` seconds, appends its exit stamp
and calls ``os._exit(1)``. Per restart, latency = start stamp of run n+1 - exit stamp of run n:
it covers the process teardown, the parent noticing the exit, its decision, fork+exec and the
interpreter's start-up (the same in every set-up).

Set-ups, alternating in rounds, in the same run:
  supervisor  a real ``pipevisor serve``, entry with restart {"mode": "always", "stable_after": 0}
  posix_spawn a bare loop here: os.posix_spawn + os.waitpid (the baseline of the ratio)
  popen       a bare loop here: subprocess.Popen(close_fds, process_group=0) + wait (for scale)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import tempfile
from pathlib import Path

from _harness import PYTHON, SupervisorServer, check_clean, summary, wait_for

PROGRAM = """\
#!{python} -S
from time import clock_gettime_ns, CLOCK_MONOTONIC, sleep
t = clock_gettime_ns(CLOCK_MONOTONIC)
import os
fd = os.open(os.environ["BENCH_STAMPS"] + "." + os.environ.get("PIPEVISOR_INSTANCE", "bare"),
             os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, b"S %d\\n" % t)
sleep(float(os.environ["BENCH_LIFE"]))
os.write(fd, b"E %d\\n" % clock_gettime_ns(CLOCK_MONOTONIC))
os._exit(1)
"""


def latencies(path: Path) -> list[float]:
    """Milliseconds from each exit stamp to the start stamp right after it."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [
        (int(b[1]) - int(a[1])) / 1e6
        for a, b in itertools.pairwise(lines)
        if a[0] == "E" and b[0] == "S"
    ]


def starts(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.startswith("S "))
    except FileNotFoundError:
        return 0


def bare_posix_spawn(program: Path, env: dict[str, str], runs: int) -> None:
    for _ in range(runs):
        pid = os.posix_spawn(str(program), [str(program)], env)
        os.waitpid(pid, 0)


def bare_popen(program: Path, env: dict[str, str], runs: int) -> None:
    for _ in range(runs):
        subprocess.Popen(
            [str(program)], env=env, stdin=subprocess.DEVNULL, close_fds=True, process_group=0
        ).wait()


def supervised(sup: SupervisorServer, name: str, stamps: Path, runs: int) -> None:
    sup.api("POST", "/instances", json={"name": name, "entry": "flap", "start": True})
    try:
        wait_for(
            lambda: starts(stamps) >= runs,
            timeout=60 + runs,
            interval=0.05,
            what=f"{runs} runs of {name}",
        )
        state = sup.api("GET", f"/instances/{name}").json()
    finally:
        sup.api("POST", f"/instances/{name}/stop")
        sup.api("DELETE", f"/instances/{name}")
    if state.get("state") in ("failed", "backoff"):
        print(f"warning: {name} was {state['state']}: {state.get('reason')}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--restarts", type=int, default=30, help="restarts per set-up per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three set-ups")
    parser.add_argument("--life", type=float, default=0.05, help="seconds each run lives")
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    if args.quick:
        args.restarts, args.rounds = 8, 1

    results: dict[str, list[float]] = {"supervisor": [], "posix_spawn": [], "popen": []}
    sup: SupervisorServer | None = None
    clean = "not checked"
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        work = Path(tmp)
        registry = work / "registry"
        registry.mkdir()
        stamps = work / "stamps"
        program = registry / "flapper"
        program.write_text(PROGRAM.format(python=PYTHON))
        program.chmod(0o755)
        env_vars = {"BENCH_STAMPS": str(stamps), "BENCH_LIFE": repr(args.life)}
        (registry / "flap.json").write_text(
            json.dumps(
                {
                    "description": "exits after a short life, restarted at once",
                    "program": "flapper",
                    "output": {"enabled": False},
                    "restart": {"mode": "always", "stable_after": 0},
                    "env": env_vars,
                }
            )
        )
        bare_env = {**os.environ, **env_vars}
        runs = args.restarts + 1
        try:
            sup = SupervisorServer(registry, work / "state").start()
            for r in range(args.rounds):
                bare_posix_spawn(program, {**bare_env, "PIPEVISOR_INSTANCE": f"spawn{r}"}, runs)
                results["posix_spawn"] += latencies(Path(f"{stamps}.spawn{r}"))
                supervised(sup, f"flap{r}", Path(f"{stamps}.flap{r}"), runs)
                results["supervisor"] += latencies(Path(f"{stamps}.flap{r}"))
                bare_popen(program, {**bare_env, "PIPEVISOR_INSTANCE": f"popen{r}"}, runs)
                results["popen"] += latencies(Path(f"{stamps}.popen{r}"))
        finally:
            port = sup.port if sup else 0
            if sup is not None:
                sup.stop()
            clean = check_clean([port] if port else [])
        launcher = sup.launcher if sup else ""

    stats = {k: summary(v) for k, v in results.items()}
    base = stats["posix_spawn"]["median"]
    print(f"restart latency, exit -> first line of the next run (ms); supervisor via {launcher}")
    print(f"{'set-up':<14}{'n':>5}{'median':>9}{'p95':>9}{'min':>9}{'max':>9}{'x spawn':>9}")
    for kind in ("supervisor", "posix_spawn", "popen"):
        s = stats[kind]
        print(
            f"{kind:<14}{s['n']:>5}{s['median']:>9.2f}{s['p95']:>9.2f}{s['min']:>9.2f}"
            f"{s['max']:>9.2f}{s['median'] / base:>9.2f}"
        )
    sv = stats["supervisor"]
    print(f"cleanup: {clean}")
    print(
        f"RESULT restart_median_ms={sv['median']:.2f} restart_p95_ms={sv['p95']:.2f} "
        f"bare_median_ms={base:.2f} bare_p95_ms={stats['posix_spawn']['p95']:.2f} "
        f"popen_median_ms={stats['popen']['median']:.2f} ratio={sv['median'] / base:.2f} "
        f"target=1.5 restarts={sv['n']}"
    )


if __name__ == "__main__":
    main()
