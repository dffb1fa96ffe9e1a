"""Background images: ``<id>.npy`` files in the node's background folder.

Beam-metrics pipelines subtract a background named by its id (``image_background``). Ids
collected from a camera are ``<camera>_YYYYMMDD_HHMMSS_ffffff`` as in CamServer, so a folder
kept by CamServer can be used unchanged; the latest background of a camera is found by an exact
match of that pattern (CamServer's prefix match lets camera ``cam`` pick ``cam_other_...``).
Files are numpy's ``.npy`` format, always read with ``allow_pickle=False``: an upload can carry
an array and nothing else.
"""

from __future__ import annotations

import io
import math
import os
import re
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomicfile import write_atomic
from .nodeapi.errors import (
    BackgroundNotFoundError,
    InvalidConfigError,
    InvalidNameError,
    PayloadTooLargeError,
)
from .nodeapi.models import BackgroundInfo

__all__ = ["BackgroundStore", "background_id"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_STAMP = "%Y%m%d_%H%M%S_%f"
_STAMP_RE = r"_(\d{8}_\d{6}_\d{6})"
_KINDS = "iuf"  # integer, unsigned and float arrays; never objects, strings or records


def background_id(camera: str, when: datetime | None = None) -> str:
    """The id of a background collected from ``camera`` now (or at ``when``)."""
    return f"{camera}_{(when or datetime.now()).strftime(_STAMP)}"


def _check_array(array: np.ndarray, what: str) -> None:
    if array.ndim != 2 or array.dtype.kind not in _KINDS or 0 in array.shape:
        raise InvalidConfigError(
            f"{what} must be a non-empty 2-D numeric array (height x width), "
            f"got shape {list(array.shape)} of dtype {array.dtype}"
        )


class BackgroundStore:
    """The background folder: list, read, write, delete, and the latest one of a camera."""

    def __init__(self, root: Path, max_bytes: int = 256 * 2**20) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path(self, background: str) -> Path:
        """The file of ``background``; the id is checked so no name leaves the folder.

        Raises:
            InvalidNameError: the id is not a plain name.
        """
        if not _ID.match(background) or background.endswith(".npy"):
            raise InvalidNameError(
                f"background id {background!r} is not valid: letters, digits, '_', '.', '-' "
                "(at most 128, not starting with a dot or dash, without '.npy')"
            )
        return self.root / f"{background}.npy"

    def ids(self, camera: str | None = None) -> list[str]:
        """Background ids, sorted; only ``camera``'s collected ones when it is given."""
        try:
            names = [p.name[:-4] for p in self.root.iterdir() if p.name.endswith(".npy")]
        except FileNotFoundError:
            return []
        names = [n for n in names if _ID.match(n)]
        if camera is not None:
            pattern = re.compile(re.escape(camera) + _STAMP_RE + "$")
            names = [n for n in names if pattern.match(n)]
        return sorted(names)

    def latest(self, camera: str) -> BackgroundInfo:
        """The newest background collected from ``camera``.

        Raises:
            BackgroundNotFoundError: the camera has none.
        """
        found = self.ids(camera)
        if not found:
            raise BackgroundNotFoundError(f"no background of camera '{camera}'")
        return self.info(found[-1])

    def info(self, background: str) -> BackgroundInfo:
        """What the folder holds as ``background``.

        Raises:
            BackgroundNotFoundError: no such background.
            InvalidConfigError: the file is not a numeric 2-D ``.npy`` array.
        """
        path = self.path(background)
        try:
            with open(path, "rb") as f:
                shape, dtype = _read_header(f, background)
                size = os.fstat(f.fileno()).st_size
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            raise BackgroundNotFoundError(f"no background '{background}'") from None
        match = re.search(_STAMP_RE + "$", background)
        camera, created = None, mtime
        if match:
            camera = background[: match.start()]
            created = datetime.strptime(match.group(1), _STAMP).timestamp()
        return BackgroundInfo(
            id=background,
            camera=camera,
            created=created,
            shape=list(shape),
            dtype=str(dtype),
            size=size,
        )

    def infos(self, camera: str | None = None) -> list[BackgroundInfo]:
        """Every readable background (of ``camera`` if given), sorted by id."""
        infos = []
        for background in self.ids(camera):
            try:
                infos.append(self.info(background))
            except (BackgroundNotFoundError, InvalidConfigError):
                continue  # removed meanwhile, or not an array we would use
        return infos

    def read(self, background: str) -> bytes:
        """The ``.npy`` file of ``background``.

        Raises:
            BackgroundNotFoundError: no such background.
        """
        try:
            return self.path(background).read_bytes()
        except FileNotFoundError:
            raise BackgroundNotFoundError(f"no background '{background}'") from None

    def load(self, background: str) -> np.ndarray:
        """The array of ``background`` (never unpickled)."""
        return _load(self.read(background), background)

    def write(self, background: str, data: bytes) -> BackgroundInfo:
        """Store an uploaded ``.npy`` file as ``background`` (replacing one of that id).

        Raises:
            InvalidNameError: the id is not a plain name.
            PayloadTooLargeError: the file is larger than ``max_bytes``.
            InvalidConfigError: the data is not a numeric 2-D ``.npy`` array (pickles included).
        """
        path = self.path(background)
        if len(data) > self.max_bytes:
            raise PayloadTooLargeError(
                f"background '{background}' is {len(data)} bytes, "
                f"more than the limit of {self.max_bytes}"
            )
        _load(data, background)
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return self.info(background)

    def save(self, background: str, array: np.ndarray) -> BackgroundInfo:
        """Store ``array`` as ``background``."""
        _check_array(array, f"background '{background}'")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        return self.write(background, buffer.getvalue())

    def delete(self, background: str) -> None:
        """Remove ``background``.

        Raises:
            BackgroundNotFoundError: no such background.
        """
        try:
            self.path(background).unlink()
        except FileNotFoundError:
            raise BackgroundNotFoundError(f"no background '{background}'") from None


def _load(data: bytes, background: str) -> np.ndarray:
    # The header says how much to allocate: check it against the data there is first, so a
    # 100 kB file claiming 100000 x 100000 float64 is refused, not a 75 GiB allocation.
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, OSError):
        pass  # np.load below says what is wrong
    else:
        claimed = math.prod(shape) * dtype.itemsize
        present = len(data) - stream.tell()
        if not dtype.hasobject and claimed > present:
            raise InvalidConfigError(
                f"background '{background}': its header claims shape {list(shape)} of "
                f"{dtype}, {claimed} bytes, but the file holds {present} bytes of data"
            )
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        # numpy refuses object arrays (pickles) with ValueError; garbage fails its magic check.
        raise InvalidConfigError(
            f"background '{background}' is not a numpy .npy array without pickles: {exc}"
        ) from None
    if not isinstance(array, np.ndarray):
        raise InvalidConfigError(f"background '{background}' is not a .npy array (an .npz?)")
    _check_array(array, f"background '{background}'")
    return array


def _read_header(f: BinaryIO, background: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the ``.npy`` header, without reading the data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError) as exc:
        raise InvalidConfigError(f"background '{background}' is not a .npy file: {exc}") from None
    if len(shape) != 2 or dtype.kind not in _KINDS:
        raise InvalidConfigError(
            f"background '{background}' is not a 2-D numeric array: {list(shape)} {dtype}"
        )
    return shape, dtype
