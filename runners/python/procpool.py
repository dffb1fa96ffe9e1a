"""Worker processes: the function is called on several messages at once, one per process.

For CPU-bound Python. Each worker is ``python -m runners.python.worker`` on a Unix socket pair
(``workerlink``), loading the same user code and applying every configuration: sent on the
socket the messages take, so each message is processed under the configuration current when
it was submitted, as in one process. A message's big arrays are copied once into a shared
memory slot (``slots``); the rest, and the result, are pickled. A worker holds at most
``_DEPTH`` messages: one in the function, the next one ready, so it never waits for the runner.
Messages go to the worker with the fewest; on a tie, away from one stuck on an old message.

A worker that dies (a segfault in native code, SIGKILL) is replaced at once; the messages it
held come back as errors. One that cannot start (its code does not load) fails the pool at
start, and after three attempts in a row later on.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from .calls import Outcome
from .loader import UserCode
from .slots import SlotMemory, Slots, pack_input, unpack_result
from .workerlink import RemoteTraceback, frame, rebuild_error, recv_message, socket_pair

__all__ = ["ParallelError", "ProcessWorkers", "WorkerDied"]

log = logging.getLogger("pipevisor.runner")

_DEPTH = 2  # messages held by one worker: one in the function, the next one ready
_STOP_GRACE = 2.0  # seconds workers get to finish at close before SIGKILL
_REAP_TIMEOUT = 1.0  # after its socket closed, a worker is gone within this
_START_FAILURES = 3  # consecutive workers dead before ready: the pool has failed
_ROOT = str(Path(__file__).resolve().parents[2])  # where ``runners`` imports from


class ParallelError(RuntimeError):
    """The workers cannot run (their code does not load, they die at start); says why."""


class WorkerDied(RuntimeError):
    """A worker process died with the message; the message is counted as an error."""


class _Gone(Exception):
    """The worker died while the runner was sending to it."""


@dataclass(slots=True)
class _Task:
    seq: int
    pulse_id: int
    timestamp: Any
    slot: SlotMemory
    packed: dict[str, Any]
    data: dict[str, Any]  # the received arrays: a result that is a view of one is sent from it


@dataclass(eq=False)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    ready: bool = False
    failure: str | None = None  # its words, when its code would not load
    last_used: int = 0
    in_flight: dict[int, _Task] = field(default_factory=dict)
    slot_versions: dict[int, int] = field(default_factory=dict)


def _dispatch_order(worker: _Worker) -> tuple[int, int]:
    """The fewest messages first; among idle workers the least recently used, among busy ones
    the one whose oldest message is the newest (a worker stuck on a slow message loses)."""
    if not worker.in_flight:
        return (0, worker.last_used)
    return (len(worker.in_flight), -next(iter(worker.in_flight)))


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessWorkers:
    """``workers`` worker processes fed through sockets and shared memory slots."""

    def __init__(
        self, code: UserCode, config: dict[str, Any], workers: int, poller: zmq.Poller
    ) -> None:
        if code.target is None:
            raise ParallelError(f"{code.name} was not loaded from a file or a module")
        self.code = code
        self._target = code.target  # what each worker loads: (script, module or extension, name)
        self.limit = workers * _DEPTH
        self.restarts = 0
        self._poller = poller
        self._config = dict(config)
        self._generation = 0
        self._slots = Slots(self.limit)
        self._orphans: list[Outcome] = []  # outcomes made outside finished()
        self._dispatched = 0
        self._start_failures = 0
        self._starting = True
        self._closed = False
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p
        )}  # fmt: skip
        self._workers = [self._spawn(i) for i in range(workers)]

    # -- lifecycle --------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket_pair()
        kind, target = self._target
        command = [
            sys.executable, "-m", "runners.python.worker", "--fd", str(theirs.fileno()),
            "--parent", str(os.getpid()), "--index", str(index),
            "--log-level", str(logging.getLogger().getEffectiveLevel()), f"--{kind}", target,
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=self._env
            )
        finally:
            theirs.close()
        worker = _Worker(index, proc, ours)
        self._poller.register(ours, zmq.POLLIN)
        self._send(worker, ("config", self._generation, self._config))
        return worker

    def start(self, timeout: float) -> None:
        """Wait until every worker has loaded the code and applied the configuration.

        Raises:
            ParallelError: a worker could not start (its error is in the message), or they
                were not all ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not all(worker.ready for worker in self._workers):
            if time.monotonic() > deadline:
                raise ParallelError(f"worker processes not ready within {timeout:g} s")
            self._orphans.extend(self.finished(0.1))
        self._starting = False

    def close(self) -> None:
        """Stop the workers (SIGKILL after a grace period) and release the shared memory."""
        self._closed = True
        for worker in self._workers:
            if worker.sock.fileno() < 0:  # died and not replaced (the pool failed)
                continue
            self._poller.unregister(worker.sock)
            try:  # the worker ends at this EOF, after the message in hand
                worker.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            worker.sock.close()
        deadline = time.monotonic() + _STOP_GRACE
        for worker in self._workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %d did not stop; killing it", worker.index)
                worker.proc.kill()
                worker.proc.wait()
        self._slots.close()

    # -- messages out -----------------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether a ready worker can take another message."""
        return any(w.ready and len(w.in_flight) < _DEPTH for w in self._workers)

    def submit(
        self,
        seq: int,
        pulse_id: int,
        timestamp: Any,
        data: dict[str, Any],
        parameters: dict[str, Any],
    ) -> None:
        """Send one message to the least busy ready worker (call only when :meth:`has_room`)."""
        worker = min(
            (w for w in self._workers if w.ready and len(w.in_flight) < _DEPTH), key=_dispatch_order
        )
        self._dispatched += 1
        worker.last_used = self._dispatched
        slot = self._slots.acquire()
        try:
            packed, _ = pack_input(slot, data)
            payload = pickle.dumps(
                ("task", seq, pulse_id, timestamp, slot.index, packed), pickle.HIGHEST_PROTOCOL
            )
        except Exception as exc:  # a value that does not pickle: an error of this message
            self._slots.release(slot)
            self._orphans.append(Outcome(seq, pulse_id, timestamp, error=exc))
            return
        worker.in_flight[seq] = _Task(seq, pulse_id, timestamp, slot, packed, data)
        mapping = slot.mapping
        assert mapping is not None
        try:
            if worker.slot_versions.get(slot.index) != mapping.version:
                message = ("slot", slot.index, mapping.version, mapping.capacity)
                self._deliver(worker, pickle.dumps(message), slot.fd)
                worker.slot_versions[slot.index] = mapping.version
            self._deliver(worker, payload)
        except _Gone:
            pass  # its messages, this one included, are errors already
        except OSError:
            self._died(worker, self._orphans)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Send a new configuration to every worker; it applies from their next message."""
        self._config = dict(config)
        self._generation += 1
        for worker in self._workers:
            self._send(worker, ("config", self._generation, self._config))

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        try:
            self._deliver(worker, pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
        except (_Gone, OSError):
            pass  # a dead worker is noticed, and replaced, when its socket reads the end

    def _deliver(self, worker: _Worker, payload: bytes, fd: int | None = None) -> None:
        """Send to a worker; while its socket is full, read what it sends meanwhile.

        The worker sends its results and logs synchronously, so a runner blocked sending to
        it while it is blocked sending to the runner would be a deadlock.

        Raises:
            _Gone: the worker died meanwhile (and has been dealt with).
            OSError: the worker is gone.
        """
        sock = worker.sock
        view = memoryview(frame(payload))
        while view:
            try:
                view = view[sock.send(view, socket.MSG_DONTWAIT) :]
            except BlockingIOError:
                self._wait_writable(worker)
        while fd is not None:
            try:
                socket.send_fds(sock, [b"F"], [fd], socket.MSG_DONTWAIT)
                fd = None
            except BlockingIOError:
                self._wait_writable(worker)

    def _wait_writable(self, worker: _Worker) -> None:
        readable, writable, _ = select.select([worker.sock], [worker.sock], [])
        if readable and not writable and not self._read(worker, self._orphans):
            raise _Gone

    # -- messages in ------------------------------------------------------------------------

    def finished(self, timeout: float = 0.0) -> list[Outcome]:
        """The outcomes that came in, waiting up to ``timeout`` seconds for something.

        Raises:
            ParallelError: workers die before they are ready (see the module's docstring).
        """
        done, self._orphans = self._orphans, []
        by_socket = {worker.sock: worker for worker in self._workers}
        readable, _, _ = select.select(list(by_socket), [], [], 0 if done else timeout)
        for sock in readable:
            self._read(by_socket[sock], done)
        return done

    def _read(self, worker: _Worker, done: list[Outcome]) -> bool:
        """Handle what a readable worker sent; False when it has died (and been dealt with)."""
        sock = worker.sock
        while True:
            try:
                message = recv_message(sock)
                self._handle(worker, message, done)
                if not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    raise EOFError
            except BlockingIOError:
                return True
            except (EOFError, OSError):
                self._died(worker, done)
                return False

    def _handle(self, worker: _Worker, message: tuple[Any, ...], done: list[Outcome]) -> None:
        kind = message[0]
        if kind == "done":
            _, seq, seconds, flagged, packed = message
            task = worker.in_flight.pop(seq)
            assert task.slot.mapping is not None
            result = unpack_result(task.slot.mapping, packed, task.packed, task.data)
            self._slots.release(task.slot)
            done.append(Outcome(seq, task.pulse_id, task.timestamp, result, seconds, flagged))
        elif kind == "error":
            _, seq, seconds, described = message
            task = worker.in_flight.pop(seq)
            self._slots.release(task.slot)
            error = rebuild_error(*described)
            done.append(Outcome(seq, task.pulse_id, task.timestamp, seconds=seconds, error=error))
        elif kind == "log":
            record = logging.makeLogRecord(message[1])
            logging.getLogger(record.name).handle(record)
        elif kind == "ready":
            worker.ready = True
            self._start_failures = 0
        elif kind == "failed":
            worker.failure = message[1]

    def _died(self, worker: _Worker, done: list[Outcome]) -> None:
        """Reap a worker whose socket closed: its messages become errors; start another."""
        self._poller.unregister(worker.sock)
        worker.sock.close()
        try:
            code = worker.proc.wait(_REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            code = worker.proc.wait()
        what = f"worker process {worker.index} (pid {worker.proc.pid}) {_how(code)}"
        for n, task in enumerate(worker.in_flight.values()):
            self._slots.release(task.slot)
            where = "while processing it" if n == 0 else "with it queued"
            error = WorkerDied(f"{what} {where}")
            done.append(Outcome(task.seq, task.pulse_id, task.timestamp, error=error))
        worker.in_flight.clear()
        if self._closed:
            return
        if not worker.ready:
            self._start_failures += 1
            if self._starting or self._start_failures >= _START_FAILURES:
                failure = (worker.failure or "").strip()
                last = f": {failure.splitlines()[-1]}" if failure else ""
                cause = RemoteTraceback(failure) if failure else None
                raise ParallelError(f"{what} before it was ready{last}") from cause
        log.warning("%s; starting a new one", what, extra={"worker": worker.index})
        self.restarts += 1
        self._workers[worker.index] = self._spawn(worker.index)
