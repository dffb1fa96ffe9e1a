"""Hand-written bsread messages shaped like a real IOC's (defaults omitted, compressed header)."""

from __future__ import annotations

import hashlib
import json
import struct

import bitshuffle
import numpy as np

__all__ = ["IOC_PULSE_ID", "IOC_WAVEFORM", "ioc_style_message"]

IOC_PULSE_ID = 147196131823
IOC_WAVEFORM = (np.arange(2048) % 256 - 128).astype(np.int8)


def ioc_style_message(scalar: float, text: str, ns: int = 233131827) -> list[bytes]:
    """Frames of one message: Float64Scalar (no type, no shape), Int8Waveform, StringScalar.

    The data header omits every default, as IOCs and Java senders do, and is bitshuffle-lz4
    compressed with element size 1 and the 8192-byte block of PSI's senders.
    """
    header = json.dumps(
        {
            "htype": "bsr_d-1.1",
            "channels": [
                {"name": "Float64Scalar"},
                {"name": "Int8Waveform", "type": "int8", "shape": [2048]},
                {"name": "StringScalar", "type": "string"},
            ],
        },
        separators=(",", ":"),
    ).encode()
    body = bitshuffle.compress_lz4(np.frombuffer(header, np.uint8), 8192).tobytes()
    frame1 = struct.pack(">QI", len(header), 8192) + body
    main = {
        "htype": "bsr_m-1.1",
        "hash": hashlib.md5(frame1).hexdigest(),
        "pulse_id": IOC_PULSE_ID,
        "global_timestamp": {"sec": 1471961318, "ns": ns},
        "dh_compression": "bitshuffle_lz4",
    }
    stamp = struct.pack("<qq", 1471961318, ns)
    frames = [json.dumps(main, separators=(",", ":")).encode(), frame1]
    frames += [struct.pack("<d", scalar), stamp, IOC_WAVEFORM.tobytes(), stamp]
    frames += [text.encode(), stamp]
    return frames
