"""The closed loop of bench_parallel.py: a feeder that keeps a window of frames in flight, a
sink that returns the credits, and where the CPU went.

The feeder PUSHes bsread messages of a ring of frames, a fresh pulse id each, at most
``window`` ahead of the sink: frames go as fast as the pipeline delivers them, and none is
sent only to be dropped. The sink PULLs and notes (arrival time, pulse id) of every message.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time

import numpy as np
import psutil
import zmq
from _harness import ROOT

sys.path.insert(0, str(ROOT))

from supervisor.contract.bsread import Encoder

__all__ = ["Feeder", "Sink", "cpu_of", "cpu_of_all", "own_cpu"]


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


def cpu_of(proc: psutil.Process) -> tuple[float, float, float]:
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


def cpu_of_all(procs: list[psutil.Process]) -> tuple[float, float, float]:
    """:func:`cpu_of` summed over several runners."""
    parts = [cpu_of(proc) for proc in procs]
    return (sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))


def own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system
