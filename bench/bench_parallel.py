"""Parallel beam metrics on 2560x2160 uint16: threads and processes in the runner, and fan-out.

    feeder PUSH --> [runner: PULL -> decode -> workers: beam_metrics -> encode -> PUSH] --> sink

    fan-out:               ,-> [worker1: PULL -> beam_metrics -> PUSH] -.
             feeder PUSH --+-> [worker2: PULL -> beam_metrics -> PUSH] -+-> [fan-in] --> sink

The runner is started directly (``python -m runners.python --module
builtin_pipelines.beam_metrics`` with a ``ContractEnv``: DATA PULL, OUTPUT PUSH, no CONFIG or
LOG channel), with ``parallel`` none (the baseline: the single-process loop), threads with 1
and 2 workers, and processes with 1 and 2 workers. Fan-out is what a registry makes of a PUSH
source, N worker instances and a fan-in entry (``"input": ["worker1", "worker2"]``): the
feeder's PUSH deals frames round-robin to N runners of beam_metrics (``parallel`` none, PUSH
outputs), and a runner of the ``passthrough`` builtin gathers their outputs in pulse-id order
(DATA the first worker, the others in ``PIPEVISOR_GATHER``, as the supervisor wires it; with
one worker it is a plain relay, the same hops). The feeder sends bsread messages of a ring
of seeded frames (a Gaussian spot with Poisson noise, as ``bench_beam_metrics.py``) as fast as
the runner delivers them: a closed loop, at most ``--window`` frames ahead of the sink, so no
frame is sent only to be dropped (each one costs the machine a loopback transfer of 11 MB).
The sink reads only the main header. Three configurations:

  default   beam_metrics' defaults
  slices    image_good_region {threshold: 0.3, gfscale: 1.8} and
            image_slices {number_of_slices: 5, scale: 2, orientation: "vertical"}
  binned    slices on the image binned 2x2 (binning_x, binning_y): processing dominates

The image is excluded from the output (``exclude: ["image"]``: what a feedback or an archiver
reading the numbers gets) unless ``--with-image``: sending it is one more 11 MB loopback hop
per frame. Every set-up starts a fresh runner; they are interleaved in rounds and each figure
is the median of its rounds. ``ratio`` is frames/s over the same configuration's ``none`` in
the same run.

Where the time goes, pooled over the rounds, in CPU ms per output frame: the runner's main
thread (receive, decode, copy into shared memory, collect, encode, send; the function too with
``none``), its other threads (ZMQ's I/O threads moving the bytes through loopback TCP; the
worker threads with ``threads``), its worker processes, the fan-in, and this script (the
feeder's and the sink's sockets). With fan-out, ``main`` and ``threads`` are summed over the
worker instances. ``cores`` is that sum times frames/s: near the machine's core count, the
set-up is bound by the machine as a whole, not by one process. And the machine's own capacity,
in the same run: ``process_image`` (slices) in two processes at once against one alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zmq
from _closed_loop import Feeder, Sink, cpu_of_all, own_cpu
from _harness import PYTHON, ROOT, check_clean, free_port, kill_tree, wait_for

sys.path.insert(0, str(ROOT))

from supervisor.contract import ContractEnv, ExtraInput, SocketMode

BEAM_METRICS = "builtin_pipelines.beam_metrics"
PASSTHROUGH = "builtin_pipelines.passthrough"

WIDTH, HEIGHT = 2560, 2160
SLICES = {
    "image_good_region": {"threshold": 0.3, "gfscale": 1.8},
    "image_slices": {"number_of_slices": 5, "scale": 2, "orientation": "vertical"},
}
CONFIGS = {"default": {}, "slices": SLICES, "binned": {**SLICES, "binning_x": 2, "binning_y": 2}}
MODES = (
    ("none", 1),
    ("threads", 1),
    ("threads", 2),
    ("processes", 1),
    ("processes", 2),
    ("fanout", 1),
    ("fanout", 2),
)
TARGET = 1.6
Setup = tuple[str, str, int]  # (config, mode, workers)


def frames(count: int, seed: int = 7) -> list[np.ndarray]:
    """Seeded 2560x2160 uint16 frames of one Gaussian spot with Poisson noise."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    mean = 20.0 + 1000.0 * np.exp(
        -((xx - 1317.0) ** 2 / (2 * 150.0**2) + (yy - 1027.0) ** 2 / (2 * 110.0**2))
    )
    rng = np.random.default_rng(seed)
    return [rng.poisson(mean).astype(np.uint16) for _ in range(count)]


def _start_runner(module: str, contract: ContractEnv, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m runners.python --module MODULE`` with ``contract``, output to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "runners.python", "--module", module],
            env={**os.environ, **contract.to_environ(), "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _start_pipeline(
    config: str,
    mode: str,
    workers: int,
    args: argparse.Namespace,
    feed_url: str,
    out_url: str,
    workdir: Path,
    ports: list[int],
) -> tuple[list[subprocess.Popen[bytes]], subprocess.Popen[bytes] | None]:
    """The set-up's processing runners (one, or the fan-out's workers) and its fan-in."""
    parameters = {
        **CONFIGS[config],
        "parallel": "none" if mode == "fanout" else mode,
        "workers": workers,
        "queue_size": args.window,  # what the feeder may have in flight: no input drops
        "output_queue_size": args.hwm,
    }
    if not args.with_image:
        parameters["exclude"] = ["image"]
    name = f"{config}-{mode}-{workers}"

    def contract(
        instance: str, config: dict[str, Any], data: str, output: str, gather: list[str] = ()
    ) -> ContractEnv:
        return ContractEnv(
            instance=instance,
            run=1,
            config=config,
            data_url=data,
            data_mode=SocketMode.PULL,
            gather=[ExtraInput(url=url, mode=SocketMode.PULL) for url in gather],
            output_url=output,
            output_mode=SocketMode.PUSH,
        )

    if mode != "fanout":
        env = contract("beam", parameters, feed_url, out_url)
        return [_start_runner(BEAM_METRICS, env, workdir / f"{name}.log")], None
    worker_ports = [free_port() for _ in range(workers)]
    ports += worker_ports
    worker_urls = [f"tcp://127.0.0.1:{port}" for port in worker_ports]
    runners = [
        _start_runner(
            BEAM_METRICS,
            contract(f"worker{i + 1}", parameters, feed_url, url),
            workdir / f"{name}-worker{i + 1}.log",
        )
        for i, url in enumerate(worker_urls)
    ]
    # The fan-in as the supervisor wires an entry whose input is the list of workers.
    fanin_env = contract(
        "fanin",
        {"queue_size": args.window, "output_queue_size": args.hwm},
        worker_urls[0],
        out_url,
        worker_urls[1:],
    )
    return runners, _start_runner(PASSTHROUGH, fanin_env, workdir / f"{name}-fanin.log")


def run_phase(
    config: str,
    mode: str,
    workers: int,
    args: argparse.Namespace,
    ring: list[np.ndarray],
    workdir: Path,
    ports: list[int],
) -> dict[str, float]:
    """One measured window of one set-up, with fresh runners."""
    ctx, sink_ctx = zmq.Context(), zmq.Context()
    feed_port, out_port = free_port(), free_port()
    ports += [feed_port, out_port]
    feed_url, out_url = f"tcp://127.0.0.1:{feed_port}", f"tcp://127.0.0.1:{out_port}"
    name = f"{config}-{mode}-{workers}"
    feeder = Feeder(ctx, feed_port, ring, args.hwm, args.window)
    sink: Sink | None = None
    runners: list[subprocess.Popen[bytes]] = []
    fanin: subprocess.Popen[bytes] | None = None
    try:
        runners, fanin = _start_pipeline(
            config, mode, workers, args, feed_url, out_url, workdir, ports
        )
        everyone = [*runners, *([fanin] if fanin is not None else [])]
        sink = Sink(sink_ctx, out_url, args.hwm, feeder)
        sink.start()
        feeder.start()

        def flowing() -> bool:
            for runner in everyone:
                if runner.poll() is not None:
                    logs = "\n".join(
                        p.read_text()[-1500:] for p in sorted(workdir.glob(f"{name}*.log"))
                    )
                    raise SystemExit(f"{name}: a runner exited {runner.returncode}: {logs}")
            return bool(sink.arrivals)

        wait_for(flowing, timeout=60, what=f"first frame at the sink ({name})")
        time.sleep(args.warmup)
        procs = [psutil.Process(runner.pid) for runner in runners]
        gatherer = [psutil.Process(fanin.pid)] if fanin is not None else []
        cpu0, fan0, own0 = cpu_of_all(procs), cpu_of_all(gatherer), own_cpu()
        sent0, t0 = feeder.sent, time.monotonic()
        time.sleep(args.seconds)
        t1, sent1 = time.monotonic(), feeder.sent
        cpu1, fan1, own1 = cpu_of_all(procs), cpu_of_all(gatherer), own_cpu()
        count, rate, skipped, ordered = sink.window(t0, t1)
        return {
            "seconds": t1 - t0,
            "frames": count,
            "fps": rate,
            "sent": sent1 - sent0,
            "skipped": skipped,
            "unordered": 0 if ordered else 1,
            "main": cpu1[0] - cpu0[0],
            "threads": cpu1[1] - cpu0[1],
            "workers": cpu1[2] - cpu0[2],
            "fanin": sum(fan1) - sum(fan0),
            "bench": own1 - own0,
        }
    finally:
        feeder.halt.set()  # the feeder first, while the sink still drains
        for thread in (feeder, sink):
            if thread is not None and thread.is_alive():
                thread.halt.set()
                thread.join(5)
        ctx.destroy(linger=0)
        sink_ctx.destroy(linger=0)
        everyone = [*runners, *([fanin] if fanin is not None else [])]
        for runner in everyone:
            if runner.poll() is None:
                runner.send_signal(signal.SIGTERM)  # a runner stops its workers
        for runner in everyone:
            try:
                runner.wait(10)
            except subprocess.TimeoutExpired:
                pass
        kill_tree(everyone)


PROBE = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
from bench_parallel import CONFIGS, frames
from builtin_pipelines import beam_metrics
ring = frames(2)
parameters = dict(CONFIGS[sys.argv[2]])
beam_metrics.configure(parameters)
beam_metrics.process_image(ring[0], 0, (0, 0), None, None, parameters, {})
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
for i in range(int(sys.argv[3])):
    beam_metrics.process_image(ring[i % 2], i, (0, 0), None, None, parameters, {})
print((time.perf_counter() - start) / int(sys.argv[3]), flush=True)
"""


def alone_ms(config: str, repeats: int, copies: int) -> list[float]:
    """ms per frame of process_image in ``copies`` processes running at once."""
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", PROBE, str(ROOT), config, str(repeats)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(copies)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return [float(proc.communicate(timeout=600)[0]) * 1e3 for proc in procs]
    finally:
        kill_tree(procs)


def _mode_name(mode: str, workers: int) -> str:
    return "none" if mode == "none" else f"{mode}{workers}"


def _parse_modes(text: str) -> list[tuple[str, int]]:
    """The set-ups named in ``--modes``, in the order of MODES; ``none`` always (the baseline)."""
    known = {_mode_name(*m): m for m in MODES}
    wanted = {name.strip() for name in text.split(",") if name.strip()}
    if unknown := wanted - set(known):
        raise SystemExit(f"--modes: unknown {sorted(unknown)}; known: {', '.join(known)}")
    return [m for name, m in known.items() if name in wanted or name == "none"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per set-up")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--hwm", type=int, default=4, help="SNDHWM of feeder and runner")
    parser.add_argument(
        "--window", type=int, default=8, help="frames the feeder sends ahead of the sink"
    )
    parser.add_argument("--ring", type=int, default=2, help="distinct noise draws")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS)
    )
    names = [_mode_name(*m) for m in MODES]
    parser.add_argument(
        "--modes",
        default=",".join(names),
        help="comma-separated, of: " + ", ".join(names) + " (none, the baseline, always runs)",
    )
    parser.add_argument(
        "--with-image", action="store_true", help="keep the image in the output (one more hop)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.rounds = 1.5, 0.5, 1
    configs = args.configs.split(",")
    if unknown := set(configs) - set(CONFIGS):
        raise SystemExit(f"--configs: unknown {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    modes = _parse_modes(args.modes)

    ring = frames(args.ring)
    repeats = 30 if args.quick else 150
    (one,) = alone_ms("slices", repeats, 1)
    two = alone_ms("slices", repeats, 2)
    capacity = sum(one / t for t in two)
    setups: list[Setup] = [(c, m, w) for c in configs for m, w in modes]
    results: dict[Setup, list[dict[str, float]]] = {s: [] for s in setups}
    ports: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        try:
            for _ in range(args.rounds):
                for setup in setups:
                    results[setup].append(run_phase(*setup, args, ring, Path(tmp), ports))
        finally:
            clean = check_clean(ports)

    def pooled(setup: Setup, key: str) -> float:
        return sum(r[key] for r in results[setup])

    def ms(setup: Setup, key: str) -> float:
        return pooled(setup, key) / max(1.0, pooled(setup, "frames")) * 1e3

    fps = {s: statistics.median(r["fps"] for r in results[s]) for s in setups}
    ratio = {s: fps[s] / fps[(s[0], "none", 1)] for s in setups}
    cores = len(os.sched_getaffinity(0))
    print(
        f"beam_metrics on {WIDTH}x{HEIGHT} uint16 ({ring[0].nbytes / 1e6:.1f} MB), image "
        f"{'in' if args.with_image else 'excluded from'} the output, {cores} cores, feeder "
        f"window {args.window}; {args.rounds} round(s) of {args.seconds:g} s per set-up, "
        "interleaved"
    )
    print(
        f"machine: process_image (slices) alone {one:.2f} ms/frame; two processes at once "
        f"{' and '.join(f'{t:.2f}' for t in two)} ms/frame: capacity {capacity:.2f}x one"
    )
    print(
        f"{'config':<9}{'parallel':<14}{'fps':>8}{'ratio':>7}{'gaps':>6}{'main':>7}"
        f"{'threads':>8}{'workers':>8}{'fan-in':>7}{'bench':>7}{'sum':>7}{'cores':>6}  rounds"
    )
    print(f"{'':<44}CPU ms per output frame")
    for setup in setups:
        config, mode, workers = setup
        label = "none" if mode == "none" else f"{mode} x{workers}"
        cpu = [ms(setup, k) for k in ("main", "threads", "workers", "fanin", "bench")]
        rounds = " ".join(f"{r['fps']:.1f}" for r in results[setup])
        print(
            f"{config:<9}{label:<14}{fps[setup]:>8.1f}{ratio[setup]:>6.2f}x"
            f"{pooled(setup, 'skipped'):>6.0f}{cpu[0]:>7.2f}{cpu[1]:>8.2f}{cpu[2]:>8.2f}"
            f"{cpu[3]:>7.2f}{cpu[4]:>7.2f}{sum(cpu):>7.2f}{sum(cpu) * fps[setup] / 1e3:>6.2f}"
            f"  {rounds}"
        )
    unordered = sum(pooled(s, "unordered") for s in setups)
    if unordered:
        print(f"WARNING: output out of pulse-id order in {unordered:.0f} window(s)")
    print(f"cleanup: {clean}")
    head = "slices" if "slices" in configs else configs[0]
    fields = [f"{c}_{_mode_name(m, w)}_fps={fps[(c, m, w)]:.1f}" for c, m, w in setups]
    fields += [
        f"{c}_{_mode_name(m, w)}_ratio={ratio[(c, m, w)]:.2f}" for c, m, w in setups if m != "none"
    ]
    # The target: processes or fan-out, 2 workers, on the headline configuration.
    candidates = {m: ratio[(head, m, 2)] for m in ("processes", "fanout") if (head, m, 2) in ratio}
    verdict = ""
    if candidates:
        best = max(candidates.values())
        verdict = (
            " "
            + " ".join(f"ratio_{m}2={r:.2f}" for m, r in candidates.items())
            + f" ({head}) target=>={TARGET} met={'yes' if best >= TARGET else 'no'}"
        )
    print(
        "RESULT "
        + " ".join(fields)
        + f" machine_capacity={capacity:.2f}"
        + verdict
        + f" unordered={unordered:.0f}"
    )


if __name__ == "__main__":
    main()
