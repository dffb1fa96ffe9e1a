"""Data path: passthrough pipelines (C library, Python runner) on 2560x2160 uint16 vs raw ZMQ.

feeder PUSH --> [C program: PULL -> decode -> forward (shared frames) -> PUSH] --> sink PULL
feeder PUSH --> [runner: PULL -> decode -> process(data) -> encode -> PUSH] ------> sink PULL
feeder PUSH --> [raw relay: PULL -> PUSH, zero-copy, nothing else] -------------> sink PULL
feeder PUSH -----------------------------------------------------------------> sink PULL

The C program is ``runners/c/build/passthrough`` (``make -C runners/c``): the C library's
decoder and encoder, every value forwarded without a copy (``pv_program_hold``). The feeder
sends bsread messages built by our Encoder (the image is referenced, never copied) as fast as
the next hop takes them: a blocking PUSH at the high-water mark is the backpressure. The sink
counts messages and reads the pulse id of each, so a gap is a message a pipeline dropped (its
input queue overflowing, or a full output). The figure is frames delivered at the sink per
second; drops are reported apart. Every set-up has the same frames, HWM and sink (the C
library's own HWMs are 4 in and 10 out); they are interleaved in rounds (raw, relay, native,
runner, copy, raw, ...) and each figure is the median of its rounds. The raw relay has the
pipelines' topology (two loopback hops), so ``*_vs_relay`` is what a pipeline itself costs;
``*_vs_one_hop`` compares with a single raw PUSH->PULL.

No copy of the image in the runner: the runner's main thread (the Python loop: receive,
decode, call, encode, send) must spend less CPU per frame than one memcpy of the image
(np.copyto, measured here). ZMQ's I/O threads move the bytes through the kernel (TCP), which
the raw set-ups pay too; they are reported apart.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import zmq
from _harness import PYTHON, ROOT, check_clean, free_port, kill_tree, wait_for

from supervisor.contract import ContractEnv, SocketMode
from supervisor.contract.bsread import Encoder

PASSTHROUGH = """\
def process(data, pulse_id, timestamp, parameters):
    return data
"""
# The control: the same pipeline with exactly one copy of the image, to show what one copy costs
# the runner's main thread when measured the same way.
ONE_COPY = """\
def process(data, pulse_id, timestamp, parameters):
    return {**data, "image": data["image"].copy()}
"""
SCRIPTS = {"runner": "passthrough.py", "copy": "one_copy.py"}
RELAY = ROOT / "bench" / "_relay.py"
NATIVE = ROOT / "runners" / "c" / "build" / "passthrough"  # make -C runners/c
KINDS = ("raw", "relay", "native", "runner", "copy")


class Feeder(threading.Thread):
    """PUSH the same image, a fresh main header (pulse id) per message, as fast as it is taken."""

    def __init__(self, ctx: zmq.Context, port: int, image: np.ndarray, hwm: int) -> None:
        super().__init__(daemon=True)
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(f"tcp://127.0.0.1:{port}")
        self.image = image
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        encoder = Encoder()
        pulse_id = 0
        data = {"image": self.image}
        while not self.halt.is_set():
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
        # A linger, not 0: closing with half of a multipart message sent makes libzmq 4.3.5
        # abort the process (session_base.cpp:233); the sink still drains while we close.
        self.sock.close(linger=2000)


class Sink(threading.Thread):
    """PULL and note (arrival time, pulse id) of every message; the image is never touched."""

    def __init__(self, ctx: zmq.Context, url: str, hwm: int, expected_bytes: int) -> None:
        super().__init__(daemon=True)
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url)
        self.expected_bytes = expected_bytes
        self.arrivals: list[tuple[float, int]] = []
        self.short = 0  # messages whose image frame had the wrong size (should stay 0)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.sock.poll(100):
                continue
            frames = self.sock.recv_multipart(copy=False)
            pulse_id = json.loads(frames[0].bytes)["pulse_id"]
            if len(frames) < 3 or len(frames[2].buffer) != self.expected_bytes:
                self.short += 1
            self.arrivals.append((time.monotonic(), pulse_id))
        self.sock.close(linger=0)

    def window(self, t0: float, t1: float) -> tuple[int, int]:
        """(messages arrived in [t0, t1), pulse ids skipped between them)."""
        pulses = [p for t, p in self.arrivals if t0 <= t < t1]
        skipped = sum(b - a - 1 for a, b in itertools.pairwise(pulses))
        return len(pulses), skipped


def _thread_cpu(proc: psutil.Process) -> tuple[float, float]:
    """(CPU s of the main thread, CPU s of every other thread) of a process."""
    main = other = 0.0
    for t in proc.threads():
        if t.id == proc.pid:
            main += t.user_time + t.system_time
        else:
            other += t.user_time + t.system_time
    return main, other


def _start_middle(
    kind: str, feed_url: str, out_url: str, hwm: int, workdir: Path
) -> subprocess.Popen[bytes]:
    """The process between feeder and sink: the raw relay, or the runner with a script."""
    if kind == "relay":
        cmd, env = [PYTHON, str(RELAY), feed_url, out_url, str(hwm)], dict(os.environ)
    elif kind == "native":  # the C library's passthrough: the same contract, no Python
        contract = ContractEnv(
            instance="passthrough",
            run=1,
            data_url=feed_url,
            data_mode=SocketMode.PULL,
            output_url=out_url,
            output_mode=SocketMode.PUSH,
        )
        cmd, env = [str(NATIVE)], {**os.environ, **contract.to_environ()}
    else:
        contract = ContractEnv(
            instance="passthrough",
            run=1,
            config={"queue_size": hwm, "output_queue_size": hwm},  # RCVHWM in, SNDHWM out
            data_url=feed_url,
            data_mode=SocketMode.PULL,
            output_url=out_url,
            output_mode=SocketMode.PUSH,
        )
        cmd = [PYTHON, "-m", "runners.python", "--script", str(workdir / SCRIPTS[kind])]
        env = {**os.environ, **contract.to_environ()}
    with open(workdir / f"{kind}.log", "ab") as log:
        return subprocess.Popen(
            cmd,
            env={**env, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_phase(
    kind: str,
    image: np.ndarray,
    hwm: int,
    warmup: float,
    seconds: float,
    workdir: Path,
    ports_used: list[int],
) -> dict[str, float]:
    """One measured window of the one raw hop ('raw'), the raw relay ('relay'), the runner
    pipeline ('runner') or its one-copy control ('copy')."""
    # Feeder and sink get a context (an I/O thread) each, as two separate programs would.
    ctx, sink_ctx = zmq.Context(), zmq.Context()
    feed_port = free_port()
    ports_used.append(feed_port)
    feeder = Feeder(ctx, feed_port, image, hwm)
    sink: Sink | None = None
    middle: subprocess.Popen[bytes] | None = None
    sink_url = feed_url = f"tcp://127.0.0.1:{feed_port}"
    try:
        if kind != "raw":
            out_port = free_port()
            ports_used.append(out_port)
            sink_url = f"tcp://127.0.0.1:{out_port}"
            middle = _start_middle(kind, feed_url, sink_url, hwm, workdir)
        sink = Sink(sink_ctx, sink_url, hwm, image.nbytes)
        sink.start()
        feeder.start()

        def flowing() -> bool:
            if middle is not None and middle.poll() is not None:
                raise SystemExit(
                    f"{kind} exited {middle.returncode}: "
                    f"{(workdir / f'{kind}.log').read_text()[-2000:]}"
                )
            return bool(sink.arrivals)

        wait_for(flowing, timeout=30, what=f"first frame at the sink ({kind})")
        time.sleep(warmup)
        mproc = psutil.Process(middle.pid) if middle is not None else None
        cpu0 = _thread_cpu(mproc) if mproc else (0.0, 0.0)
        sent0, t0 = feeder.sent, time.monotonic()
        time.sleep(seconds)
        t1, sent1 = time.monotonic(), feeder.sent
        cpu1 = _thread_cpu(mproc) if mproc else (0.0, 0.0)
        frames, skipped = sink.window(t0, t1)
        feeder.halt.set()  # the feeder first, while the sink still drains what is in flight
        feeder.join(5)
        sink.halt.set()
        sink.join(5)
        return {
            "seconds": t1 - t0,
            "frames": frames,
            "fps": frames / (t1 - t0),
            "sent": sent1 - sent0,
            "skipped": skipped,
            "main_cpu": cpu1[0] - cpu0[0],
            "io_cpu": cpu1[1] - cpu0[1],
            "short": sink.short,
        }
    finally:
        # Our sockets go first, the feeder before the sink: libzmq 4.3.5 aborts
        # (session_base.cpp:233, clean_pipes) when a session is torn down holding half of a
        # multipart message.
        feeder.halt.set()
        for thread in (feeder, sink):
            if thread is None:
                continue
            thread.halt.set()
            if thread.is_alive():
                thread.join(5)
        ctx.destroy(linger=0)
        sink_ctx.destroy(linger=0)
        if middle is not None:
            if middle.poll() is None:
                middle.send_signal(signal.SIGTERM)
                try:
                    middle.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            kill_tree([middle])


def memcpy_seconds(image: np.ndarray, repeats: int) -> float:
    """Median time of one np.copyto of the image into a preallocated array."""
    dst = np.empty_like(image)
    np.copyto(dst, image)  # fault the pages in
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, image)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _tcp_buffers() -> str:
    """The kernel's TCP buffer autotuning range (min default max), for the record."""
    try:
        wmem = Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()
        rmem = Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()
    except OSError:
        return "unknown"
    return f"tcp_wmem {'/'.join(wmem)}, tcp_rmem {'/'.join(rmem)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of raw, relay, runner(, copy), interleaved"
    )
    parser.add_argument("--hwm", type=int, default=4, help="SNDHWM/RCVHWM of every socket")
    parser.add_argument("--width", type=int, default=2560)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument(
        "--no-control", action="store_true", help="skip the one-copy control pipeline"
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.rounds = 1.5, 0.3, 1

    image = np.random.default_rng(1).integers(0, 4096, (args.height, args.width), dtype=np.uint16)
    ports_used: list[int] = []
    kinds = tuple(k for k in KINDS if not (args.no_control and k == "copy"))
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-datapath-") as tmp:
        workdir = Path(tmp)
        (workdir / "passthrough.py").write_text(PASSTHROUGH)
        (workdir / "one_copy.py").write_text(ONE_COPY)
        try:
            for _ in range(args.rounds):
                for kind in kinds:
                    results[kind].append(
                        run_phase(
                            kind, image, args.hwm, args.warmup, args.seconds, workdir, ports_used
                        )
                    )
        finally:
            clean = check_clean(ports_used)
        copy_s = memcpy_seconds(image, 30)

    def pooled(kind: str, key: str) -> float:
        return sum(r[key] for r in results[kind])

    def per_frame_ms(kind: str, key: str) -> float:
        return pooled(kind, key) / max(1.0, pooled(kind, "frames")) * 1e3

    fps = {k: statistics.median(r["fps"] for r in results[k]) for k in kinds}
    vs_relay = fps["runner"] / fps["relay"]
    vs_one_hop = fps["runner"] / fps["raw"]
    main_ms = per_frame_ms("runner", "main_cpu")
    io_ms = per_frame_ms("runner", "io_cpu")
    drops = pooled("runner", "skipped")
    mb = image.nbytes / 1e6

    print(
        f"frames {args.width}x{args.height} uint16 = {mb:.1f} MB, HWM {args.hwm} on every "
        f"socket, ZMQ SNDBUF/RCVBUF left at the OS default on every socket ({_tcp_buffers()}); "
        f"{args.rounds} round(s) of {args.seconds:g} s per set-up, interleaved"
    )
    print("frames/s = delivered at the sink, median of rounds; the rest pooled over all rounds")
    print(
        f"{'set-up':<28}{'frames/s':>10}{'MB/s':>8}{'sent/s':>9}{'dropped':>9}"
        f"{'drop/s':>8}{'main ms/fr':>11}{'io ms/fr':>10}  rounds (frames/s)"
    )
    labels = {
        "raw": "raw PUSH->PULL (one hop)",
        "relay": "raw relay (two hops)",
        "native": "C program passthrough",
        "runner": "runner passthrough",
        "copy": "runner, one copy (control)",
    }
    for kind in kinds:
        secs = pooled(kind, "seconds")
        cpu = (
            f"{per_frame_ms(kind, 'main_cpu'):>11.3f}{per_frame_ms(kind, 'io_cpu'):>10.3f}"
            if kind != "raw"
            else f"{'-':>11}{'-':>10}"
        )
        rounds = " ".join(f"{r['fps']:.1f}" for r in results[kind])
        print(
            f"{labels[kind]:<28}{fps[kind]:>10.1f}{fps[kind] * mb:>8.0f}"
            f"{pooled(kind, 'sent') / secs:>9.1f}{pooled(kind, 'skipped'):>9.0f}"
            f"{pooled(kind, 'skipped') / secs:>8.1f}{cpu}  {rounds}"
        )
    paired = [
        (r["fps"] / a["fps"], r["fps"] / o["fps"])
        for r, a, o in zip(results["runner"], results["relay"], results["raw"], strict=True)
    ]
    per_relay = " ".join(f"{a:.2f}" for a, _ in paired)
    per_one_hop = " ".join(f"{o:.2f}" for _, o in paired)
    native = [
        (n["fps"] / a["fps"], n["fps"] / o["fps"])
        for n, a, o in zip(results["native"], results["relay"], results["raw"], strict=True)
    ]
    native_vs_relay = fps["native"] / fps["relay"]
    native_vs_one_hop = fps["native"] / fps["raw"]
    print(
        f"C program / raw relay: {native_vs_relay:.2f} "
        f"(per round: {' '.join(f'{a:.2f}' for a, _ in native)})"
    )
    print(
        f"C program / one raw hop: {native_vs_one_hop:.2f} "
        f"(per round: {' '.join(f'{o:.2f}' for _, o in native)})"
    )
    print(f"runner / raw relay: {vs_relay:.2f} (per round: {per_relay})")
    print(f"runner / one raw hop: {vs_one_hop:.2f} (per round: {per_one_hop})")
    share = drops / max(1.0, drops + pooled("runner", "frames"))
    print(
        f"runner drops (pulse-id gaps at the sink): {drops:.0f} in "
        f"{pooled('runner', 'seconds'):.0f} s ({share:.1%} of the pulses)"
    )
    print(
        f"runner main thread CPU per frame: {main_ms:.3f} ms "
        f"(memcpy of one frame: {copy_s * 1e3:.3f} ms -> "
        f"{main_ms / (copy_s * 1e3):.2f} copies' worth; raw relay's: "
        f"{per_frame_ms('relay', 'main_cpu'):.3f} ms)"
    )
    print(f"runner ZMQ I/O threads CPU per frame: {io_ms:.3f} ms (TCP in + out, kernel copies)")
    copy_ms = float("nan")
    if "copy" in results:
        copy_ms = per_frame_ms("copy", "main_cpu")
        print(
            f"control with one copy in process(): main thread {copy_ms:.3f} ms per frame "
            f"(+{copy_ms - main_ms:.3f} ms over the passthrough)"
        )
    short = sum(pooled(k, "short") for k in kinds)
    if short:
        print(f"WARNING: {short:.0f} messages arrived with a wrong image size")
    print(f"cleanup: {clean}")
    print(
        f"RESULT native_fps={fps['native']:.1f} native_vs_relay={native_vs_relay:.2f} "
        f"native_vs_one_hop={native_vs_one_hop:.2f} "
        f"runner_fps={fps['runner']:.1f} relay_fps={fps['relay']:.1f} "
        f"raw_fps={fps['raw']:.1f} ratio_vs_relay={vs_relay:.2f} "
        f"ratio_vs_one_hop={vs_one_hop:.2f} target=0.7 runner_drops={drops:.0f} "
        f"runner_main_cpu_ms_per_frame={main_ms:.3f} memcpy_ms_per_frame={copy_s * 1e3:.3f} "
        f"one_copy_main_cpu_ms_per_frame={copy_ms:.3f} runner_io_cpu_ms_per_frame={io_ms:.3f} "
        f"rounds={args.rounds}"
    )


if __name__ == "__main__":
    main()
