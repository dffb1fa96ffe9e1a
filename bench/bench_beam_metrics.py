"""Beam metrics: ``processor.process`` on 2560x2160 uint16 frames, one core, vs plain numpy+scipy.

Frames: a Gaussian spot (sigma 150 x 110 px, 1000 counts over a background of 20) with Poisson
noise, a ring of a few seeded noise draws so the fits do not see one frame only. Two set-ups:

  default   no optional parameters
  slices    image_good_region {threshold: 0.3, gfscale: 1.8} and
            image_slices {number_of_slices: 5, scale: 2, orientation: "vertical"}

The baseline is ``tests/camserver_reference.py`` (CamServer's processing transcribed: numpy
profiles, nanmin/nanmax, scipy ``curve_fit`` from CamServer's guess, Python loops for the scans)
with numpy ``.sum()`` in place of Python's ``sum``: a fair "plain numpy + scipy" version. Both
run in this process, pinned to one CPU, interleaved in rounds; each figure is the median over
rounds of the mean frame time in that round. Frames/s are wall-clock; the CPU-time figure next
to it (process CPU seconds per frame) shows what other load on the machine took away. Before
timing, the outputs of both are compared key by key on every frame of the ring (dtypes exact,
floats to 1e-6 relative).

The profile kernel (one pass: both profiles, min and max) is also timed against numpy's two
``sum(dtype=int64)`` calls on the same frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _harness import ROOT, check_clean

sys.path.insert(0, str(ROOT))

from builtin_pipelines.beam_metrics import native, processor
from tests import camserver_reference as reference

WIDTH, HEIGHT = 2560, 2160
SLICES = {
    "image_good_region": {"threshold": 0.3, "gfscale": 1.8},
    "image_slices": {"number_of_slices": 5, "scale": 2, "orientation": "vertical"},
}
SETUPS = {"default": {}, "slices": SLICES}
TARGET_RATIO = 3.0
TARGET_FPS = {"default": 300.0, "slices": 150.0}


def frames(count: int, seed: int = 7) -> list[np.ndarray]:
    """Seeded 2560x2160 uint16 frames of one Gaussian spot with Poisson noise."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    mean = 20.0 + 1000.0 * np.exp(
        -((xx - 1317.0) ** 2 / (2 * 150.0**2) + (yy - 1027.0) ** 2 / (2 * 110.0**2))
    )
    rng = np.random.default_rng(seed)
    return [rng.poisson(mean).astype(np.uint16) for _ in range(count)]


def per_frame(
    call: Callable[[np.ndarray], Any], ring: list[np.ndarray], n: int
) -> tuple[float, float]:
    """Mean wall and CPU seconds per call over n calls cycling through the ring."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        call(ring[i % len(ring)])
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Differences between two outputs beyond the tolerances of camserver.md §8.7."""
    problems = []
    if list(ours) != list(theirs):
        return [f"keys differ: {list(ours)} vs {list(theirs)}"]
    for key, a in ours.items():
        b = theirs[key]
        if key in ("timestamp", "processing_parameters"):
            continue
        if a is None or b is None or isinstance(a, str):
            if a != b:
                problems.append(f"{key}: {a!r} vs {b!r}")
            continue
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.dtype != b_arr.dtype and not (key.startswith("slice_") or key == "good_region"):
            problems.append(f"{key}: dtype {a_arr.dtype} vs {b_arr.dtype}")
        if key.startswith("coupling"):
            close = np.allclose(a_arr, b_arr, rtol=0, atol=1e-6)
        elif key.endswith("_offset"):
            amplitude = abs(float(theirs[key.replace("_offset", "_amplitude")]))
            close = np.allclose(a_arr, b_arr, rtol=0, atol=1e-6 * amplitude)
        else:
            close = np.allclose(a_arr, b_arr, rtol=1e-6, atol=0, equal_nan=True)
        if not close:
            problems.append(f"{key}: {a!r:.60} vs {b!r:.60}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--frames", type=int, default=60, help="frames per round, ours")
    parser.add_argument(
        "--baseline-frames", type=int, default=12, help="frames per round, baseline"
    )
    parser.add_argument("--ring", type=int, default=4, help="distinct noise draws")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last)")
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.frames, args.baseline_frames, args.ring = 1, 10, 2, 2

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    kernels = native.kernels()
    ring = frames(args.ring)
    x_axis = np.arange(WIDTH, dtype=np.float32)
    y_axis = np.arange(HEIGHT, dtype=np.float32)
    print(f"pinned to CPU {cpu}; native kernels: {'yes' if kernels else 'NO (numpy fallback)'}")
    print(f"{args.ring} frames {WIDTH}x{HEIGHT} uint16, {args.rounds} rounds")

    def ours(parameters: dict[str, Any]) -> Callable[[np.ndarray], Any]:
        return lambda image: processor.process(image, x_axis, y_axis, (0, 0), parameters)

    def baseline(parameters: dict[str, Any]) -> Callable[[np.ndarray], Any]:
        return lambda image: reference.process_image(
            image, x_axis, y_axis, (0, 0), parameters, fast_sums=True
        )

    for name, parameters in SETUPS.items():
        for image in ring:
            problems = compare(ours(parameters)(image), baseline(parameters)(image))
            if problems:
                print(f"WARNING: {name}: outputs differ: " + "; ".join(problems[:5]))

    times: dict[str, list[float]] = {f"{k}_{w}": [] for k in SETUPS for w in ("ours", "base")}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    kernel_t: list[float] = []
    numpy_t: list[float] = []
    for _ in range(args.rounds):
        for name, parameters in SETUPS.items():
            for who, make, n in (
                ("ours", ours, args.frames),
                ("base", baseline, args.baseline_frames),
            ):
                wall, used = per_frame(make(parameters), ring, n)
                times[f"{name}_{who}"].append(wall)
                cpu[f"{name}_{who}"].append(used)
        kernel_t.append(per_frame(lambda im: native.profiles(im, kernels), ring, args.frames)[0])
        numpy_t.append(
            per_frame(
                lambda im: (im.sum(0, dtype=np.int64), im.sum(1, dtype=np.int64)),
                ring,
                args.frames,
            )[0]
        )

    fps = {k: 1.0 / statistics.median(v) for k, v in times.items()}
    cpu_fps = {k: 1.0 / statistics.median(v) for k, v in cpu.items()}
    print()
    print(
        f"{'set-up':<10} {'ours fps':>9} {'(cpu)':>7} {'baseline fps':>13} {'(cpu)':>7} "
        f"{'ratio':>6} {'target':>17}"
    )
    ratios = {}
    for name in SETUPS:
        ratio = fps[f"{name}_ours"] / fps[f"{name}_base"]
        ratios[name] = ratio
        target = f">={TARGET_FPS[name]:.0f} fps, >={TARGET_RATIO:.0f}x"
        print(
            f"{name:<10} {fps[f'{name}_ours']:>9.1f} {cpu_fps[f'{name}_ours']:>7.1f} "
            f"{fps[f'{name}_base']:>13.1f} {cpu_fps[f'{name}_base']:>7.1f} {ratio:>5.1f}x "
            f"{target:>17}"
        )
    kernel_ms = statistics.median(kernel_t) * 1e3
    numpy_ms = statistics.median(numpy_t) * 1e3
    print(
        f"profiles: kernel {kernel_ms:.3f} ms (both profiles + min + max, one pass) vs numpy "
        f"sum(0)+sum(1) int64 {numpy_ms:.3f} ms: {numpy_ms / kernel_ms:.1f}x"
    )
    print(f"cleanup: {check_clean()}")
    met = all(fps[f"{n}_ours"] >= TARGET_FPS[n] and ratios[n] >= TARGET_RATIO for n in SETUPS)
    print(
        f"RESULT default_fps={fps['default_ours']:.1f} default_base_fps={fps['default_base']:.1f} "
        f"default_cpu_fps={cpu_fps['default_ours']:.1f} "
        f"slices_cpu_fps={cpu_fps['slices_ours']:.1f} "
        f"default_ratio={ratios['default']:.2f} slices_fps={fps['slices_ours']:.1f} "
        f"slices_base_fps={fps['slices_base']:.1f} slices_ratio={ratios['slices']:.2f} "
        f"kernel_ms={kernel_ms:.3f} numpy_sums_ms={numpy_ms:.3f} "
        f"target=default>=300fps,slices>=150fps,ratio>=3 met={'yes' if met else 'no'}"
    )


if __name__ == "__main__":
    main()
