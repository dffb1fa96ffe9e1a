"""Parallel processing in the runner: beam metrics on 2560x2160 uint16, threads and processes.

    feeder PUSH --> [runner: PULL -> decode -> workers: beam_metrics -> encode -> PUSH] --> sink

The runner is started directly (``python -m runners.python --module
builtin_pipelines.beam_metrics`` with a ``ContractEnv``: DATA PULL, OUTPUT PUSH, no CONFIG or
LOG channel), with ``parallel`` none (the baseline: the single-process loop), threads with 1
and 2 workers, and processes with 1 and 2 workers. The feeder sends bsread messages of a ring
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
worker threads with ``threads``), its worker processes, and this script (the feeder's and the
sink's sockets). ``cores`` is that sum times frames/s: near the machine's core count, the set-up
is bound by the machine as a whole, not by one process. And the machine's own capacity, in the
same run: ``process_image`` (slices) in two processes at once against one alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import zmq
from _harness import PYTHON, ROOT, check_clean, free_port, kill_tree, wait_for

sys.path.insert(0, str(ROOT))

from supervisor.contract import ContractEnv, SocketMode
from supervisor.contract.bsread import Encoder

WIDTH, HEIGHT = 2560, 2160
SLICES = {
    "image_good_region": {"threshold": 0.3, "gfscale": 1.8},
    "image_slices": {"number_of_slices": 5, "scale": 2, "orientation": "vertical"},
}
CONFIGS = {"default": {}, "slices": SLICES, "binned": {**SLICES, "binning_x": 2, "binning_y": 2}}
MODES = (("none", 1), ("threads", 1), ("threads", 2), ("processes", 1), ("processes", 2))
TARGET = 1.6


def frames(count: int, seed: int = 7) -> list[np.ndarray]:
    """Seeded 2560x2160 uint16 frames of one Gaussian spot with Poisson noise."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    mean = 20.0 + 1000.0 * np.exp(
        -((xx - 1317.0) ** 2 / (2 * 150.0**2) + (yy - 1027.0) ** 2 / (2 * 110.0**2))
    )
    rng = np.random.default_rng(seed)
    return [rng.poisson(mean).astype(np.uint16) for _ in range(count)]


class Feeder(threading.Thread):
    """PUSH the ring's frames, a fresh main header (pulse id) per message, at most ``window``
    ahead of the sink: a closed loop, so frames are sent as fast as the pipeline delivers them
    and none is sent only to be dropped (that would cost the machine the transport for nothing).
    """

    def __init__(
        self, ctx: zmq.Context, port: int, ring: list[np.ndarray], hwm: int, window: int
    ) -> None:
        super().__init__(daemon=True)
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(f"tcp://127.0.0.1:{port}")
        self.ring = ring
        self.credits = threading.Semaphore(window)
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        encoder = Encoder()
        pulse_id = 0
        while not self.halt.is_set():
            # Without a credit for a while, send anyway: frames the runner processed before
            # the sink was connected never come back (its PUSH drops with no peer).
            self.credits.acquire(timeout=0.5)
            data = {"image": self.ring[pulse_id % len(self.ring)]}
            frames = encoder.encode(data, pulse_id, None)
            while not self.halt.is_set():
                if self.sock.poll(100, zmq.POLLOUT):
                    try:
                        self.sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        continue
                    self.sent += 1
                    pulse_id += 1
                    break
        # A linger: libzmq 4.3.5 aborts when a socket closes with half a multipart message sent.
        self.sock.close(linger=2000)


class Sink(threading.Thread):
    """PULL and note (arrival time, pulse id) of every message."""

    def __init__(self, ctx: zmq.Context, url: str, hwm: int, feeder: Feeder) -> None:
        super().__init__(daemon=True)
        self.feeder = feeder
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url)
        self.arrivals: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.sock.poll(100):
                continue
            frames = self.sock.recv_multipart(copy=False)
            pulse_id = json.loads(frames[0].bytes)["pulse_id"]
            last = self.arrivals[-1][1] if self.arrivals else -1
            self.arrivals.append((time.monotonic(), pulse_id))
            self.feeder.credits.release(max(1, pulse_id - last))  # a dropped one's credit too
        self.sock.close(linger=0)

    def window(self, t0: float, t1: float) -> tuple[int, float, int, bool]:
        """(messages in [t0, t1), their rate, pulse ids skipped between them, in order).

        The rate is over the span from the first to the last arrival, so a slow set-up (a few
        frames per window) is not rounded to whole frames per window."""
        arrivals = [(t, p) for t, p in self.arrivals if t0 <= t < t1]
        pulses = [p for _, p in arrivals]
        skipped = sum(b - a - 1 for a, b in itertools.pairwise(pulses))
        span = arrivals[-1][0] - arrivals[0][0] if len(arrivals) > 2 else 0.0
        rate = (len(arrivals) - 1) / span if span > 0 else len(arrivals) / (t1 - t0)
        return len(pulses), rate, skipped, all(a < b for a, b in itertools.pairwise(pulses))


def _cpu(proc: psutil.Process) -> tuple[float, float, float]:
    """CPU seconds of (the runner's main thread, its other threads, its child processes)."""
    main = other = children = 0.0
    for t in proc.threads():
        if t.id == proc.pid:
            main += t.user_time + t.system_time
        else:
            other += t.user_time + t.system_time
    for child in proc.children(recursive=True):
        try:
            times = child.cpu_times()
            children += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return main, other, children


def _self_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def run_phase(
    config: str,
    mode: str,
    workers: int,
    args: argparse.Namespace,
    ring: list[np.ndarray],
    workdir: Path,
    ports: list[int],
) -> dict[str, float]:
    """One measured window of one set-up, with a fresh runner."""
    ctx, sink_ctx = zmq.Context(), zmq.Context()
    feed_port, out_port = free_port(), free_port()
    ports += [feed_port, out_port]
    parameters = {
        **CONFIGS[config],
        "parallel": mode,
        "workers": workers,
        "queue_size": args.window,  # what the feeder may have in flight: no input drops
        "output_queue_size": args.hwm,
    }
    if not args.with_image:
        parameters["exclude"] = ["image"]
    contract = ContractEnv(
        instance="beam",
        run=1,
        config=parameters,
        data_url=f"tcp://127.0.0.1:{feed_port}",
        data_mode=SocketMode.PULL,
        output_url=f"tcp://127.0.0.1:{out_port}",
        output_mode=SocketMode.PUSH,
    )
    name = f"{config}-{mode}-{workers}"
    feeder = Feeder(ctx, feed_port, ring, args.hwm, args.window)
    sink: Sink | None = None
    runner: subprocess.Popen[bytes] | None = None
    try:
        with open(workdir / f"{name}.log", "ab") as log:
            runner = subprocess.Popen(
                [PYTHON, "-m", "runners.python", "--module", "builtin_pipelines.beam_metrics"],
                env={**os.environ, **contract.to_environ(), "PYTHONUNBUFFERED": "1"},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        sink = Sink(sink_ctx, contract.output_url, args.hwm, feeder)
        sink.start()
        feeder.start()

        def flowing() -> bool:
            if runner.poll() is not None:
                text = (workdir / f"{name}.log").read_text()[-2000:]
                raise SystemExit(f"{name}: the runner exited {runner.returncode}: {text}")
            return bool(sink.arrivals)

        wait_for(flowing, timeout=60, what=f"first frame at the sink ({name})")
        time.sleep(args.warmup)
        proc = psutil.Process(runner.pid)
        cpu0, own0 = _cpu(proc), _self_cpu()
        sent0, t0 = feeder.sent, time.monotonic()
        time.sleep(args.seconds)
        t1, sent1 = time.monotonic(), feeder.sent
        cpu1, own1 = _cpu(proc), _self_cpu()
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
        if runner is not None:
            if runner.poll() is None:
                runner.send_signal(signal.SIGTERM)  # the runner stops its workers
                try:
                    runner.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            kill_tree([runner])


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
    parser.add_argument(
        "--with-image", action="store_true", help="keep the image in the output (one more hop)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.rounds = 1.5, 0.5, 1
    configs = args.configs.split(",")

    ring = frames(args.ring)
    repeats = 30 if args.quick else 150
    (one,) = alone_ms("slices", repeats, 1)
    two = alone_ms("slices", repeats, 2)
    capacity = sum(one / t for t in two)
    setups = [(c, m, w) for c in configs for m, w in MODES]
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {s: [] for s in setups}
    ports: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        try:
            for _ in range(args.rounds):
                for setup in setups:
                    results[setup].append(run_phase(*setup, args, ring, Path(tmp), ports))
        finally:
            clean = check_clean(ports)

    def pooled(setup: tuple[str, str, int], key: str) -> float:
        return sum(r[key] for r in results[setup])

    def ms(setup: tuple[str, str, int], key: str) -> float:
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
        f"{'config':<9}{'parallel':<13}{'fps':>8}{'ratio':>7}{'gaps':>6}"
        f"{'main':>7}{'threads':>8}{'workers':>8}{'bench':>7}{'sum':>7}{'cores':>6}  rounds"
    )
    print(f"{'':<43}CPU ms per output frame")
    for setup in setups:
        config, mode, workers = setup
        label = "none" if mode == "none" else f"{mode} x{workers}"
        cpu = [ms(setup, k) for k in ("main", "threads", "workers", "bench")]
        rounds = " ".join(f"{r['fps']:.1f}" for r in results[setup])
        print(
            f"{config:<9}{label:<13}{fps[setup]:>8.1f}{ratio[setup]:>6.2f}x"
            f"{pooled(setup, 'skipped'):>6.0f}{cpu[0]:>7.2f}{cpu[1]:>8.2f}{cpu[2]:>8.2f}"
            f"{cpu[3]:>7.2f}{sum(cpu):>7.2f}{sum(cpu) * fps[setup] / 1e3:>6.2f}  {rounds}"
        )
    unordered = sum(pooled(s, "unordered") for s in setups)
    if unordered:
        print(f"WARNING: output out of pulse-id order in {unordered:.0f} window(s)")
    print(f"cleanup: {clean}")
    head = "slices" if "slices" in configs else configs[0]
    headline = ratio[(head, "processes", 2)]
    fields = [f"{c}_{m}{w}_fps={fps[(c, m, w)]:.1f}" for c, m, w in setups]
    fields += [f"{c}_{m}{w}_ratio={ratio[(c, m, w)]:.2f}" for c, m, w in setups if m != "none"]
    print(
        "RESULT "
        + " ".join(fields)
        + f" machine_capacity={capacity:.2f} ratio={headline:.2f} ({head}, processes x2)"
        + f" target=>={TARGET} met={'yes' if headline >= TARGET else 'no'}"
        + f" unordered={unordered:.0f}"
    )


if __name__ == "__main__":
    main()
