"""Image chunks: bitshuffle LZ4 exactly as the HDF5 filter 32008 stores it, made in a thread pool.

A chunk of the filter is a 12-byte header (uncompressed size, u64 big-endian; block size in
bytes, u32 big-endian) followed by bitshuffle's LZ4 stream, which is what
``bitshuffle.compress_lz4`` returns (bsread.md section 1.10: the same framing as bsread's). So
the writer compresses frames itself, in parallel, and hands HDF5 finished chunks
(``write_direct_chunk``): HDF5's own filter pipeline would compress them one at a time under
its global lock (about 68 frames/s of 2560x2160 uint16 against over 150 this way).

``bitshuffle.compress_lz4`` releases the GIL, so N threads compress N frames at once while
the caller writes the previous chunks and receives the next message. bitshuffle's PyPI wheel
would also spread every call over all cores with OpenMP; next to the pool's threads that
oversubscribes the cores, and OpenMP's spinning barriers then stall for whole seconds as soon
as another process takes a core (measured on a busy 2-core machine: 9 frames/s instead of
120). So each pool thread asks OpenMP for a team of one: the pool is the parallelism, and its
size is the number of cores it takes. With ``threads=0`` frames are compressed in the caller's
thread, with OpenMP's default.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, Generic, TypeVar

import bitshuffle
import h5py
import numpy as np

__all__ = [
    "BSHUF_FILTER_ID",
    "ChunkCompressor",
    "block_elements",
    "compress_chunk",
    "filter_options",
]

T = TypeVar("T")

BSHUF_FILTER_ID: Final = 32008  # bitshuffle's registered HDF5 filter
_BSHUF_LZ4: Final = 2  # cd_values[4]: BSHUF_H5_COMPRESS_LZ4
_HEADER: Final = struct.Struct(">QI")
_VERSION: Final = tuple(int(part) for part in bitshuffle.__version__.split(".")[:2])


def filter_options(itemsize: int) -> tuple[int, tuple[int, ...]]:
    """The filter id and the cd_values to create an image dataset with.

    A reader needs five: (major, minor, element size, block size (0: the default), 2: LZ4),
    which the filter's ``set_local`` makes from the last two when HDF5 has the filter (a
    process that imported hdf5plugin). Without it, h5py stores the values as given: all five,
    or the file could not be read back.
    """
    if h5py.h5z.filter_avail(BSHUF_FILTER_ID):
        return BSHUF_FILTER_ID, (0, _BSHUF_LZ4)
    return BSHUF_FILTER_ID, (*_VERSION, itemsize, 0, _BSHUF_LZ4)


def block_elements(itemsize: int) -> int:
    """bitshuffle's default block size in elements (8192 bytes for item sizes 1 to 8)."""
    return max(8192 // itemsize // 8 * 8, 128)


def compress_chunk(frame: np.ndarray) -> np.ndarray:
    """One frame as a chunk of the HDF5 bitshuffle LZ4 filter (uint8, header included).

    ``frame`` must be C-contiguous in the dataset's (little-endian) dtype.
    """
    flat = frame.reshape(-1)
    itemsize = flat.dtype.itemsize
    block = block_elements(itemsize)
    stream = bitshuffle.compress_lz4(flat, block)
    chunk = np.empty(_HEADER.size + stream.size, np.uint8)
    # chunk.data, its memoryview: for Python 3.11, numpy types no ndarray as a Buffer.
    _HEADER.pack_into(chunk.data, 0, flat.nbytes, block * itemsize)
    chunk[_HEADER.size :] = stream
    return chunk


@functools.cache
def _openmp_setters() -> tuple[Any, ...]:
    """``omp_set_num_threads`` of every OpenMP runtime loaded (bitshuffle's wheel has its own)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libgomp" in line})
    except OSError:  # not Linux: nothing to tune
        return ()
    setters = []
    for path in paths:
        try:
            setters.append(ctypes.CDLL(path).omp_set_num_threads)
        except (OSError, AttributeError):
            continue
    return tuple(setters)


def _one_openmp_thread() -> None:
    """Pool initializer: this thread's OpenMP calls run in a team of one (see the module)."""
    for setter in _openmp_setters():
        setter(1)


class ChunkCompressor(Generic[T]):
    """Compresses frames in a pool and hands the chunks back in the order they were submitted.

    Each frame comes with a tag (where it goes). With ``threads=0`` frames are compressed at
    once in the caller's thread. At most ``max_pending`` frames wait: :meth:`ready` then waits
    for the oldest, so a writer slower than its input slows its caller instead of growing.
    Frames are read after :meth:`submit` returns: the caller must not change them until their
    chunk came back.
    """

    def __init__(self, threads: int = 2, max_pending: int | None = None) -> None:
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.threads = threads
        self.max_pending = max_pending if max_pending is not None else 2 * threads
        self._pool = (
            ThreadPoolExecutor(
                threads, thread_name_prefix="h5writer-compress", initializer=_one_openmp_thread
            )
            if threads
            else None
        )
        self._pending: deque[tuple[T, Future[np.ndarray] | np.ndarray]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, tag: T, frame: np.ndarray) -> None:
        """Queue ``frame`` for compression."""
        if self._pool is None:
            self._pending.append((tag, compress_chunk(frame)))
        else:
            self._pending.append((tag, self._pool.submit(compress_chunk, frame)))

    def ready(self, *, wait: bool = False) -> Iterator[tuple[T, np.ndarray]]:
        """Pop finished chunks in submission order: all of them with ``wait``; else those done,
        and the oldest ones beyond ``max_pending`` (waiting for them)."""
        pending = self._pending
        while pending:
            tag, job = pending[0]
            if isinstance(job, Future):
                if not (wait or job.done() or len(pending) > self.max_pending):
                    return
                chunk = job.result()
            else:
                chunk = job
            pending.popleft()
            yield tag, chunk

    def close(self) -> None:
        """Drop what is pending and stop the threads."""
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
