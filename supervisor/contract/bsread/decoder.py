"""bsread receiver side: frames in, `Message` out (bsread.md §3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import zmq

from .compression import bitshuffle_decompress, lz4_decompress, read_bitshuffle_nbytes
from .errors import DecodeError
from .headers import Buffer, ChannelPlan, DataHeader, parse_data_header, parse_main_header
from .message import Message

__all__ = ["Decoder"]

Frame = bytes | memoryview | zmq.Frame

_TIMESTAMP_SIZE: Final = 16
# Several senders can feed one PULL socket: a few cached headers spare re-parsing as they alternate.
_CACHE_SIZE: Final = 16


class Decoder:
    """Decodes bsread messages, caching the parsed data header by its hash.

    Frame 1 is parsed only when it changes: the main header's hash picks the cached header and a
    byte comparison confirms it. The hash itself is never verified (some PSI producers hash the
    uncompressed JSON). When the hash is empty, frame 1's bytes serve as the cache key instead.

    Every malformed message raises `DecodeError` and should be dropped whole and counted. That
    includes a channel of an unknown type: PSI's Python receiver returns None for such a channel,
    but a stream we cannot fully read is a fault the operator should see, not a silent gap.
    """

    def __init__(self) -> None:
        self._headers: dict[str | bytes, tuple[bytes, DataHeader]] = {}
        self._current: DataHeader | None = None

    def reset(self) -> None:
        """Forget cached data headers, e.g. after reconnecting to another stream."""
        self._headers.clear()
        self._current = None

    def decode(self, frames: Sequence[Frame]) -> Message | None:
        """Decode one multipart message.

        Args:
            frames: All frames of the message, as bytes, memoryviews or `zmq.Frame`s
                (received with `copy=False`: numeric arrays then share the frames' memory).

        Returns:
            The message, or None for a non-data message (`htype` not starting with "bsr_m",
            e.g. `bsr_stop-1.0`) that the caller should skip.

        Raises:
            DecodeError: For any malformed message; nothing else escapes.
        """
        try:
            return self._decode(frames)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"malformed bsread message: {exc!r}") from exc

    def _decode(self, frames: Sequence[Frame]) -> Message | None:
        buffers = [_as_buffer(frame) for frame in frames]
        if not buffers:
            raise DecodeError("empty bsread message (no frames)")
        main = parse_main_header(buffers[0])
        if main is None:
            return None
        pulse_id, global_timestamp, hash_, dh_compression = main
        if len(buffers) < 2:
            raise DecodeError(f"bsread data message with {len(buffers)} frame(s)")
        frame1 = buffers[1]
        key: str | bytes = hash_ or bytes(frame1)
        cached = self._headers.get(key)
        # The hash is a cache key, not a proof: a frame 1 that differs under the same hash (a
        # sender that forgot to change it, or a corrupted frame) is parsed again rather than
        # read with a stale channel list. Comparing a few hundred bytes costs next to nothing.
        if cached is not None and cached[0] == frame1:
            header = cached[1]
        else:
            header = parse_data_header(frame1, dh_compression)
            if cached is None and len(self._headers) >= _CACHE_SIZE:
                del self._headers[next(iter(self._headers))]
            self._headers[key] = (bytes(frame1), header)
        plans = header.plans
        if len(buffers) != 2 + 2 * len(plans):
            raise DecodeError(
                f"bsread message has {len(buffers)} frames, expected {2 + 2 * len(plans)} "
                f"for {len(plans)} channels"
            )
        data: dict[str, Any] = {}
        timestamps: dict[str, tuple[int, int] | None] = {}
        index = 2
        for plan in plans:
            value = _decode_value(plan, buffers[index])
            data[plan.name] = value
            timestamps[plan.name] = (
                None
                if value is None
                else _decode_timestamp(plan, buffers[index + 1], global_timestamp)
            )
            index += 2
        format_changed = header is not self._current
        self._current = header
        return Message(
            pulse_id=pulse_id,
            global_timestamp=global_timestamp,
            hash=hash_,
            channels=list(header.channels),
            data=data,
            timestamps=timestamps,
            format_changed=format_changed,
            nbytes=sum(len(buffer) for buffer in buffers),
        )


def _as_buffer(frame: Frame) -> Buffer:
    if type(frame) is bytes:
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.buffer
    view = memoryview(frame)
    return view if view.ndim == 1 and view.itemsize == 1 else view.cast("B")


def _decode_value(plan: ChannelPlan, buffer: Buffer) -> Any:
    size = len(buffer)
    if size == 0:
        return None
    if plan.compression == "none":
        if plan.string:
            return str(buffer, "utf-8")
        if size != plan.nbytes:
            raise DecodeError(
                f"channel {plan.name!r}: value has {size} bytes, expected {plan.nbytes}"
            )
        array = np.frombuffer(buffer, plan.dtype)
    elif plan.compression == "bitshuffle_lz4":
        nbytes = read_bitshuffle_nbytes(buffer)
        if nbytes == 0:
            return None
        if not plan.string and nbytes != plan.nbytes:
            raise DecodeError(
                f"channel {plan.name!r}: compressed value holds {nbytes} bytes, "
                f"expected {plan.nbytes}"
            )
        array = bitshuffle_decompress(buffer, plan.dtype)
        if plan.string:
            return array.tobytes().decode("utf-8")
    else:
        raw = lz4_decompress(buffer, None if plan.string else plan.nbytes)
        if plan.string:
            return raw.decode("utf-8")
        array = np.frombuffer(raw, plan.dtype)
    if plan.count == 1:
        return array[0]
    return array.reshape(plan.shape)


def _decode_timestamp(
    plan: ChannelPlan, buffer: Buffer, global_timestamp: tuple[int, int]
) -> tuple[int, int] | None:
    size = len(buffer)
    if size == _TIMESTAMP_SIZE:
        return plan.timestamp.unpack(buffer)
    if size == 0:
        return None
    return global_timestamp
