"""The one error type of the bsread codec."""

from __future__ import annotations

__all__ = ["DecodeError"]


class DecodeError(ValueError):
    """A received bsread message is malformed and must be dropped (and counted) whole.

    `Decoder.decode` raises nothing else: JSON errors, bad compression headers, truncated
    values and decompression failures all surface as this error, with the cause chained.

    Attributes:
        nbytes: The malformed message's size in bytes, where whoever caught the error set it
            (a source that yields the error to the Python runner, which counts it in bytes_in).
    """

    nbytes: int = 0
