"""A private network namespace for the calling thread: only ``lo``, so no packet leaves it.

libca registers with the CA repeater through the host's own interface address after about
10 s; tests whose CA clients live longer run in here. Namespaces are per thread: what the
calling thread starts while inside (subprocesses, the threads of libca or of a new ZMQ context)
inherits the namespace and keeps it; sockets stay in the namespace they were created in. Needs
root (CAP_SYS_ADMIN): see :func:`unavailable_reason`.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["private_network_namespace", "unavailable_reason"]

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_THREAD_NET = "/proc/thread-self/ns/net"


def unavailable_reason() -> str | None:
    """Why this process cannot make a network namespace, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "a private network namespace needs root (CAP_SYS_ADMIN)"
    if not os.path.exists(_THREAD_NET):
        return f"{_THREAD_NET} is missing"
    return None


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


@contextmanager
def private_network_namespace() -> Iterator[None]:
    """Run the block in a new network namespace with only ``lo`` up; come back after.

    Raises:
        OSError: ``unshare`` or ``setns`` failed (not root?).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    saved = os.open(_THREAD_NET, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            _loopback_up()
            interfaces = [name for _, name in socket.if_nameindex()]
            if interfaces != ["lo"]:
                raise RuntimeError(f"the new namespace has interfaces {interfaces}")
            yield
        finally:
            _check(libc.setns(saved, _CLONE_NEWNET), "setns back to the original namespace")
    finally:
        os.close(saved)
