"""Shared memory between the runner and its worker processes: one slot per message in flight.

A slot is an anonymous shared file (``memfd_create``) mapped by the runner and by the worker
that processes the slot's message. The runner copies the message's big arrays into it (one
memcpy each); the worker builds its arrays on the same memory, and writes the big arrays of
its result after them, where the runner picks them up. Small values travel pickled with the
task. Slots are reused from message to message and only grow (a bigger frame), so pages are
faulted in once.

The memory has no name: nothing appears in ``/dev/shm``, and the kernel frees it when the last
process holding it is gone, even after SIGKILL. A worker gets a slot's file descriptor once
(``SCM_RIGHTS`` on its socket) and keeps the mapping until the slot grows.
"""

from __future__ import annotations

import math
import mmap
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy < 2
    # Checked against numpy 2, whose stubs have no numpy.byte_bounds (and the name is bound above).
    from numpy import byte_bounds  # type: ignore[attr-defined,no-redef]

__all__ = [
    "SHARED_MIN",
    "InSlot",
    "SlotMapping",
    "SlotMemory",
    "Slots",
    "input_nbytes",
    "pack_input",
    "pack_result",
    "unpack_input",
    "unpack_result",
]

SHARED_MIN = 1 << 16
"""Arrays of at least this many bytes go through shared memory; smaller ones are pickled."""

_ALIGN = 64
_MIN_CAPACITY = 4 << 20  # sparse until written: an unused result area costs nothing


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _shared(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray) and value.nbytes >= SHARED_MIN and not value.dtype.hasobject
    )


@dataclass(frozen=True, slots=True)
class InSlot:
    """Stands in, pickled, for an array that lies in the slot at ``offset``."""

    offset: int  # of the first element, from the start of the slot
    shape: tuple[int, ...]
    dtype: np.dtype
    strides: tuple[int, ...] | None = None  # None: C-contiguous
    readonly: bool = False
    span: tuple[int, int] = (0, 0)  # the bytes it touches, [start, end) from the slot's start


class SlotMapping:
    """One process's mapping of a slot: typed views on its bytes."""

    __slots__ = ("_ro", "address", "capacity", "mm", "version")

    def __init__(self, fd: int, capacity: int, version: int) -> None:
        self.mm = mmap.mmap(fd, capacity)
        self.capacity = capacity
        self.version = version
        self._ro = memoryview(self.mm).toreadonly()
        self.address = np.frombuffer(self._ro, np.uint8, count=1).ctypes.data

    def array(self, item: InSlot, *, writable: bool) -> np.ndarray:
        """The array ``item`` describes, on this mapping (read-only unless ``writable``).

        A read-only one cannot be made writable (its base is a read-only buffer).
        """
        if item.strides is not None:  # a result's view: the runner only copies it out
            return np.ndarray(
                item.shape, item.dtype, buffer=self.mm, offset=item.offset, strides=item.strides
            )
        count = math.prod(item.shape)
        flat = np.frombuffer(
            self.mm if writable else self._ro, item.dtype, count=count, offset=item.offset
        )
        return flat.reshape(item.shape)


class SlotMemory:
    """The runner's side of one slot: its file descriptor (for workers) and its mapping."""

    __slots__ = ("fd", "index", "mapping")

    def __init__(self, index: int) -> None:
        self.index = index
        self.fd = -1
        self.mapping: SlotMapping | None = None

    def ensure(self, nbytes: int) -> SlotMapping:
        """A mapping with room for ``nbytes`` of input and as much again of results."""
        need = max(_MIN_CAPACITY, 2 * nbytes)
        mapping = self.mapping
        if mapping is not None and mapping.capacity >= need:
            return mapping
        capacity = (need + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        fd = _anonymous_file(capacity)
        self.close()
        self.fd = fd
        version = 0 if mapping is None else mapping.version + 1
        self.mapping = SlotMapping(fd, capacity, version)
        return self.mapping

    def close(self) -> None:
        """Close the descriptor; the mapping goes when nothing refers to it any more."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.mapping = None


def _anonymous_file(size: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pipevisor-slot", os.MFD_CLOEXEC)
    else:  # not Linux: an unlinked temporary file, shared all the same
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


class Slots:
    """A fixed set of slots, one per message that may be in flight."""

    def __init__(self, count: int) -> None:
        self._slots = [SlotMemory(i) for i in range(count)]
        self._free = list(reversed(self._slots))

    def acquire(self) -> SlotMemory:
        """A free slot. Raises IndexError when all are taken (the caller bounds the flight)."""
        return self._free.pop()

    def release(self, slot: SlotMemory) -> None:
        """Give a slot back once its message's result (or failure) is in."""
        self._free.append(slot)

    def close(self) -> None:
        """Close every slot's descriptor."""
        for slot in self._slots:
            slot.close()
        self._free = []


def input_nbytes(data: Mapping[str, Any]) -> int:
    """The room the shared arrays of ``data`` take in a slot."""
    return sum(_align(value.nbytes) for value in data.values() if _shared(value))


def pack_input(slot: SlotMemory, data: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Copy the big arrays of ``data`` into ``slot``; returns what to pickle and the bytes used.

    A read-only array (a view of a received ZMQ frame) stays read-only in the worker, so a
    result that is a view of it can be sent from the original memory (:func:`unpack_result`).
    """
    mapping = slot.ensure(input_nbytes(data))
    packed: dict[str, Any] = {}
    offset = 0
    for key, value in data.items():
        if not _shared(value):
            packed[key] = value
            continue
        item = InSlot(
            offset,
            value.shape,
            value.dtype,
            readonly=not value.flags.writeable,
            span=(offset, offset + value.nbytes),
        )
        np.copyto(mapping.array(item, writable=True), value, casting="no")
        packed[key] = item
        offset = _align(offset + value.nbytes)
    return packed, offset


def unpack_input(mapping: SlotMapping, packed: Mapping[str, Any]) -> dict[str, Any]:
    """The worker's message data: arrays on the slot's memory, read-only where they were."""
    return {
        key: mapping.array(value, writable=not value.readonly)
        if isinstance(value, InSlot)
        else value
        for key, value in packed.items()
    }


def pack_result(mapping: SlotMapping, result: Any, used: int) -> Any:
    """Replace the big arrays of a result dict by slot references, for pickling.

    An array already in the slot (a view of the input) is referenced where it is; another one
    is copied after the input, if it fits; else it is pickled with the rest.
    """
    if not isinstance(result, dict) or not any(_shared(v) for v in result.values()):
        return result
    packed = {}
    free = _align(used)
    for key, value in result.items():
        if not _shared(value):
            packed[key] = value
            continue
        low, high = byte_bounds(value)
        start = low - mapping.address
        if start >= 0 and high - mapping.address <= mapping.capacity and min(value.strides) >= 0:
            first = value.__array_interface__["data"][0] - mapping.address
            packed[key] = InSlot(
                first, value.shape, value.dtype, value.strides, span=(start, high - mapping.address)
            )
        elif free + value.nbytes <= mapping.capacity:
            item = InSlot(free, value.shape, value.dtype, span=(free, free + value.nbytes))
            np.copyto(mapping.array(item, writable=True), value)
            packed[key] = item
            free = _align(free + value.nbytes)
        else:
            packed[key] = value
    return packed


def unpack_result(
    mapping: SlotMapping, result: Any, packed_input: Mapping[str, Any], data: Mapping[str, Any]
) -> Any:
    """The runner's copy of a worker's result; the slot may be reused afterwards.

    A view of a read-only input is rebuilt on the original array (the received frame, so it
    goes out without a copy); any other array in the slot is copied out of it.
    """
    if not isinstance(result, dict):
        return result
    out = {}
    for key, value in result.items():
        if isinstance(value, InSlot):
            original = _on_original(value, packed_input, data)
            value = np.array(mapping.array(value, writable=False)) if original is None else original
        out[key] = value
    return out


def _on_original(
    item: InSlot, packed_input: Mapping[str, Any], data: Mapping[str, Any]
) -> np.ndarray | None:
    for key, source in packed_input.items():
        if not (isinstance(source, InSlot) and source.readonly):
            continue
        if source.span[0] <= item.span[0] and item.span[1] <= source.span[1]:
            original = data[key]
            if not original.flags.c_contiguous:
                return None
            return np.ndarray(
                item.shape,
                item.dtype,
                buffer=original,
                offset=item.offset - source.offset,
                strides=item.strides,
            )
    return None
