"""SwissFEL's layout (sf_bsread_writer's): what a channel's values are, which datasets hold them.

One file holds one row per message. Channel ``<ch>`` gets, from the row where it first appears:

- ``/data/<ch>/pulse_id``: int64 ``(N,)``, the message's pulse id where the channel has a value,
  0 where it has none;
- ``/data/<ch>/is_data_present``: uint8 ``(N,)``, 1 or 0;
- ``/data/<ch>/data``: ``(N, 1)`` for a scalar, ``(N, L)`` for a waveform, ``(N, H, W)`` (numpy
  order) for an image, a variable-length UTF-8 str ``(N,)`` for a string; 0 (or "") where the
  channel has no value, and in every row before the dataset was created.

``/general/{created,instrument,process,user}`` are scalar byte strings. A channel whose values
change type or shape keeps its old values in ``data(1)``, ``data(2)``, ... (trimmed to the rows
they cover) and a new ``data`` starts at the current row, zero before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import h5py
import numpy as np

__all__ = [
    "GENERAL_KEYS",
    "LIBVER",
    "Definition",
    "create_data",
    "create_flags",
    "definition_of",
    "free_name",
    "general_values",
    "validate_channel_name",
    "write_general",
]

# SWMR needs the HDF5 1.10 file format; capping the format there keeps the files readable by
# HDF5 1.10 tools (Debian's h5ls) even when h5py bundles a newer library.
LIBVER: Final = ("v110", "v110")
GENERAL_KEYS: Final = ("created", "instrument", "process", "user")
NOT_GIVEN: Final = "not given"  # sf_bsread_writer's value for a missing /general entry
DATA: Final = "data"
PULSE_ID: Final = "pulse_id"
IS_DATA_PRESENT: Final = "is_data_present"
_MAX_RENAMES: Final = 1000
_STRING_DTYPE: Final = h5py.string_dtype("utf-8")
# Waveform chunks stay near this size whatever the row length (a 2048-sample float64 waveform
# gets 64 rows per chunk).
_ARRAY_CHUNK_BYTES: Final = 1 << 20
_GENERAL_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]+$")

Kind = Literal["scalar", "array", "image", "string"]


@dataclass(frozen=True, slots=True)
class Definition:
    """What one channel's values are: the dataset they go to is made from this.

    Attributes:
        kind: ``scalar`` (stored ``(N, 1)``), ``array`` (1-D, ``(N, L)``), ``image`` (2-D or
            more, one frame per chunk) or ``string`` (vlen str, ``(N,)``).
        dtype: Little-endian numpy dtype of one element; None for strings.
        shape: Shape of one row in numpy order: ``(1,)``, ``(L,)``, ``(H, W)``..., or ``()``.
    """

    kind: Kind
    dtype: np.dtype | None
    shape: tuple[int, ...]

    def describe(self) -> str:
        """E.g. ``uint16 (2160, 2560)`` or ``string``."""
        return "string" if self.dtype is None else f"{self.dtype.name} {self.shape}"


_STRING: Final = Definition("string", None, ())


def _little(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def definition_of(value: Any) -> tuple[Definition, Any] | None:
    """The definition of a value and the value to store; None when the value is missing.

    A missing value is None or an empty array (what PSI's bsread receiver returns for empty
    frames). One-element arrays are scalars, as bsread's receivers deliver them. Python ints
    are int64 and floats float64, as bsread's senders declare them.

    Raises:
        TypeError: The value is of a type bsread cannot carry (complex, object, bytes, ...).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return _STRING, value
    if isinstance(value, bool | np.bool_):
        return Definition("scalar", np.dtype(bool), (1,)), bool(value)
    if isinstance(value, int) and not isinstance(value, np.generic):
        if not -(2**63) <= value < 2**63:
            raise TypeError(f"integer {value} does not fit in int64")
        return Definition("scalar", np.dtype("<i8"), (1,)), value
    if isinstance(value, float):
        return Definition("scalar", np.dtype("<f8"), (1,)), value
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"bytes are not a bsread value (strings are str): {bytes(value)[:40]!r}")
    array = value if isinstance(value, np.ndarray | np.generic) else np.asarray(value)
    dtype = array.dtype
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise TypeError(f"{dtype} values cannot be stored (bsread carries bool, ints, floats)")
    dtype = _little(dtype)
    if array.ndim == 0:
        return Definition("scalar", dtype, (1,)), array
    if array.size == 0:
        return None
    if array.shape == (1,):
        return Definition("scalar", dtype, (1,)), array
    kind: Kind = "array" if array.ndim == 1 else "image"
    return Definition(kind, dtype, tuple(int(n) for n in array.shape)), array


def validate_channel_name(name: Any) -> str:
    """The name itself; it becomes the group ``/data/<name>``.

    Raises:
        ValueError: Not a non-empty str, or one HDF5 would read as a path (``/``, ``.``, ``..``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"channel name must be a non-empty string, got {name!r}")
    if "/" in name or name in (".", ".."):
        raise ValueError(f"channel name {name!r} cannot be an HDF5 group name (no '/', '.', '..')")
    return name


def general_values(
    general: Mapping[str, Any] | None, now: datetime | None = None
) -> dict[str, str]:
    """``/general`` entries: the four of sf_bsread_writer first, then any others given.

    ``created`` defaults to the local time now (ISO 8601), the others to "not given".

    Raises:
        ValueError: A key is not a plain name or a value not a string.
    """
    given = dict(general or {})
    for key, value in given.items():
        if not isinstance(key, str) or not _GENERAL_NAME.match(key):
            raise ValueError(f"general: {key!r} is not a name (letters, digits, '_', '.', '-')")
        if not isinstance(value, str):
            raise ValueError(f"general: {key} must be a string, got {value!r}")
    created = (now or datetime.now().astimezone()).isoformat(timespec="seconds")
    values = {key: given.pop(key, NOT_GIVEN) for key in GENERAL_KEYS}
    if values["created"] == NOT_GIVEN:
        values["created"] = created
    values.update(given)
    return values


def write_general(file: h5py.File, values: Mapping[str, str]) -> None:
    """``/general/<key>``: scalar fixed-length byte strings (UTF-8), as sf_bsread_writer's."""
    group = file.require_group("general")
    for key, value in values.items():
        group.create_dataset(key, data=np.bytes_(value.encode("utf-8")))


def create_flags(group: h5py.Group, rows: int, chunk_rows: int) -> tuple[h5py.Dataset, ...]:
    """``pulse_id`` (int64) and ``is_data_present`` (uint8), ``rows`` long and zero."""
    return tuple(
        group.create_dataset(
            name, shape=(rows,), maxshape=(None,), dtype=dtype, chunks=(chunk_rows,)
        )
        for name, dtype in ((PULSE_ID, "<i8"), (IS_DATA_PRESENT, "u1"))
    )


def create_data(
    group: h5py.Group,
    name: str,
    definition: Definition,
    rows: int,
    chunk_rows: int,
    image_filter: tuple[int, tuple[int, ...]] | None,
) -> h5py.Dataset:
    """The values' dataset, ``rows`` long and zero (rows before the channel's first value).

    Images get one frame per chunk and ``image_filter`` (id and cd_values); HDF5 never runs
    the filter here: the writer hands it chunks already compressed.
    """
    if definition.dtype is None:
        return group.create_dataset(
            name, shape=(rows,), maxshape=(None,), dtype=_STRING_DTYPE, chunks=(chunk_rows,)
        )
    row_shape = definition.shape
    if definition.kind == "image":
        chunks = (1, *row_shape)
        options: dict[str, Any] = {}
        if image_filter is not None:
            options = {
                "compression": image_filter[0],
                "compression_opts": image_filter[1],
                "allow_unknown_filter": True,  # the filter is not needed to write raw chunks
            }
    else:
        row_bytes = int(np.prod(row_shape)) * definition.dtype.itemsize
        chunks = (max(1, min(chunk_rows, _ARRAY_CHUNK_BYTES // row_bytes)), *row_shape)
        options = {}
    return group.create_dataset(
        name,
        shape=(rows, *row_shape),
        maxshape=(None, *row_shape),
        dtype=definition.dtype,
        chunks=chunks,
        **options,
    )


def free_name(group: h5py.Group) -> str:
    """The first of ``data(1)``, ``data(2)``, ... not in ``group``: where an old ``data`` goes."""
    for index in range(1, _MAX_RENAMES):
        name = f"{DATA}({index})"
        if name not in group:
            return name
    raise ValueError(f"{group.name}: {DATA} replaced {_MAX_RENAMES} times; refusing to go on")
