"""Live preview: what a viewer polling the preview at 5 Hz costs a pipeline at 100 Hz.

    camera_simulation 2560x2160 uint16, 100 Hz (PUB) --> beam_metrics (SUB -> metrics -> PUB)
          \\--> supervisor: one frame per GET /api/v1/instances/cam/preview (5 Hz client)

A real ``pipevisor serve`` runs both instances from a registry. Windows with no preview client
and windows with a client polling the camera's preview at 5 Hz (width 640, viridis) alternate,
``--rounds`` of each. Per window, from the instances' status over REST (the counters' deltas
between the first and last status of the window, over their own timestamps): the camera's send
rate, the pipeline's output rate, its input drops (latest wins), output drops, and frames
missing (the camera's pulse ids are consecutive: pulse ids the pipeline moved past minus
messages it sent: frames lost anywhere between the camera and the pipeline's output). Also the
supervisor's CPU (% of one core), and for the previews: the server's render time per preview
(its ``Server-Timing``), the client's request time, and how many distinct frames were shown.

Baseline in the same run: the windows without a client. Target: output rate with previews
>= 0.98x without, and no added drops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _harness import SupervisorServer, check_clean, summary, wait_for

WIDTH, HEIGHT = 2560, 2160


def registry(folder: Path, rate: float) -> None:
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
    }
    pipeline = {"builtin": "beam_metrics", "input": {"camera": "cam"}}
    (folder / "cam.json").write_text(json.dumps(camera))
    (folder / "beam.json").write_text(json.dumps(pipeline))


class Poller:
    """A viewer: GET the preview every ``1 / hz`` s (fixed schedule) in a thread."""

    def __init__(self, url: str, hz: float) -> None:
        self.url, self.period = url, 1.0 / hz
        self.stop = threading.Event()
        self.request_ms: list[float] = []
        self.render_ms: dict[int, float] = {}  # by pulse id: each frame rendered once
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        params = {"width": 640, "colormap": "viridis"}
        with httpx.Client(timeout=10.0) as client:
            due = time.monotonic()
            while not self.stop.is_set():
                t0 = time.perf_counter()
                response = client.get(self.url, params=params)
                self.request_ms.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
                else:
                    timing = response.headers["server-timing"]  # render;dur=<ms>
                    pulse = int(response.headers["x-pulse-id"])
                    self.render_ms[pulse] = float(timing.split("dur=")[1])
                due += self.period
                self.stop.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def stats(sup: SupervisorServer, name: str) -> dict[str, Any]:
    return sup.api("GET", f"/instances/{name}").json()["stats"]


def fresh_status(sup: SupervisorServer, after: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The camera's and the pipeline's first status messages sent after unix time ``after``."""

    def probe() -> tuple[dict[str, Any], dict[str, Any]] | None:
        cam, beam = stats(sup, "cam"), stats(sup, "beam")
        return (cam, beam) if min(cam["updated"], beam["updated"]) > after else None

    return wait_for(probe, timeout=10, interval=0.1, what="fresh status")


def window(sup: SupervisorServer, seconds: float, poller: Poller | None) -> dict[str, float]:
    """One window: rates and drops from the status counters, the supervisor's CPU.

    The counters are read from the first status after the client started and the first after
    the window, so the deltas cover time with the client running only.
    """
    proc = psutil.Process(sup.proc.pid)  # type: ignore[union-attr]
    with poller if poller is not None else contextlib.nullcontext():
        cam0, beam0 = fresh_status(sup, time.time())
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(seconds)
        cam1, beam1 = fresh_status(sup, time.time())
        cpu1, t1 = proc.cpu_times(), time.monotonic()

    def delta(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
        return b[key] - a[key]

    out = delta(beam0, beam1, "messages_out")
    return {
        "camera_fps": delta(cam0, cam1, "messages_out") / delta(cam0, cam1, "updated"),
        "fps": out / delta(beam0, beam1, "updated"),
        "input_drops": delta(beam0, beam1, "drops"),
        "output_drops": delta(beam0, beam1, "output_drops"),
        # Every pulse id the pipeline moved past without sending it: its own drops included.
        "missing": delta(beam0, beam1, "last_pulse_id") - out,
        "frames": out,
        "cpu": 100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (t1 - t0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each window")
    parser.add_argument("--rounds", type=int, default=5, help="windows of each kind")
    parser.add_argument("--rate", type=float, default=100.0, help="camera frame rate, Hz")
    parser.add_argument("--hz", type=float, default=5.0, help="the client's preview rate")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the first window")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.warmup = 3.0, 1, 2.0
    results: dict[str, list[dict[str, float]]] = {"none": [], "preview": []}
    pollers: list[Poller] = []
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp:
        root = Path(tmp)
        registry(root / "registry", args.rate)
        sup = SupervisorServer(root / "registry", root / "state").start()
        try:
            sup.api("POST", "/instances", json={"name": "beam", "entry": "beam"})
            for name in ("cam", "beam"):
                wait_for(
                    lambda n=name: stats(sup, n)["messages_out"] > 0,
                    timeout=60,
                    what=f"{name} output",
                )
            time.sleep(args.warmup)  # the pipeline's native kernels and caches settle
            url = f"{sup.url}/instances/cam/preview"
            for _ in range(args.rounds):
                results["none"].append(window(sup, args.seconds, None))
                poller = Poller(url, args.hz)
                pollers.append(poller)
                results["preview"].append(window(sup, args.seconds, poller))
        finally:
            sup.stop()
    print(
        f"camera {WIDTH}x{HEIGHT} uint16 at {args.rate:g} Hz -> beam_metrics; "
        f"{args.rounds} x 2 windows of {args.seconds:g} s, alternating; client at {args.hz:g} Hz"
    )
    header = (
        f"{'window':<10}{'camera/s':>10}{'beam/s':>9}{'in drops':>10}{'out drops':>11}"
        f"{'missing':>9}{'sup CPU %':>11}"
    )
    print(header)
    for i in range(args.rounds):
        for kind in ("none", "preview"):
            r = results[kind][i]
            print(
                f"{kind + ' ' + str(i + 1):<10}{r['camera_fps']:>10.1f}{r['fps']:>9.1f}"
                f"{r['input_drops']:>10.0f}{r['output_drops']:>11.0f}{r['missing']:>9.0f}"
                f"{r['cpu']:>11.1f}"
            )
    totals = {}
    for kind, rows in results.items():
        frames = sum(r["frames"] for r in rows)
        fps = sorted(r["fps"] for r in rows)[len(rows) // 2]  # median of the windows
        drops = sum(r["missing"] for r in rows)
        cpu = sum(r["cpu"] for r in rows) / len(rows)
        totals[kind] = {"fps": fps, "drops": drops, "frames": frames, "cpu": cpu}
        print(
            f"{kind:<10} median {fps:.1f} frames/s, {frames:.0f} frames, {drops:.0f} missing, "
            f"supervisor {cpu:.1f} % CPU"
        )
    requests = [ms for p in pollers for ms in p.request_ms]
    renders = [ms for p in pollers for ms in p.render_ms.values()]
    errors = [e for p in pollers for e in p.errors]
    shown = sum(len(p.render_ms) for p in pollers)
    if renders:
        rs, qs = summary(renders), summary(requests)
        print(
            f"previews: {len(requests)} requests, {shown} distinct frames, {len(errors)} errors; "
            f"render p50 {rs['median']:.1f} ms p99 {rs['p99']:.1f} ms max {rs['max']:.1f} ms; "
            f"request p50 {qs['median']:.1f} ms p99 {qs['p99']:.1f} ms"
        )
    for error in errors[:3]:
        print(f"  error: {error}")
    ratio = totals["preview"]["fps"] / totals["none"]["fps"]
    added = totals["preview"]["drops"] - totals["none"]["drops"]
    met = ratio >= 0.98 and added <= 0 and not errors
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT fps_preview={totals['preview']['fps']:.1f} fps_none={totals['none']['fps']:.1f} "
        f"drops_preview={totals['preview']['drops']:.0f} drops_none={totals['none']['drops']:.0f} "
        f"render_p50_ms={summary(renders)['median'] if renders else float('nan'):.1f} "
        f"render_p99_ms={summary(renders)['p99'] if renders else float('nan'):.1f} "
        f"cpu_added={totals['preview']['cpu'] - totals['none']['cpu']:.1f} "
        f"ratio={ratio:.3f} target=>=0.98,no_added_drops met={'yes' if met else 'no'}"
    )


if __name__ == "__main__":
    main()
