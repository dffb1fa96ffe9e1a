"""The link between the runner and one worker process: a Unix socket pair.

Messages are tuples, pickled and framed by their length; a slot's file descriptor follows its
``slot`` message as ``SCM_RIGHTS``. Reads take exactly one frame, so they never swallow the
byte a descriptor rides on. An error raised in a worker travels as its pickled exception (or
its type's name and message when it does not pickle) with the worker's formatted traceback,
and is rebuilt in the runner with that traceback as its cause, so the log shows where in the
user's code it happened (what ``multiprocessing.pool`` does).
"""

from __future__ import annotations

import pickle
import socket
import struct
import traceback
from typing import Any

__all__ = [
    "RemoteTraceback",
    "describe_error",
    "frame",
    "rebuild_error",
    "recv_fd",
    "recv_message",
    "send_fd",
    "send_frame",
    "socket_pair",
]

_HEADER = struct.Struct("!Q")
_BUFFER = 4 << 20  # socket buffers: a few tasks queue without blocking the runner


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of Unix stream sockets with roomy buffers (the runner's end first)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    return ours, theirs


def frame(payload: bytes) -> bytes:
    """One pickled message (``pickle.dumps`` output) framed for the link."""
    return _HEADER.pack(len(payload)) + payload


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one pickled message as a frame, blocking until it is all sent.

    Raises:
        OSError: the peer is gone (BrokenPipeError, ConnectionResetError).
    """
    sock.sendall(frame(payload))


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        got = sock.recv_into(view)
        if got == 0:
            raise EOFError("the peer closed the link")
        view = view[got:]
    return buffer


def recv_message(sock: socket.socket) -> Any:
    """Receive and unpickle one frame. Raises EOFError when the peer has gone."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    # Trusted: the peer is our own child (or parent) on a private socket pair.
    return pickle.loads(_recv_exact(sock, size))  # noqa: S301


def send_fd(sock: socket.socket, fd: int) -> None:
    """Send a file descriptor (after the message announcing it)."""
    socket.send_fds(sock, [b"F"], [fd])


def recv_fd(sock: socket.socket) -> int:
    """Receive the file descriptor announced by the message just read."""
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise EOFError("a file descriptor was announced but none came")
    return fds[0]


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, as the worker formatted it."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


def describe_error(exc: BaseException) -> tuple[Any, ...]:
    """What travels of an exception: pickled if it round-trips, its names, its traceback."""
    text = "".join(traceback.format_exception(exc))
    blob: bytes | None
    try:
        blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)  # noqa: S301 (ours) an exception with a custom __init__ may not come back
    except Exception:
        blob = None
    kind = type(exc)
    return (blob, kind.__module__, kind.__name__, str(exc), text)


_named: dict[tuple[str, str], type[Exception]] = {}


def rebuild_error(
    blob: bytes | None, module: str, name: str, message: str, text: str
) -> BaseException:
    """The worker's exception in the runner, its traceback attached as its cause."""
    exc: object = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)  # noqa: S301 (from our worker, see recv_message)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        kind = _named.get((module, name))
        if kind is None:  # same name, so last_error and the log read as in one process
            kind = _named[module, name] = type(name, (Exception,), {"__module__": module})
        exc = kind(message)
    exc.__cause__ = RemoteTraceback(text)
    return exc
