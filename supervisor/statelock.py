"""One supervisor per folder: an exclusive lock held while the node runs.

A node locks its state folder (``supervisor.lock``) and its registry (``.pipevisor.lock``,
hidden, so never an entry): two supervisors on one registry would both start its permanent
entries, whatever their state folders.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .nodeapi.errors import ConflictError

__all__ = ["REGISTRY_LOCK", "STATE_LOCK", "StateLock"]

STATE_LOCK = "supervisor.lock"
REGISTRY_LOCK = ".pipevisor.lock"


class StateLock:
    """``filename`` in ``folder``, locked with flock and naming the holder's pid.

    Args:
        what: How the refusal names the folder ("the registry ").
    """

    def __init__(self, folder: Path, filename: str = STATE_LOCK, what: str = "") -> None:
        self.folder = folder
        self.filename = filename
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock. Raises ``ConflictError`` naming the pid that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.filename, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConflictError(
                f"another supervisor (pid {holder}) is using {self.what}{self.folder}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
