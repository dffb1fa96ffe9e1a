"""A live viewer port in the format of MAX IV's streaming-receiver ("secondary zmq port").

Viewers and processing made for streaming-receiver (and dranspose's ``stream1`` ingester) can
attach. On a PUSH socket, JSON messages as its README describes them:

- ``{"htype": "header", "msg_number": n, "filename": "/data/run_0001.h5"}`` when a file starts;
- ``{"htype": "image", "msg_number": n, "frame": i, "shape": [h, w], "type": "uint16",
  "compression": "bslz4" | "none"}`` followed by a second frame, the blob; ``frame`` is the
  image's row in the file; we add ``"pulse_id"``, which such readers ignore;
- ``{"htype": "series_end", "msg_number": n}`` when the file is closed.

``msg_number`` counts every message of the port, across files. A ``bslz4`` blob is the chunk
as the file stores it, 12-byte header included, as an EIGER sends it and as streaming-receiver
forwards and stores it (``write_direct_chunk``): decode it with
``bitshuffle.decompress_lz4(blob[12:], shape, dtype, block)``, the block size (bytes) being the
big-endian u32 at bytes 8-11. Nothing is compressed twice. Sending never waits: a message no
viewer can take now (none connected, or their queues full) is dropped and counted, and writing
goes on at its own pace.
"""

from __future__ import annotations

import json
from typing import Any

import zmq

from .reports import WrittenFrame

__all__ = ["LivePort"]


class LivePort:
    """The PUSH socket viewers connect to, bound at construction.

    Args:
        port: TCP port to bind.
        host: Interface to bind (``127.0.0.1``: this machine only; ``*``: every interface).
        every: Send one frame in ``every`` (1: all of them).
        channel: The image channel to send; other channels' frames are ignored.
        queue: Messages ZMQ may hold per viewer (SNDHWM); beyond it frames are dropped.

    Raises:
        zmq.ZMQError: The address cannot be bound.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        every: int = 1,
        channel: str = "image",
        queue: int = 4,
    ) -> None:
        self.every = every
        self.channel = channel
        self.sent = 0
        self.dropped = 0
        self.address = f"tcp://{host}:{port}"
        self._msg_number = 0
        self._frames = 0
        self._context: zmq.Context[zmq.Socket[bytes]] | None = zmq.Context(io_threads=1)
        self._socket: zmq.Socket[bytes] | None = self._context.socket(zmq.PUSH)
        self._socket.sndhwm = queue
        self._socket.linger = 0
        try:
            self._socket.bind(self.address)
        except zmq.ZMQError:
            self.close()
            raise

    def header(self, filename: str) -> None:
        """Announce a new file (a new series)."""
        self._send({"htype": "header", "filename": filename})

    def frame(self, written: WrittenFrame) -> None:
        """Forward a written image of :attr:`channel`, one in :attr:`every`."""
        if written.channel != self.channel:
            return
        self._frames += 1
        if (self._frames - 1) % self.every:
            return
        self._send(
            {
                "htype": "image",
                "frame": written.row,
                "shape": list(written.shape),
                "type": written.dtype.name,
                "compression": written.compression,
                "pulse_id": written.pulse_id,
            },
            written.chunk,
        )

    def series_end(self) -> None:
        """Announce the end of the file."""
        self._send({"htype": "series_end"})
        self._frames = 0

    def close(self) -> None:
        """Close the socket (what is still queued is dropped: viewers are not waited for)."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def _send(self, message: dict[str, Any], blob: Any = None) -> None:
        message["msg_number"] = self._msg_number
        self._msg_number += 1
        header = json.dumps(message).encode()
        if self._socket is None:
            raise ValueError(f"the live port {self.address} is closed")
        try:
            if blob is None:
                self._socket.send(header, zmq.NOBLOCK)
            else:
                # Multipart messages are atomic: once the header is queued, the blob is too.
                self._socket.send(header, zmq.NOBLOCK | zmq.SNDMORE)
                self._socket.send(blob, copy=False)
        except zmq.Again:
            self.dropped += 1
            return
        self.sent += 1
