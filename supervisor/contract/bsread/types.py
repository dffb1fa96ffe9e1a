"""The bsread type table: wire type names and their numpy dtypes (bsread.md §1.12)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Literal

import numpy as np

__all__ = [
    "BSREAD_TYPES",
    "COMPRESSIONS",
    "ENCODINGS",
    "STRING",
    "dtype_for",
    "type_for_dtype",
]

STRING: Final = "string"

# Strings travel as UTF-8 bytes, so their element size is 1 (also for bitshuffle).
BSREAD_TYPES: Final = MappingProxyType(
    {
        "bool": np.dtype("?"),
        "int8": np.dtype("<i1"),
        "uint8": np.dtype("<u1"),
        "int16": np.dtype("<i2"),
        "uint16": np.dtype("<u2"),
        "int32": np.dtype("<i4"),
        "uint32": np.dtype("<u4"),
        "int64": np.dtype("<i8"),
        "uint64": np.dtype("<u8"),
        "float32": np.dtype("<f4"),
        "float64": np.dtype("<f8"),
        STRING: np.dtype("<u1"),
    }
)
"""bsread type name -> little-endian numpy dtype of one element."""

ENCODINGS: Final = ("little", "big")
COMPRESSIONS: Final = ("none", "bitshuffle_lz4", "lz4")

_BYTE_ORDER: Final[dict[str, Literal["<", ">"]]] = {"little": "<", "big": ">"}

# (kind, itemsize) -> bsread type; byte order is the encoder's business, not the type's.
_TYPE_OF_DTYPE: Final = {
    (dtype.kind, dtype.itemsize): name for name, dtype in BSREAD_TYPES.items() if name != STRING
}


def dtype_for(type_name: str, encoding: str = "little") -> np.dtype:
    """Return the numpy dtype of one element of `type_name` in the byte order `encoding`."""
    return BSREAD_TYPES[type_name].newbyteorder(_BYTE_ORDER[encoding])


def type_for_dtype(dtype: np.dtype) -> str | None:
    """Return the bsread type of a numpy dtype, or None when bsread cannot carry it."""
    return _TYPE_OF_DTYPE.get((dtype.kind, dtype.itemsize))
