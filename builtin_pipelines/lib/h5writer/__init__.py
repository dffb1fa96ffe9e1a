"""h5writer: bsread messages into HDF5 files in SwissFEL's layout, the writer core.

    with SwissFelFile("run_0001.h5", {"user": "p12345"}) as f:
        f.write(pulse_id, {"CAM:FPICTURE": image, "BPM:X": 0.13, "CAM:NAME": None})
    # or: summary = f.close(missing_step=1)

The layout is sf_bsread_writer's (:mod:`.layout`); images are compressed with bitshuffle LZ4
in a thread pool and written as finished chunks of the HDF5 filter 32008 (:mod:`.chunks`),
which h5py reads with ``import hdf5plugin``; the file is crash-safe from its first flush
(SWMR, :mod:`.file`). This package knows nothing of ZMQ or the runner: the ``h5_writer``
builtin pipeline runs it on a stream, and :mod:`.live` (imported on its own, it needs pyzmq)
forwards the written frames to viewers made for MAX IV's streaming-receiver.
"""

from .chunks import compress_chunk, filter_options
from .file import COMPRESSIONS, SwissFelFile
from .layout import GENERAL_KEYS, Definition, definition_of
from .reports import WriteProgress, WriteSummary, WrittenFrame

__all__ = [
    "COMPRESSIONS",
    "GENERAL_KEYS",
    "Definition",
    "SwissFelFile",
    "WriteProgress",
    "WriteSummary",
    "WrittenFrame",
    "compress_chunk",
    "definition_of",
    "filter_options",
]
