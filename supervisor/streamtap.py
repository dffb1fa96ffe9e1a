"""Reading an instance's output stream from inside the supervisor: backgrounds and previews.

Blocking code, run in a worker thread: the event loop keeps serving while frames arrive.
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from .contract import SocketMode
from .contract.bsread import DecodeError, Decoder
from .nodeapi.errors import ConflictError

__all__ = ["average_images", "latest_image"]

_POLL_MS = 100


def average_images(
    context: zmq.Context[zmq.Socket[bytes]],
    url: str,
    mode: SocketMode,
    n_images: int,
    timeout: float,
    channel: str = "image",
) -> tuple[np.ndarray, int]:
    """The mean of the next ``n_images`` images of the stream at ``url``, and the first pulse id.

    Sums in 64 bits (no overflow) and divides at the end: integer images are truncated to their
    own dtype (CamServer's rule for uint16 cameras), float images keep float64. Only one running
    sum is held, so a hundred 5-Mpx frames cost one frame of memory.

    Raises:
        ConflictError: no image within ``timeout`` seconds, or the image shape changed.
    """
    socket = context.socket(zmq.SUB if mode == SocketMode.SUB else zmq.PULL)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 4)
    if mode == SocketMode.SUB:
        socket.setsockopt(zmq.SUBSCRIBE, b"")
    decoder = Decoder()
    total: np.ndarray | None = None
    kind = ""
    first_pulse = -1
    count = malformed = 0
    deadline = time.monotonic() + timeout
    try:
        socket.connect(url)
        while count < n_images:
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"only {count} of {n_images} images arrived from {url} in {timeout:g} s"
                    + (f" ({malformed} malformed messages)" if malformed else "")
                )
            if not socket.poll(_POLL_MS):
                continue
            try:
                message = decoder.decode(socket.recv_multipart(copy=False))
            except DecodeError:
                malformed += 1
                continue
            if message is None:
                continue
            image = message.data.get(channel)
            if not isinstance(image, np.ndarray) or image.ndim != 2:
                continue
            if total is None:
                kind = image.dtype.kind
                total = np.zeros(image.shape, np.float64 if kind == "f" else np.int64)
                first_pulse = message.pulse_id
                dtype = image.dtype
            elif image.shape != total.shape:
                raise ConflictError(
                    f"the image shape changed from {list(total.shape)} to {list(image.shape)} "
                    "while collecting; collect again"
                )
            np.add(total, image, out=total, casting="unsafe")
            count += 1
    finally:
        socket.close()
    assert total is not None
    if kind == "f":
        return total / count, first_pulse
    return (total // count).astype(dtype), first_pulse


def latest_image(
    context: zmq.Context[zmq.Socket[bytes]],
    url: str,
    timeout: float,
    channel: str = "image",
) -> tuple[np.ndarray, int]:
    """The next 2-D ``channel`` image published at ``url`` (a PUB stream), and its pulse id.

    Subscribes, takes the first message with such an image, and unsubscribes: the publisher
    sends this reader a frame or two (its queue is capped by a receive HWM of 1), not the
    stream. Messages that do not decode are skipped and counted, as are messages without the
    image.

    Raises:
        ConflictError: no such image within ``timeout`` seconds.
    """
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 1)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    decoder = Decoder()
    received = malformed = 0
    channels: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        socket.connect(url)
        while time.monotonic() < deadline:
            if not socket.poll(_POLL_MS):
                continue
            try:
                message = decoder.decode(socket.recv_multipart(copy=False))
            except DecodeError:
                malformed += 1
                continue
            if message is None:
                continue
            received += 1
            image = message.data.get(channel)
            if (
                isinstance(image, np.ndarray)
                and image.ndim == 2
                and image.size > 0
                and image.dtype.kind in "biuf"
            ):
                return image, message.pulse_id
            channels = list(message.data)
    finally:
        socket.close()
    if received:
        seen = ", ".join(repr(c) for c in channels) or "none"
        problem = (
            f"none of the {received} messages from {url} in {timeout:g} s had a 2-D image in "
            f"channel {channel!r} (the last one's channels: {seen})"
        )
    else:
        problem = f"no message arrived from {url} in {timeout:g} s"
    raise ConflictError(problem + (f" ({malformed} malformed messages)" if malformed else ""))
