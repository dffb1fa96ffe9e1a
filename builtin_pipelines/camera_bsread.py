"""An external bsread stream (a bsread camera, an IOC, a dispatcher stream), as a pipevisor source.

Run it with ``python -m runners.python --builtin camera_bsread``. It receives
the stream and republishes every message on the instance's output, so one instance holds the
one connection to an external stream and any number of pipelines read it (CamServer's
``source_type: bsread``). Every option is a key of the instance's parameters and may change
live; a new ``source``, ``mode``, ``bind`` or ``queue_size`` reopens the socket.

===============  ========  ========================================================================
key              default   meaning
===============  ========  ========================================================================
source           required  the stream's URL, e.g. ``tcp://127.0.0.1:9999`` (tcp:// or ipc://)
mode             "SUB"     ``SUB`` (subscribed to everything) or ``PULL``
bind             False     False: connect to ``source`` (the usual case: the sender binds);
                           True: bind it, for a sender that connects (``tcp://*:PORT`` allowed)
receive_timeout  50        ms one poll may wait, 1 to 50: the runner handles config and status
                           between two polls, so this bounds their latency
camera_timeout   10.0      seconds without any message after which the socket is closed,
                           reopened and a warning logged (CamServer's rule)
image_channel    None      the stream's image channel (e.g. ``CAM:FPICTURE``), republished as
                           ``image``; for a 2-D image, ``width`` and ``height`` (int64),
                           ``x_axis`` and ``y_axis`` (float32 pixel numbers) are added where
                           the stream has none
queue_size       4         RCVHWM: few messages wait in ZMQ, so what goes out stays close to
                           the newest (the runner's option of the same name, for a source)
===============  ========  ========================================================================

What goes out: the stream's channels, values and order, with the message's pulse id and global
timestamp, each channel with its own timestamp as received (an IOC's per-record timestamps);
a missing value stays missing, declared with the type and shape of the received data header
(never float64 for want of a value). The geometry channels come last, from the data header (so
they are there when the image is missing too), stamped with the global timestamp; a channel
the stream calls ``image`` is shadowed by the renamed one. Messages are decoded zero-copy: an
uncompressed image goes out in the memory it came in. Every message received counts in the
status' ``messages_in`` and ``bytes_in``; a malformed one is dropped, counted in ``malformed``
too and logged at most once per ``_REPORT_INTERVAL``; non-data messages (``bsr_stop``) are
skipped; any message shows the stream alive for ``camera_timeout``. A failing
bind or connect is retried at every poll, and reported once it lasts ``_OPEN_GRACE``. A PUSH
sender shares its messages out among the PULLs connected to it: one instance per stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any

import numpy as np
import zmq

from supervisor.contract.bsread import Channel, DecodeError, Decoder, Message

__all__ = ["configure", "generate"]

log = logging.getLogger(__name__)

MODES = ("SUB", "PULL")
MAX_RECEIVE_TIMEOUT_MS = 50  # the runner's responsiveness: config and status between polls
_REPORT_INTERVAL = 10.0  # seconds between two reports of malformed messages or open failures
_OPEN_GRACE = 0.5  # seconds a failing bind or connect is retried before it is reported
_socket_key = attrgetter("source", "mode", "bind", "queue_size")  # a change reopens the socket
_GEOMETRY = ("width", "height", "x_axis", "y_axis")


@dataclass(frozen=True, slots=True)
class _Options:
    """The checked options; the defaults are the keys' defaults."""

    source: str | None = None
    mode: str = "SUB"
    bind: bool = False
    receive_timeout: int = MAX_RECEIVE_TIMEOUT_MS
    camera_timeout: float = 10.0
    image_channel: str | None = None
    queue_size: int = 4


_DEFAULTS = {field.name: field.default for field in fields(_Options)}


def _check_source(url: Any, bind: bool) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"source must be a URL such as 'tcp://127.0.0.1:9999', got {url!r}")
    scheme, _, rest = url.partition("://")
    if scheme == "ipc" and rest:
        return
    host, _, port = rest.rpartition(":")
    if scheme != "tcp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"source must be tcp://HOST:PORT or ipc://PATH, got {url!r}")
    if host == "*" and not bind:
        raise ValueError(f"source {url!r} can only be bound (bind: true)")


def _options(parameters: Mapping[str, Any]) -> _Options:
    """The options with their defaults filled in (None means the default), checked."""
    # JSON values of the config, each still to be checked: Any, as in ``parameters``.
    get: dict[str, Any] = {
        k: d if parameters.get(k) is None else parameters[k] for k, d in _DEFAULTS.items()
    }
    bind, mode, receive_timeout = get["bind"], get["mode"], get["receive_timeout"]
    if not isinstance(bind, bool):
        raise ValueError(f"bind must be true or false, got {bind!r}")
    _check_source(get["source"], bind)
    if not isinstance(mode, str) or mode.upper() not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if type(receive_timeout) is not int or not 1 <= receive_timeout <= MAX_RECEIVE_TIMEOUT_MS:
        raise ValueError(f"receive_timeout must be 1 to 50 ms, got {receive_timeout!r}")
    camera_timeout = get["camera_timeout"]
    if type(camera_timeout) not in (int, float) or not camera_timeout > 0:  # JSON: no bools
        raise ValueError(f"camera_timeout must be positive seconds, got {camera_timeout!r}")
    image_channel = get["image_channel"]
    if image_channel is not None and (not isinstance(image_channel, str) or not image_channel):
        raise ValueError(f"image_channel must be a channel name, got {image_channel!r}")
    if type(get["queue_size"]) is not int or get["queue_size"] < 1:
        raise ValueError(f"queue_size must be an integer of at least 1, got {get['queue_size']!r}")
    return _Options(**{**get, "mode": mode.upper(), "camera_timeout": float(camera_timeout)})


def configure(parameters: dict[str, Any]) -> None:
    """Check the options; raises ValueError quoting the first bad one."""
    _options(parameters)


class _Report:
    """Lets one log line through per interval and counts the events in between."""

    __slots__ = ("_next", "_pending", "interval")

    def __init__(self, interval: float, delay: float = 0.0) -> None:
        self.interval, self._next, self._pending = interval, time.monotonic() + delay, 0

    def due(self) -> int:
        """Count one event; the events to report now (this one included), or 0 for later."""
        self._pending += 1
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + self.interval
        pending, self._pending = self._pending, 0
        return pending


class _ImagePlan:
    """How one data header's messages go out; ``problem`` says what could not be done."""

    __slots__ = ("geometry", "problem", "source")

    def __init__(self, channels: Sequence[Channel], image_channel: str) -> None:
        by_name = {channel.name: channel for channel in channels}
        image = by_name.get(image_channel)
        self.source = None if image is None else image_channel
        self.geometry: dict[str, Any] = {}
        self.problem: str | None = None
        if image is None:
            names = ", ".join(by_name) or "none"
            self.problem = f"image channel {image_channel!r} is not in the stream; it has {names}"
            return
        if image_channel != "image" and "image" in by_name:
            self.problem = f"the stream's own 'image' channel is shadowed by {image_channel!r}"
        if len(image.shape) != 2:
            self.problem = f"image channel {image_channel!r} is not 2-D: shape {image.shape}"
            return
        height, width = image.shape
        x_axis, y_axis = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        x_axis.flags.writeable = y_axis.flags.writeable = False  # shared by the header's messages
        values = (np.int64(width), np.int64(height), x_axis, y_axis)
        self.geometry = {k: v for k, v in zip(_GEOMETRY, values, strict=True) if k not in by_name}

    def apply(self, message: Message) -> Message:
        """The message to send: the image renamed where it stands, the geometry at the end."""
        source = self.source
        if source is None:
            return message
        data: dict[str, Any] = {}
        timestamps: dict[str, tuple[int, int] | None] = {}
        for name, value in message.data.items():
            if name == source:
                data["image"], timestamps["image"] = value, message.timestamps.get(name)
            elif name != "image":
                data[name], timestamps[name] = value, message.timestamps.get(name)
        data.update(self.geometry)
        channels = [
            replace(channel, name="image") if channel.name == source else channel
            for channel in message.channels
            if channel.name != "image"
        ]
        return replace(message, channels=channels, data=data, timestamps=timestamps)


class _Receiver:
    """The socket to the stream and its decoder; reopened after ``camera_timeout`` of silence."""

    def __init__(self, options: _Options) -> None:
        self.options = options
        self.malformed = self.reconnects = 0
        self._context = zmq.Context()  # our own: terminating it leaves no socket behind
        self._decoder = Decoder()
        self._sock: zmq.Socket[bytes] | None = None
        self._last_message = 0.0
        self._malformed_report = _Report(_REPORT_INTERVAL)
        self._open_report: _Report | None = None  # from the first failure on

    def use(self, options: _Options) -> None:
        """Take new options; a new source, mode, bind or queue_size reopens the socket."""
        old, self.options = self.options, options
        if self._sock is not None and _socket_key(options) != _socket_key(old):
            log.info("reopening the socket for the new configuration: %s", options.source)
            self._close()

    def receive(self) -> Message | DecodeError | None:
        """The next message within ``receive_timeout``, its error if malformed (logged and
        counted, ``nbytes`` set), or None: none, or not data."""
        options = self.options
        sock = self._sock if self._sock is not None else self._open()
        if sock is None:
            time.sleep(options.receive_timeout / 1000)
            return None
        if not sock.poll(options.receive_timeout):
            if time.monotonic() - self._last_message >= options.camera_timeout:
                self.reconnects += 1
                extra = {"reconnects": self.reconnects}
                text = "no message from %s for %g s: reopening the socket"
                log.warning(text, options.source, options.camera_timeout, extra=extra)
                self._close()
            return None
        frames = sock.recv_multipart(copy=False)  # readable: the whole message is there
        self._last_message = time.monotonic()
        try:
            return self._decoder.decode(frames)
        except DecodeError as exc:
            exc.nbytes = sum(len(frame) for frame in frames)
            self.malformed += 1
            if dropped := self._malformed_report.due():
                extra = {"malformed": self.malformed}
                text = "dropped %d malformed message(s) from %s (%d in all), the last: %s"
                log.warning(text, dropped, options.source, self.malformed, exc, extra=extra)
            return exc

    def close(self) -> None:
        """Close the socket and terminate the context."""
        self._close()
        self._context.term()

    def _open(self) -> zmq.Socket[bytes] | None:
        """The socket bound or connected as the options say, or None (reported) if it cannot be."""
        options = self.options
        source = options.source
        assert source is not None, "_options refuses a config without a source"
        sock = self._context.socket(zmq.SUB if options.mode == "SUB" else zmq.PULL)
        sock.linger = 0
        sock.rcvhwm = options.queue_size
        if options.mode == "SUB":
            sock.subscribe(b"")  # bsread has no topic frame
        try:
            if options.bind:
                sock.bind(source)
            else:
                sock.connect(source)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            # A port just unbound stays busy for a moment, a bad address longer: retry both and
            # report what lasts.
            self._open_report = self._open_report or _Report(_REPORT_INTERVAL, _OPEN_GRACE)
            if self._open_report.due():
                verb = "bind" if options.bind else "connect to"
                log.warning("cannot %s %s: %s; retrying", verb, options.source, exc)
            return None
        self._sock, self._open_report = sock, None
        self._decoder.reset()  # another stream, or the same one restarted: headers anew
        self._last_message = time.monotonic()
        verb = "bound" if options.bind else "connected to"
        log.info("%s %s (%s)", verb, options.source, options.mode)
        return sock

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


def generate(parameters: dict[str, Any]) -> Iterator[Message | DecodeError | None]:
    """Yield each message received as it goes out, None while waiting.

    A data message comes as a ``Message`` (the runner sends it with each channel's timestamp
    and declared type), a malformed one as its ``DecodeError`` (the runner counts it).

    Raises:
        ValueError: the options are invalid (under a runner, ``configure`` refuses them first).
    """
    options = _options(parameters)
    raw = tuple(parameters.get(key) for key in _DEFAULTS)
    receiver = _Receiver(options)
    plan: _ImagePlan | None = None
    try:
        while True:
            current = tuple(parameters.get(key) for key in _DEFAULTS)
            if current != raw:  # a live update, which configure has checked
                options, raw, plan = _options(parameters), current, None
                receiver.use(options)
            message = receiver.receive()
            if message is None or isinstance(message, DecodeError):
                yield message
                continue
            if options.image_channel is not None:
                if plan is None or message.format_changed:
                    problem = None if plan is None else plan.problem
                    plan = _ImagePlan(message.channels, options.image_channel)
                    if plan.problem is not None and plan.problem != problem:
                        log.warning("%s", plan.problem)  # once, not at every header change
                message = plan.apply(message)
            yield message
    finally:
        receiver.close()
