"""Background images: ``<id>.npy`` files in the node's background folder, loaded safely and cached.

The supervisor names the folder in ``PIPEVISOR_BACKGROUNDS``. A file is read with
``np.load(allow_pickle=False)`` (CamServer unpickled whatever it was given, §18), must hold a
numeric 2-D array, and is cast to uint16 as CamServer does. The last file read is cached by
(id, mtime, size): a background replaced on disk is picked up by the next frame, and an
unchanged one costs one ``stat`` per frame.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from supervisor.contract import EnvVar

__all__ = ["BackgroundError", "BackgroundStore", "check_id"]

_UINT16_MAX = 0xFFFF


class BackgroundError(ValueError):
    """A background cannot be used; the message names the id and says why."""


def check_id(background_id: object) -> str:
    """Return ``background_id`` if it names one file of the folder, else raise ValueError.

    An id is a file name without its ``.npy``: one path component, so no id reaches outside
    the background folder.
    """
    if (
        not isinstance(background_id, str)
        or background_id in ("", ".", "..")
        or "/" in background_id
        or "\\" in background_id
        or "\0" in background_id
    ):
        raise ValueError(
            f"a background id is a file name without '.npy' (no '/'), got {background_id!r}"
        )
    return background_id


def _invalid(background_id: str, why: str) -> BackgroundError:
    return BackgroundError(f"Invalid background image file: {background_id}: {why}")


def _read(path: Path, background_id: str) -> np.ndarray:
    """Read one ``.npy`` file into a read-only uint16 array, or raise BackgroundError."""
    try:
        loaded: object = np.load(path, allow_pickle=False)
    except ValueError as exc:  # an object array: numpy refuses to unpickle it
        raise _invalid(background_id, f"not a numeric 2-D array ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise _invalid(background_id, f"cannot be read ({exc})") from exc
    if not isinstance(loaded, np.ndarray):  # an .npz archive under a .npy name
        if hasattr(loaded, "close"):
            loaded.close()
        raise _invalid(background_id, "not a numeric 2-D array (an .npz archive)")
    data = loaded
    if data.ndim != 2 or data.dtype.kind not in "biuf":
        raise _invalid(
            background_id,
            f"not a numeric 2-D array (shape {data.shape}, dtype {data.dtype})",
        )
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise _invalid(background_id, "not a numeric 2-D array (it holds NaN or infinity)")
    if data.dtype != np.uint16:
        # CamServer casts with astype("uint16"); clipping first keeps negative or too large
        # values from wrapping around (the cast alone gives 65535 for -1).
        if data.dtype.kind != "b":
            data = np.clip(data, 0, _UINT16_MAX)
        data = data.astype(np.uint16)
    data.flags.writeable = False
    return data


class BackgroundStore:
    """Loads backgrounds from one folder and keeps the last one read.

    Args:
        folder: the background folder; None when the node has none (every load then fails
            with a message that says so).
    """

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self.folder = Path(folder) if folder else None
        # (id, mtime_ns, size) -> the array, or the error to raise again: a broken file is not
        # read again at every frame.
        self._cached: tuple[tuple[str, int, int], np.ndarray | BackgroundError] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> BackgroundStore:
        """The store of the folder in ``PIPEVISOR_BACKGROUNDS`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        return cls(env.get(EnvVar.BACKGROUNDS) or None)

    def load(self, background_id: str) -> np.ndarray:
        """The background as a read-only uint16 2-D array.

        Raises:
            BackgroundError: ``Invalid background image file: <id>: <why>``; why is a bad id,
                no folder, no such file, or not a numeric 2-D array.
        """
        try:
            check_id(background_id)
        except ValueError as exc:
            raise _invalid(str(background_id), str(exc)) from exc
        if self.folder is None:
            raise _invalid(background_id, f"no background folder ({EnvVar.BACKGROUNDS} is unset)")
        path = self.folder / f"{background_id}.npy"
        try:
            stat = path.stat()
        except OSError:
            raise _invalid(background_id, f"not found in {self.folder}") from None
        key = (background_id, stat.st_mtime_ns, stat.st_size)
        if self._cached is None or self._cached[0] != key:
            try:
                entry: np.ndarray | BackgroundError = _read(path, background_id)
            except BackgroundError as exc:
                entry = exc
            self._cached = (key, entry)
        entry = self._cached[1]
        if isinstance(entry, BackgroundError):
            raise BackgroundError(str(entry))
        return entry
