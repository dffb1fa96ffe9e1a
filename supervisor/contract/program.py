"""The program side of the CONFIG and LOG channels, for programs written in Python.

A program builds one :class:`ProgramChannels` from its :class:`ContractEnv`, says hello, and gets
its configuration back; afterwards it sends ``ready``, ``status`` and the ack or error of every
live update, and ships its log records. A channel whose URL is unset is a no-op, so the same
program also runs standalone.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

import zmq

from .env import ContractEnv
from .messages import (
    ConfigAck,
    ConfigError,
    ConfigUpdate,
    Hello,
    LogLevel,
    LogRecord,
    MessageError,
    Ready,
    Report,
    Status,
    dump_message,
    parse_supervisor_message,
)

__all__ = ["HELLO_TIMEOUT", "ContractLogHandler", "ProgramChannels"]

HELLO_TIMEOUT = 5.0
"""Seconds a program waits for its configuration before it goes on with the one in its env."""

_LINGER_MS = 500  # enough to flush a last log record or ack at exit, short enough not to hang
_CONFIG_HWM = 100
_LOG_HWM = 1000


class ProgramChannels:
    """CONFIG (a DEALER) and LOG (a PUSH) of one program; no-ops where the URL is unset.

    Not thread-safe except :meth:`log`, which a logging handler may call from any thread.

    Args:
        env: the contract read from the environment.
        context: the ZMQ context to make the sockets in.
        program: free text naming the program, sent in ``hello``.
        log_hwm: how many log records may queue before new ones are dropped (``log_drops``).
    """

    def __init__(
        self,
        env: ContractEnv,
        context: zmq.Context[zmq.Socket[bytes]],
        *,
        program: str = "",
        log_hwm: int = _LOG_HWM,
    ) -> None:
        self.env = env
        self.program = program
        self.log_drops = 0
        """Log records dropped because LOG was full (its peer gone or too slow)."""
        self.config_drops = 0
        """CONFIG messages (status, acks) dropped because the channel was full."""
        self._log_lock = threading.Lock()
        self._pending: list[ConfigUpdate] = []
        self._config: zmq.Socket[bytes] | None = None
        self._log: zmq.Socket[bytes] | None = None
        if env.config_url:
            self._config = context.socket(zmq.DEALER)
            self._config.setsockopt(zmq.LINGER, _LINGER_MS)
            self._config.setsockopt(zmq.SNDHWM, _CONFIG_HWM)
            self._config.setsockopt(zmq.RCVHWM, _CONFIG_HWM)
            self._config.connect(env.config_url)
        if env.log_url:
            self._log = context.socket(zmq.PUSH)
            self._log.setsockopt(zmq.LINGER, _LINGER_MS)
            self._log.setsockopt(zmq.SNDHWM, log_hwm)
            self._log.connect(env.log_url)

    @property
    def config_socket(self) -> zmq.Socket[bytes] | None:
        """The CONFIG socket, to put in a poller (readable: call :meth:`poll_config`)."""
        return self._config

    @property
    def has_log(self) -> bool:
        """Whether LOG is connected (else log records go nowhere)."""
        return self._log is not None

    def hello(self, timeout: float = HELLO_TIMEOUT) -> ConfigUpdate | None:
        """Send ``hello`` and wait for the supervisor's ``config``.

        Returns:
            The configuration to acknowledge, or None when CONFIG is unset or nothing came within
            ``timeout`` (a warning is logged): the program then uses ``env.config``.
        """
        if self._config is None:
            return None
        self._send(
            Hello(
                instance=self.env.instance, run=self.env.run, pid=os.getpid(), program=self.program
            )
        )
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self._config.poll(max(1, int(left * 1000))):
                continue
            updates = self.poll_config()
            if updates:
                self._pending = updates[1:]  # later updates wait for the next poll_config
                return updates[0]
        message = (
            f"no configuration from the supervisor within {timeout:g} s: "
            "going on with the one in the environment"
        )
        if not self.log_message("warning", message, logger="pipevisor.contract"):
            print(f"warning: {message}", file=sys.stderr)
        return None

    def poll_config(self) -> list[ConfigUpdate]:
        """Return the configuration updates waiting on CONFIG, oldest first; never blocks.

        An invalid frame is skipped with a warning on LOG.
        """
        updates, self._pending = self._pending, []
        if self._config is None:
            return updates
        while True:
            try:
                frames = self._config.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return updates
            try:
                # The last frame is the message, whatever envelope a ROUTER may have added.
                updates.append(parse_supervisor_message(frames[-1]))
            except MessageError as exc:
                self.log_message(
                    "warning", f"ignored a CONFIG frame: {exc}", logger="pipevisor.contract"
                )

    def ready(self, output_url: str | None = None) -> None:
        """Tell the supervisor the output is bound and data is processed."""
        self._send(Ready(instance=self.env.instance, run=self.env.run, output_url=output_url))

    def report(self, report: dict[str, Any]) -> None:
        """Send a ``report``: the program's own state, shown in the API (send it on change)."""
        self._send(Report(instance=self.env.instance, run=self.env.run, report=report))

    def status(self, **counters: Any) -> None:
        """Send a ``status``: ``counters`` are the fields of :class:`Status`."""
        if self._config is not None:
            self._send(Status(instance=self.env.instance, run=self.env.run, **counters))

    def ack(self, seq: int) -> None:
        """Acknowledge the configuration with sequence number ``seq``."""
        self._send(ConfigAck(instance=self.env.instance, run=self.env.run, seq=seq))

    def error(self, seq: int, message: str) -> None:
        """Refuse the configuration with sequence number ``seq``, saying why."""
        self._send(
            ConfigError(instance=self.env.instance, run=self.env.run, seq=seq, message=message)
        )

    def log(self, record: LogRecord) -> bool:
        """Send a log record without blocking; returns False (and counts it) when it is dropped."""
        if self._log is None:
            return False
        frame = dump_message(record)
        with self._log_lock:
            try:
                self._log.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                self.log_drops += 1
                return False
        return True

    def log_message(
        self,
        level: LogLevel,
        message: str,
        *,
        logger: str = "",
        fields: dict[str, Any] | None = None,
        exc: str | None = None,
    ) -> bool:
        """Build and send a log record (see :meth:`log`)."""
        return self.log(
            LogRecord(
                instance=self.env.instance,
                run=self.env.run,
                time=time.time(),
                level=level,
                logger=logger,
                message=message,
                fields=fields or {},
                exc=exc,
            )
        )

    def close(self) -> None:
        """Close both sockets; queued messages get a short linger to leave."""
        for sock in (self._config, self._log):
            if sock is not None:
                sock.close()
        self._config = self._log = None

    def _send(self, message: Any) -> None:
        if self._config is None:
            return
        try:
            self._config.send(dump_message(message), zmq.NOBLOCK)
        except zmq.Again:
            self.config_drops += 1


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _level(levelno: int) -> LogLevel:
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class ContractLogHandler(logging.Handler):
    """A logging handler that sends Python log records on LOG as structured records.

    ``extra={...}`` fields become the record's ``fields`` (as ``repr`` when not JSON-serialisable);
    an ``exc_info`` traceback becomes ``exc``. Records are dropped, and counted in
    ``channels.log_drops``, rather than block the program when LOG is full.
    """

    def __init__(self, channels: ProgramChannels, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.channels = channels

    def emit(self, record: logging.LogRecord) -> None:
        """Convert and send one record."""
        try:
            exc = None
            if record.exc_info and record.exc_info[0] is not None:
                exc = "".join(traceback.format_exception(*record.exc_info))
            elif record.exc_text:
                exc = record.exc_text
            if record.stack_info:
                exc = (exc + "\n" if exc else "") + record.stack_info
            fields = {
                key: _jsonable(value)
                for key, value in record.__dict__.items()
                if key not in _STANDARD_ATTRS and not key.startswith("_")
            }
            self.channels.log_message(
                _level(record.levelno),
                record.getMessage(),
                logger=record.name,
                fields=fields,
                exc=exc,
            )
        except Exception:
            self.handleError(record)
