"""C extension: both projections of a 2560x2160 uint16 image in one pass, vs numpy's two sums.

The extension is ``runners/c/projections_ext.c`` (the example users copy), compiled by the
runner's own loader (``runners.python.extension``) into a temporary cache and called through
``Extension.process_image``: the figure includes everything the runner pays per frame (the
cffi call, the parameter and output callbacks, the numpy output arrays), not the loop alone. It
computes the column sums, the row sums, the minimum and the maximum. The baseline, in the same
process and interleaved in rounds, is numpy's ``image.sum(axis=0, dtype=int64)`` and
``image.sum(axis=1, dtype=int64)`` (no minimum, no maximum). Frames rotate through a ring of
eight (90 MB, more than the caches), so each call reads its frame from memory, as in a pipeline.
Outputs are compared with numpy's first. Target: at least 4x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from _harness import ROOT, check_clean

sys.path.insert(0, str(ROOT))

from runners.python.extension import load_extension

WIDTH, HEIGHT = 2560, 2160
TARGET = 4.0


def frames(count: int) -> list[np.ndarray]:
    """A Gaussian spot with Poisson noise, seeded."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    mean = 20.0 + 1000.0 * np.exp(
        -((xx - 1317.0) ** 2 / (2 * 150.0**2) + (yy - 1027.0) ** 2 / (2 * 110.0**2))
    )
    rng = np.random.default_rng(11)
    return [rng.poisson(mean).astype(np.uint16) for _ in range(count)]


def per_call_ms(call, ring: list[np.ndarray], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        call(ring[i % len(ring)])
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=80, help="calls per round and set-up")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 2, 10
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    ring = frames(8)
    with tempfile.TemporaryDirectory(prefix="bench-cext-") as cache:
        os.environ["PIPEVISOR_CACHE_DIR"] = cache
        start = time.perf_counter()
        extension = load_extension(ROOT / "runners" / "c" / "projections_ext.c")
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        load_extension(ROOT / "runners" / "c" / "projections_ext.c")
        cached_ms = (time.perf_counter() - start) * 1000

        def ours(image: np.ndarray) -> dict:
            return extension.process_image(image, 1, (0, 0), None, None, {})

        def numpy_sums(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return image.sum(axis=0, dtype=np.int64), image.sum(axis=1, dtype=np.int64)

        for image in ring:  # the same numbers first
            out = ours(image)
            x, y = numpy_sums(image)
            assert np.array_equal(out["x_profile"], x)
            assert np.array_equal(out["y_profile"], y)
            assert out["min_value"] == image.min()
            assert out["max_value"] == image.max()
        rounds: dict[str, list[float]] = {"extension": [], "numpy": []}
        for _ in range(args.rounds):
            rounds["extension"].append(per_call_ms(ours, ring, args.calls))
            rounds["numpy"].append(per_call_ms(numpy_sums, ring, args.calls))
    ext_ms = statistics.median(rounds["extension"])
    numpy_ms = statistics.median(rounds["numpy"])
    ratio = numpy_ms / ext_ms
    print(f"image {WIDTH}x{HEIGHT} uint16, ring of {len(ring)}, {args.rounds} rounds")
    print(f"compile on first use: {compile_s:.2f} s; load from the cache: {cached_ms:.1f} ms")
    print(f"{'set-up':<44}{'ms/frame':>10}   rounds")
    for label, key in (
        ("C extension (x, y, min, max; one pass)", "extension"),
        ("numpy sum(axis=0) + sum(axis=1)", "numpy"),
    ):
        print(f"{label:<44}{statistics.median(rounds[key]):>10.3f}   "
              + " ".join(f"{v:.3f}" for v in rounds[key]))  # fmt: skip
    print(f"ratio: {ratio:.1f}x (target >= {TARGET:g}x)")
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT extension_ms={ext_ms:.3f} numpy_ms={numpy_ms:.3f} ratio={ratio:.2f} "
        f"compile_s={compile_s:.2f} cached_load_ms={cached_ms:.1f} target={TARGET:g}x "
        f"met={'yes' if ratio >= TARGET else 'no'}"
    )


if __name__ == "__main__":
    main()
