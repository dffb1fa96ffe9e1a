"""``pipevisor receive``: read a bsread stream and print its messages, like PSI's ``bs receive``.

The stream is named by an instance (its URL and socket type come from the supervisor) or given
as a ``tcp://`` URL. Messages are decoded by the contract's bsread codec. Text output shows one
block per message, every channel with its type: scalars and strings as values, arrays as their
dtype, shape, minimum and maximum (``--values`` prints them whole). ``--json`` prints one JSON
object per line. A malformed message is counted, reported on stderr, and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .client import CliError

if TYPE_CHECKING:  # zmq and numpy are imported when the command runs: other commands stay light
    from supervisor.contract.bsread import Message

__all__ = ["cmd_receive", "message_json", "message_text"]

_POLL_MS = 200  # how often a wait for the next message looks at the clock and for Ctrl-C
_SUMMARY_ELEMENTS = 8  # arrays up to this size are printed whole


def _endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """The URL and socket mode ("SUB" or "PULL") to read."""
    if args.stream.startswith(("tcp://", "ipc://", "inproc://")):
        return args.stream, (args.mode or "SUB").upper()
    from .commands import _client, _q

    info = _client(args).call("GET", f"/instances/{_q(args.stream)}")
    url = info.get("stream")
    if not url:
        raise CliError(f"instance {args.stream!r} has no output stream", 1)
    mode = args.mode or ("PULL" if info.get("output_mode") == "PUSH" else "SUB")
    return url, mode.upper()


def _timestamp(message: Message) -> str:
    seconds, nanoseconds = message.global_timestamp
    if not seconds and not nanoseconds:
        return "-"
    moment = datetime.fromtimestamp(seconds + nanoseconds * 1e-9, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _array_summary(value: Any) -> dict[str, Any]:
    import numpy as np

    summary: dict[str, Any] = {"dtype": str(value.dtype), "shape": list(value.shape)}
    if value.size and value.dtype.kind in "biuf":
        with np.errstate(all="ignore"):
            low, high = np.nanmin(value), np.nanmax(value)
        summary["min"], summary["max"] = low.item(), high.item()
    return summary


def _plain(value: Any, whole: bool) -> Any:
    """A channel value as JSON: scalars and strings as they are, arrays whole or summarised."""
    import numpy as np

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim > 0:
        if whole or value.size <= _SUMMARY_ELEMENTS:
            return value.tolist()
        return _array_summary(value)
    return value.item() if isinstance(value, np.generic | np.ndarray) else value


def message_json(message: Message, channels: list[str] | None, whole: bool) -> dict[str, Any]:
    """One message as a JSON object: pulse id, timestamp, and the selected channels' values."""
    names = channels if channels is not None else list(message.data)
    return {
        "pulse_id": message.pulse_id,
        "global_timestamp": list(message.global_timestamp),
        "data": {name: _plain(message.data.get(name), whole) for name in names},
    }


def message_text(message: Message, channels: list[str] | None, whole: bool) -> str:
    """One message as text: a header line, then a ``name  type  value`` line per channel."""
    import numpy as np

    declared = {channel.name: channel for channel in message.channels}
    names = channels if channels is not None else list(message.data)
    lines = [f"pulse_id {message.pulse_id}  {_timestamp(message)}  {len(message.data)} channels"]
    width = max((len(name) for name in names), default=0)
    for name in names:
        channel = declared.get(name)
        if channel is None:
            lines.append(f"  {name:<{width}}  (not in this message)")
            continue
        value = message.data.get(name)
        kind = channel.type + (str(list(channel.shape)) if channel.shape not in ((), (1,)) else "")
        if value is None:
            shown = "(missing)"
        elif isinstance(value, np.ndarray) and value.ndim > 0 and not whole:
            if value.size <= _SUMMARY_ELEMENTS:
                shown = np.array2string(value, separator=", ")
            else:
                summary = _array_summary(value)
                shown = (
                    f"min {summary['min']!r}  max {summary['max']!r}" if "min" in summary else ""
                )
        elif isinstance(value, np.ndarray):
            shown = np.array2string(value, separator=", ", threshold=sys.maxsize)
        else:
            shown = repr(_plain(value, whole))
        lines.append(f"  {name:<{width}}  {kind:<16}  {shown}".rstrip())
    return "\n".join(lines)


def cmd_receive(args: argparse.Namespace) -> int:
    """Print the messages of an instance's output stream, or of a bsread URL, until Ctrl-C."""
    import time

    import zmq

    from supervisor.contract.bsread import DecodeError, Decoder

    if args.n is not None and args.n < 1:
        raise CliError(f"-n must be at least 1, got {args.n}", 2)
    url, mode = _endpoint(args)
    channels = [c for c in args.channels.split(",") if c] if args.channels else None
    context = zmq.Context()
    socket = context.socket(zmq.SUB if mode == "SUB" else zmq.PULL)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 10)  # a slow terminal shows recent messages, not old ones
    if mode == "SUB":
        socket.setsockopt(zmq.SUBSCRIBE, b"")
    decoder = Decoder()
    received = malformed = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    print(f"receiving {url} ({mode})", file=sys.stderr, flush=True)
    try:
        socket.connect(url)
        while args.n is None or received < args.n:
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(
                    f"{received} message(s) from {url} in {args.timeout:g} s"
                    + (f" ({malformed} malformed)" if malformed else ""),
                    1,
                )
            if not socket.poll(_POLL_MS):
                continue
            try:
                message = decoder.decode(socket.recv_multipart(copy=False))
            except DecodeError as exc:
                malformed += 1
                print(f"malformed message skipped ({malformed}): {exc}", file=sys.stderr)
                continue
            if message is None:  # a stop message or a heartbeat: nothing to show
                continue
            received += 1
            if args.json:
                print(json.dumps(message_json(message, channels, args.values)), flush=True)
            else:
                print(message_text(message, channels, args.values), flush=True)
    except KeyboardInterrupt:
        return 130
    except zmq.ZMQError as exc:
        raise CliError(f"cannot read {url}: {exc}", 2) from None
    finally:
        socket.close()
        context.term()
    return 0
