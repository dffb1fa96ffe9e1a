"""The one error type of the bsread codec."""

from __future__ import annotations

__all__ = ["DecodeError"]


class DecodeError(ValueError):
    """A received bsread message is malformed and must be dropped (and counted) whole.

    `Decoder.decode` raises nothing else: JSON errors, bad compression headers, truncated
    values and decompression failures all surface as this error, with the cause chained.
    """
