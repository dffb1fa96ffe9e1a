"""HDF5 writer: 2560x2160 uint16 frames to a local file, bitshuffle LZ4 vs uncompressed.

Each set-up writes ``--frames`` messages (the image plus two scalars, as a camera sends them)
through ``builtin_pipelines.lib.h5writer.SwissFelFile`` into a fresh file under ``--dir`` (``/tmp``)
and closes it; the time runs from the first ``write`` to the end of ``close`` (every chunk
written, datasets trimmed, the file flushed to the OS). ``+fsync`` adds ``os.fsync`` of the
file: the figure with the disk in it. The frames are a Gaussian beam on a background with
Poisson noise, four distinct ones generated once and read-only (as the runner hands them).

Set-ups, alternating in rounds (the file of each round deleted after it, ``os.sync`` before):

- ``bslz4 tN``: the writer's path: bitshuffle LZ4 in N compression threads (one core each:
  bitshuffle's own OpenMP is held to one thread in them), chunks written directly;
- ``none``: the same writer, images uncompressed (raw chunks written directly): the baseline;
- ``h5 filter``: HDF5's own filter pipeline through hdf5plugin (``dataset[i] = frame`` on a
  dataset made with ``hdf5plugin.Bitshuffle``), the way most writers compress: a second
  baseline, skipped when hdf5plugin (a test extra) is not installed.

MB/s counts uncompressed bytes. Target: at least 150 frames/s compressed on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _harness import ROOT, check_clean

sys.path.insert(0, str(ROOT))

from builtin_pipelines.lib.h5writer import SwissFelFile

WIDTH, HEIGHT = 2560, 2160
TARGET_FPS = 150.0
FRAME_MB = WIDTH * HEIGHT * 2 / 1e6


def frames(count: int) -> list[np.ndarray]:
    """A Gaussian beam on a background with Poisson noise, seeded, read-only."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    mean = 30.0 + 1500.0 * np.exp(
        -((xx - 1317.0) ** 2 / (2 * 180.0**2) + (yy - 1027.0) ** 2 / (2 * 130.0**2))
    )
    rng = np.random.default_rng(7)
    ring = []
    for _ in range(count):
        image = rng.poisson(mean).astype(np.uint16)
        image.flags.writeable = False
        ring.append(image)
    return ring


def ours(compression: str, threads: int) -> Callable[[Path, list[np.ndarray], int], int]:
    """Write with SwissFelFile; returns the bytes of the file."""

    def write(path: Path, ring: list[np.ndarray], count: int) -> int:
        f = SwissFelFile(path, compression=compression, threads=threads)  # type: ignore[arg-type]
        for i in range(count):
            f.write(i, {"image": ring[i % len(ring)], "x": float(i), "width": np.int64(WIDTH)})
        f.close()
        return path.stat().st_size

    return write


def hdf5_filter(path: Path, ring: list[np.ndarray], count: int) -> int:
    """HDF5's filter pipeline: h5py hands each frame to the bitshuffle filter of hdf5plugin."""
    import h5py
    import hdf5plugin

    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        dataset = f.create_dataset(
            "data/image/data",
            shape=(count, HEIGHT, WIDTH),
            dtype="<u2",
            chunks=(1, HEIGHT, WIDTH),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )
        for i in range(count):
            dataset[i] = ring[i % len(ring)]
    return path.stat().st_size


def timed(write, folder: Path, ring: list[np.ndarray], count: int) -> tuple[float, float, int]:
    """(seconds to write and close, seconds including fsync, bytes); the file is deleted."""
    path = folder / "bench.h5"
    os.sync()  # start each round with no dirty pages of earlier ones being written back
    start = time.perf_counter()
    size = write(path, ring, count)
    closed = time.perf_counter() - start
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    synced = time.perf_counter() - start
    path.unlink()
    return closed, synced, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60, help="frames per round and set-up")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", default="/tmp", help="where the files are written")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.frames = 2, 10
    setups: dict[str, Callable] = {f"bslz4 t{n}": ours("bitshuffle_lz4", n) for n in args.threads}
    setups["none"] = ours("none", 1)
    try:
        import hdf5plugin  # noqa: F401

        setups["h5 filter"] = hdf5_filter
    except ImportError:
        print("hdf5plugin not installed: no 'h5 filter' baseline")
    ring = frames(4)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in setups}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-h5-", dir=args.dir) as folder:
        for write in setups.values():  # warm-up: imports, thread pools, page cache
            timed(write, Path(folder), ring, 2)
        for _ in range(args.rounds):
            for name, write in setups.items():
                results[name].append(timed(write, Path(folder), ring, args.frames))

    def fps(name: str, index: int = 0) -> float:
        return args.frames / statistics.median(r[index] for r in results[name])

    sizes = {name: statistics.median(r[2] for r in results[name]) for name in results}
    raw_size = sizes["none"]
    print(
        f"{args.frames} frames {WIDTH}x{HEIGHT} uint16 ({FRAME_MB:.1f} MB) per round, "
        f"{args.rounds} rounds, files in {args.dir}, {os.cpu_count()} cores, "
        f"load average {load:.2f} at start"
    )
    print(f"{'set-up':<12}{'frames/s':>10}{'MB/s':>8}{'+fsync f/s':>12}{'ratio':>8}   rounds (f/s)")
    for name in results:
        rounds = " ".join(f"{args.frames / r[0]:.0f}" for r in results[name])
        print(
            f"{name:<12}{fps(name):>10.1f}{fps(name) * FRAME_MB:>8.0f}{fps(name, 1):>12.1f}"
            f"{raw_size / sizes[name]:>8.2f}   {rounds}"
        )
    best = max((n for n in results if n.startswith("bslz4")), key=fps)
    compressed, uncompressed = fps(best), fps("none")
    ratio = compressed / uncompressed
    filter_fps = fps("h5 filter") if "h5 filter" in results else float("nan")
    print(f"best compressed: {best}; vs uncompressed: {ratio:.2f}x; vs HDF5's filter: "
          f"{compressed / filter_fps:.2f}x (target >= {TARGET_FPS:g} frames/s)")  # fmt: skip
    print(f"cleanup: {check_clean()}")
    print(
        f"RESULT compressed_fps={compressed:.1f} compressed_mb_s={compressed * FRAME_MB:.0f} "
        f"uncompressed_fps={uncompressed:.1f} ratio={ratio:.2f} filter_fps={filter_fps:.1f} "
        f"compression_ratio={raw_size / sizes[best]:.2f} "
        f"compressed_fsync_fps={fps(best, 1):.1f} uncompressed_fsync_fps={fps('none', 1):.1f} "
        f"setup={best.replace(' ', '_')} target=compressed_fps>={TARGET_FPS:g} "
        f"met={'yes' if compressed >= TARGET_FPS else 'no'}"
    )


if __name__ == "__main__":
    main()
