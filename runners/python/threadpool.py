"""Worker threads: the function is called on several messages at once in this process.

This helps code that waits (I/O) or releases the GIL (numpy on big arrays, numba, C kernels).
The threads share the runner's live ``parameters`` dict, as the loop's single call does; the
runner lets the messages in flight finish before it applies a configuration, so a call never
sees the dict half updated. Finished messages are queued and a byte on a pipe wakes the loop.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
from collections import deque
from typing import Any

import zmq

from .calls import Outcome, run
from .loader import UserCode

__all__ = ["ThreadWorkers"]

log = logging.getLogger("pipevisor.runner")

_Task = tuple[int, int, Any, dict[str, Any], dict[str, Any]]
_JOIN_TIMEOUT = 2.0  # at close; a thread stuck in the function is left (it is a daemon)


class ThreadWorkers:
    """``workers`` threads taking messages from one queue, at most ``limit`` in flight."""

    def __init__(self, code: UserCode, workers: int, limit: int, poller: zmq.Poller) -> None:
        self.code = code
        self.workers = workers
        self.limit = limit
        self.in_flight = 0
        self.restarts = 0  # threads are not replaced: an exception is an outcome
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._done: deque[Outcome] = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = poller
        poller.register(self._wake_r, zmq.POLLIN)
        self._threads = [
            threading.Thread(target=self._work, name=f"pipevisor-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def start(self, timeout: float) -> None:
        """Threads are ready at once."""

    def has_room(self) -> bool:
        """Whether another message may be submitted."""
        return self.in_flight < self.limit

    def submit(
        self,
        seq: int,
        pulse_id: int,
        timestamp: Any,
        data: dict[str, Any],
        parameters: dict[str, Any],
    ) -> None:
        """Queue one message for the next free thread."""
        self.in_flight += 1
        self._tasks.put((seq, pulse_id, timestamp, data, parameters))

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Nothing to do: the threads read the live parameters."""

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            seq, pulse_id, timestamp, data, parameters = task
            self._done.append(run(self.code, seq, pulse_id, timestamp, data, parameters))
            del task, data
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups already
                pass

    def finished(self, timeout: float = 0.0) -> list[Outcome]:
        """The outcomes that came in, waiting up to ``timeout`` seconds for a first one."""
        if not self._done and timeout > 0:
            deadline = time.monotonic() + timeout
            while not self._done and (left := deadline - time.monotonic()) > 0:
                select.select([self._wake_r], [], [], left)
                self._clear_wakeups()
        self._clear_wakeups()
        done = []
        while self._done:
            done.append(self._done.popleft())
        self.in_flight -= len(done)
        return done

    def _clear_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Stop the threads after the message each has in hand; close the pipe."""
        for _ in self._threads:
            self._tasks.put(None)
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._poller.unregister(self._wake_r)
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:  # it may still write its wake-up: keep the pipe, never a reused descriptor
            log.warning("worker thread(s) %s still in the function; left behind", stuck)
            return
        os.close(self._wake_r)
        os.close(self._wake_w)
