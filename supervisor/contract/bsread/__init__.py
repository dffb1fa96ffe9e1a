"""bsread 1.1 codec for the DATA and OUTPUT streams (see /shared/reference/bsread.md).

    Decoder().decode(frames) -> Message | None   # None: a non-data message (bsr_stop...) to skip
    Encoder(compression, header_compression).encode(data, pulse_id, timestamp, channels) -> frames

Shapes are in numpy order everywhere in this API; only the wire reverses them. Every malformed
message raises `DecodeError`. Imports only the stdlib, numpy, pyzmq and bitshuffle (plus lz4 when
installed, to receive plain-lz4 values).
"""

from .decoder import Decoder
from .encoder import Encoder
from .errors import DecodeError
from .message import Channel, Message
from .types import BSREAD_TYPES

__all__ = ["BSREAD_TYPES", "Channel", "DecodeError", "Decoder", "Encoder", "Message"]
