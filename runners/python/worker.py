"""A worker process of the runner: ``python -m runners.python.worker``, started by the runner.

It loads the same user code as the runner (script, module or C extension), applies every
configuration the runner sends (running the code's ``configure`` here too, so per-process state
such as compiled kernels is right), then calls the function on the messages it is given and
sends back what came of each. Its big arrays live in shared memory slots (``slots``); its log
records go to the runner, which sends them on LOG with a ``worker`` field.

It leaves signals to the runner (SIGTERM and SIGINT are ignored: the runner stops it), and dies
with it: the kernel kills it when the runner goes (``PR_SET_PDEATHSIG``), and it exits when its
socket closes.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from supervisor.contract import ExitCode

from .calls import run
from .config import ConfigRefused, Configurator
from .loader import UserCode, load
from .slots import InSlot, SlotMapping, pack_result, unpack_input
from .workerlink import describe_error, recv_fd, recv_message, send_frame

__all__ = ["main"]

log = logging.getLogger("pipevisor.worker")

_PR_SET_PDEATHSIG = 1
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runners.python.worker")
    parser.add_argument("--fd", type=int, required=True, help="the runner's socket")
    parser.add_argument("--parent", type=int, required=True, help="the runner's pid")
    parser.add_argument("--index", type=int, required=True, help="this worker's number")
    parser.add_argument("--log-level", type=int, default=logging.INFO)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--script")
    target.add_argument("--module")
    target.add_argument("--extension")
    return parser.parse_args(argv)


def _die_with(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the closed socket still ends this worker
        pass
    if os.getppid() != parent:  # the runner went before the line above took effect
        sys.exit(0)


class _Link:
    """Sends to the runner from any thread (user code may log from its own threads).

    Sends are synchronous: a sending thread would wait for the GIL while the function runs,
    and the runner would get each result a whole processing time late. A send never blocks
    for long: the runner reads this socket whenever its own sends to it would block.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def put(self, message: tuple[Any, ...]) -> None:
        """Send one message. Raises OSError when the runner is gone."""
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            send_frame(self.sock, payload)


class _ForwardHandler(logging.Handler):
    """Hands every log record to the runner, formatted, with this worker's number."""

    def __init__(self, link: _Link, index: int) -> None:
        super().__init__()
        self.link = link
        self.index = index

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = "".join(traceback.format_exception(*record.exc_info))
            fields["exc_info"] = None
            fields["worker"] = self.index
            try:
                self.link.put(("log", fields))
            except OSError:  # the runner is gone: so is the log
                pass
            except Exception:  # an extra field that does not pickle: send its repr
                for key, value in fields.items():
                    if key not in _STANDARD_ATTRS:
                        fields[key] = repr(value)
                self.link.put(("log", fields))
        except OSError:
            pass
        except Exception:
            self.handleError(record)


class _Worker:
    def __init__(self, code: UserCode, link: _Link) -> None:
        self.code = code
        self.link = link
        self.sock = link.sock
        self.configurator = Configurator(code)
        self.generation = -1
        self.mappings: dict[int, SlotMapping] = {}

    def configure(self, generation: int, config: dict[str, Any]) -> None:
        initial = self.generation < 0
        self.generation = generation
        try:
            self.configurator.apply(config)
        except ConfigRefused as exc:
            if initial:
                raise
            log.error("configuration refused in this worker, the previous one stays: %s", exc)

    def map_slot(self, index: int, version: int, capacity: int) -> None:
        fd = recv_fd(self.sock)
        try:
            self.mappings[index] = SlotMapping(fd, capacity, version)
        finally:
            os.close(fd)

    def process(self, seq: int, pulse_id: int, timestamp: Any, index: int, packed: Any) -> None:
        mapping = self.mappings[index]
        data = unpack_input(mapping, packed)
        used = max((v.span[1] for v in packed.values() if isinstance(v, InSlot)), default=0)
        outcome = run(self.code, seq, pulse_id, timestamp, data, self.configurator.parameters)
        del data  # the slot is the runner's again once the outcome is sent
        if outcome.error is None:
            try:
                result = pack_result(mapping, outcome.result, used)
                self.link.put(("done", seq, outcome.seconds, outcome.flagged, result))
                return
            except Exception as exc:  # a result that does not pickle
                outcome.error = exc
        self.link.put(("error", seq, outcome.seconds, describe_error(outcome.error)))


def _serve(worker: _Worker) -> None:
    while True:
        try:
            message = recv_message(worker.sock)
        except EOFError:
            return
        kind = message[0]
        if kind == "task":
            worker.process(*message[1:])
        elif kind == "config":
            worker.configure(*message[1:])
        elif kind == "slot":
            worker.map_slot(*message[1:])
        elif kind == "stop":
            return


def main(argv: list[str] | None = None) -> int:
    """Run one worker until the runner stops it or goes; returns the exit code."""
    args = _parse_args(argv)
    _die_with(args.parent)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a crash in native code prints the stack on the runner's stderr
    sock = socket.socket(fileno=args.fd)
    link = _Link(sock)
    root = logging.getLogger()
    root.setLevel(args.log_level)
    root.addHandler(_ForwardHandler(link, args.index))
    try:
        try:
            code = load(script=args.script, module=args.module, extension=args.extension)
            message = recv_message(sock)
            if message[0] != "config":
                raise RuntimeError(f"expected the configuration first, got {message[0]!r}")
            worker = _Worker(code, link)
            worker.configure(*message[1:])
        except (EOFError, OSError):
            return ExitCode.FAILURE
        except (Exception, SystemExit) as exc:
            link.put(("failed", "".join(traceback.format_exception(exc))))
            return ExitCode.LOAD_ERROR
        link.put(("ready", os.getpid()))
        _serve(worker)
        return ExitCode.OK
    except OSError:  # the runner is gone
        return ExitCode.FAILURE
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
