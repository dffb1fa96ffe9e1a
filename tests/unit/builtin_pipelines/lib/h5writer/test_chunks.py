"""Image chunks: bitshuffle LZ4 exactly as the HDF5 filter stores it, from a thread pool."""

from __future__ import annotations

import ctypes
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest

from builtin_pipelines.lib.h5writer.chunks import (
    BSHUF_FILTER_ID,
    ChunkCompressor,
    _openmp_setters,
    compress_chunk,
    filter_options,
)
from supervisor.contract.bsread.compression import bitshuffle_compress, bitshuffle_decompress

ROOT = Path(__file__).resolve().parents[5]


def frame(shape=(37, 53), dtype="<u2", seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(0, min(info.max, 4000), size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", ["<u1", "<u2", "<i4", "<u8", "<f4", "<f8"])
def test_a_chunk_is_bsreads_bitshuffle_frame_byte_for_byte(dtype):
    """The same 12-byte header and stream as bsread's bitshuffle_lz4 value frames."""
    image = frame(dtype=dtype)
    chunk = compress_chunk(image)
    assert chunk.tobytes() == bitshuffle_compress(image)
    size, block_bytes = struct.unpack(">QI", chunk[:12].tobytes())
    assert (size, block_bytes) == (image.nbytes, 8192)
    np.testing.assert_array_equal(
        bitshuffle_decompress(chunk.tobytes(), image.dtype).reshape(image.shape), image
    )


@pytest.mark.parametrize("dtype", ["<u1", "<u2", "<i2", "<u4", "<f4", "<f8"])
def test_direct_chunks_read_back_through_the_hdf5_filter(tmp_path, dtype):
    """h5py with hdf5plugin's bitshuffle filter decodes the chunks written directly."""
    images = [frame(dtype=dtype, seed=seed) for seed in range(3)]
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        fid, opts = filter_options(np.dtype(dtype).itemsize)
        dataset = f.create_dataset(
            "d", shape=(3, 37, 53), dtype=dtype, chunks=(1, 37, 53), compression=fid,
            compression_opts=opts,
        )  # fmt: skip
        for row, image in enumerate(images):
            dataset.id.write_direct_chunk((row, 0, 0), compress_chunk(image))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["d"][()], np.stack(images))


def test_a_writer_without_the_filter_stores_the_five_standard_cd_values(tmp_path):
    """Without hdf5plugin in the writing process, the dataset still names its element size."""
    path = tmp_path / "noplugin.h5"
    script = f"""
import sys, h5py, numpy as np
sys.path.insert(0, {str(ROOT)!r})
from builtin_pipelines.lib.h5writer.chunks import compress_chunk, filter_options
assert not h5py.h5z.filter_avail({BSHUF_FILTER_ID}), "the filter must be unknown here"
with h5py.File({str(path)!r}, "w") as f:
    fid, opts = filter_options(2)
    d = f.create_dataset("d", shape=(1, 20, 30), dtype="<u2", chunks=(1, 20, 30),
                         compression=fid, compression_opts=opts, allow_unknown_filter=True)
    d.id.write_direct_chunk((0, 0, 0), compress_chunk(np.arange(600, dtype="<u2").reshape(20, 30)))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with h5py.File(path, "r") as f:
        fid, _, values, _ = f["d"].id.get_create_plist().get_filter(0)
        assert fid == BSHUF_FILTER_ID
        assert values[2:] == (2, 0, 2)  # element size, default block, LZ4
        np.testing.assert_array_equal(f["d"][0], np.arange(600).reshape(20, 30))


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_chunks_come_back_in_submission_order(threads):
    """Whatever thread finishes first, chunks come back in the order frames went in."""
    compressor = ChunkCompressor(threads)
    images = [frame(seed=seed) for seed in range(12)]
    got = []
    for index, image in enumerate(images):
        compressor.submit(index, image)
        got.extend(compressor.ready())
        assert len(compressor) <= compressor.max_pending
    got.extend(compressor.ready(wait=True))
    compressor.close()
    assert [tag for tag, _ in got] == list(range(12))
    for (index, chunk), image in zip(got, images, strict=True):
        assert chunk.tobytes() == bitshuffle_compress(image), index


def test_frames_beyond_the_bound_make_the_caller_wait():
    """With max_pending frames queued, ready() waits for the oldest instead of growing."""
    compressor = ChunkCompressor(1, max_pending=1)
    gate = threading.Event()
    compressor._pool.submit(gate.wait)  # the only thread is busy until the gate opens
    compressor.submit("a", frame())
    assert list(compressor.ready()) == []  # one pending: within the bound
    compressor.submit("b", frame())
    threading.Timer(0.05, gate.set).start()
    start = time.monotonic()
    first = [tag for tag, _ in compressor.ready()]
    waited = time.monotonic() - start
    assert first[:1] == ["a"]
    assert waited >= 0.04  # it blocked until the pool could compress "a"
    assert first + [tag for tag, _ in compressor.ready(wait=True)] == ["a", "b"]
    compressor.close()


def test_negative_threads_are_refused():
    """threads counts compression threads: 0 or more."""
    with pytest.raises(ValueError, match="threads"):
        ChunkCompressor(-1)


def test_pool_threads_run_bitshuffle_in_an_openmp_team_of_one():
    """bitshuffle's OpenMP would oversubscribe the pool's cores: each pool thread gets one."""
    if not _openmp_setters():
        pytest.skip("this bitshuffle is built without OpenMP: nothing to limit")
    with open("/proc/self/maps") as maps:
        path = next(line.split()[-1] for line in maps if "libgomp" in line)
    max_threads = ctypes.CDLL(path).omp_get_max_threads
    compressor = ChunkCompressor(2)
    try:
        assert compressor._pool.submit(max_threads).result() == 1
    finally:
        compressor.close()
