"""Output ports handed to instances: fixed ones when asked, else the next free one of a range."""

from __future__ import annotations

import socket

from .nodeapi.errors import ConflictError

__all__ = ["PortAllocator"]


class PortAllocator:
    """Cycles through ``[first, last)``, skipping ports held by instances or bound by anyone."""

    def __init__(self, first: int, last: int, host: str = "127.0.0.1") -> None:
        self._first, self._last = first, last
        self._host = "0.0.0.0" if host in ("*", "0.0.0.0") else host
        self._next = first
        self._held: dict[int, str] = {}

    def _free_on_host(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((self._host, port))
            except OSError:
                return False
        return True

    def acquire(self, owner: str, port: int | None = None) -> int:
        """A port for ``owner``: ``port`` if given (ConflictError if taken), else the next free."""
        if port is not None:
            holder = self._held.get(port)
            if holder not in (None, owner):
                raise ConflictError(f"port {port} is already used by instance '{holder}'")
            self._held[port] = owner
            return port
        span = self._last - self._first
        for _ in range(span):
            candidate = self._next
            self._next = self._first + (self._next + 1 - self._first) % span
            if candidate not in self._held and self._free_on_host(candidate):
                self._held[candidate] = owner
                return candidate
        raise ConflictError(
            f"all {span} ports of {self._first}-{self._last - 1} are used: stop some instances"
        )

    def release(self, port: int | None) -> None:
        """Give ``port`` back."""
        if port is not None:
            self._held.pop(port, None)
