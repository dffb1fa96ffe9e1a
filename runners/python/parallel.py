"""Parallel processing in the runner: several messages in the function at once, output in order.

The runner's option ``parallel`` picks the workers: ``threads`` (:mod:`.threadpool`) or
``processes`` (:mod:`.procpool`); the user's function does not change. :class:`Parallel` sits
between the loop and the workers:

- it numbers messages as they come (``seq``) and sends their results in that order, which is
  pulse-id order for a well-formed stream. The order is the input's, not a sort by pulse id: a
  source whose pulse ids go back (a restarted camera) comes out as it went in;
- it bounds what is in flight (``2 * workers``): when the workers are all busy, the loop waits
  for one, and input piles up in its queue, where the oldest is dropped (``queue_size``);
- it bounds what waits for an earlier message (``reorder_buffer``): when more results than that
  wait, the earlier message is given up, counted in ``drops`` and logged (rate-limited), and
  its result is discarded when it comes;
- an error raised in a worker is reported at once, as the loop reports one (counted, logged
  with its traceback, or the end of the runner with ``abort_on_error``).

:class:`ReorderBuffer` is the ordering alone, without workers, clocks or sockets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from supervisor.contract import ExitCode

from .calls import Outcome
from .loader import UserCode
from .options import RunnerOptions
from .procpool import ParallelError, ProcessWorkers
from .stats import RateLimit, Stats
from .threadpool import ThreadWorkers

__all__ = ["Parallel", "ParallelError", "ReorderBuffer", "open_parallel"]

log = logging.getLogger("pipevisor.runner")

_START_TIMEOUT = 60.0  # worker processes loading the code (a first compile included)
_DRAIN_TIMEOUT = 5.0  # before a configuration or a restart of the workers
_WAIT_SLICE = 0.1  # a wait for a worker checks the stop flag this often


class ReorderBuffer:
    """Releases finished messages in the order they were expected, holding at most ``capacity``.

    :meth:`expect` each message as it is submitted (increasing ``seq``), :meth:`finish` it when
    its outcome comes (None: nothing to send), and take what is releasable from :meth:`ready`.
    When more than ``capacity`` finished messages wait behind an unfinished one, that one is
    given up (``given_up`` counts them) and its outcome discarded by :meth:`finish`.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.given_up = 0
        self._expected: dict[int, Any] = {}  # seq -> outcome, or _PENDING; in seq order
        self._held = 0  # finished entries in _expected
        self._abandoned: set[int] = set()  # given up, outcome not in yet

    def expect(self, seq: int) -> None:
        """A message was submitted."""
        self._expected[seq] = _PENDING

    def finish(self, seq: int, item: Any) -> bool:
        """A message's outcome came; False when it was given up (it is dropped)."""
        if seq in self._abandoned:
            self._abandoned.discard(seq)
            return False
        if self._expected.get(seq, None) is not _PENDING:
            raise KeyError(f"message {seq} was not expected, or finished twice")
        self._expected[seq] = item
        self._held += 1
        return True

    def ready(self) -> Iterator[Any]:
        """The outcomes now releasable, in order (None entries are skipped)."""
        expected = self._expected
        while expected:
            seq = next(iter(expected))
            item = expected[seq]
            if item is _PENDING:
                if self._held <= self.capacity:
                    return
                self._abandoned.add(seq)
                self.given_up += 1
            else:
                self._held -= 1
            del expected[seq]
            if item is not _PENDING and item is not None:
                yield item

    def give_up_all(self) -> int:
        """Give up every message still pending (the workers are going away); returns how many."""
        pending = [seq for seq, item in self._expected.items() if item is _PENDING]
        for seq in pending:
            del self._expected[seq]
        self._abandoned.update(pending)
        self.given_up += len(pending)
        return len(pending)

    @property
    def pending(self) -> int:
        """Messages submitted and not released (finished ones waiting included)."""
        return len(self._expected)


_PENDING = object()

Emit = Callable[[Outcome], "int | None"]


class Parallel:
    """The loop's side of the workers: submit in order, collect in order, with bounds.

    Args:
        workers: the thread or process workers.
        reorder_buffer: results held at most behind an unfinished message.
        stats: the runner's counters (given-up messages are counted in ``drops``).
        emit: counts and sends one outcome, as the loop does; returns an exit code to stop.
    """

    def __init__(
        self,
        workers: ThreadWorkers | ProcessWorkers,
        mode: str,
        count: int,
        reorder_buffer: int,
        stats: Stats,
        emit: Emit,
    ) -> None:
        self.workers = workers
        self.mode = mode
        self.count = count
        self.stats = stats
        self._emit = emit
        self._reorder = ReorderBuffer(reorder_buffer)
        self._seq = 0
        self._reported_given_up = 0
        self._late_report = RateLimit()

    def set_reorder_buffer(self, capacity: int) -> None:
        """Change the reorder buffer's capacity (a live configuration)."""
        self._reorder.capacity = capacity

    def submit(
        self,
        pulse_id: int,
        timestamp: Any,
        data: dict[str, Any],
        parameters: dict[str, Any],
        stopping: Callable[[], bool],
    ) -> int | None:
        """Hand one message to the workers, first waiting for room (sending what finishes).

        Returns an exit code when an outcome asks the runner to stop (``abort_on_error``) or
        the workers have failed; None otherwise, also when ``stopping()`` drops the message.
        """
        workers = self.workers
        while not workers.has_room():
            if stopping():
                return None
            code = self._take(_WAIT_SLICE)
            if code is not None:
                return code
        seq = self._seq
        self._seq += 1
        self._reorder.expect(seq)
        try:
            workers.submit(seq, pulse_id, timestamp, data, parameters)
        except ParallelError as exc:
            return self._failed(exc)
        return None

    def collect(self) -> int | None:
        """Send what has finished, in order; returns an exit code to stop, else None."""
        return self._take(0.0)

    def drain(self, timeout: float = _DRAIN_TIMEOUT) -> int | None:
        """Wait until nothing is in flight (sending it), or give up what is left at ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._reorder.pending and (left := deadline - time.monotonic()) > 0:
            code = self._take(min(left, _WAIT_SLICE))
            if code is not None:
                return code
        if self._reorder.give_up_all():
            self._count_given_up()
        return None

    def quiesce(self) -> int | None:
        """Before a configuration: threads share the live parameters, so let them finish."""
        if isinstance(self.workers, ThreadWorkers):
            return self.drain()
        return None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Pass an accepted configuration on (worker processes apply it, in order)."""
        self.workers.reconfigure(config)

    def close(self) -> None:
        """Stop the workers; what is in flight is lost (as the loop's waiting queue is)."""
        self.workers.close()

    def counters(self) -> dict[str, float]:
        """Gauges and totals for the status' ``counters``."""
        return {
            "parallel_workers": float(self.count),
            "parallel_given_up": float(self._reorder.given_up),
            "parallel_worker_restarts": float(self.workers.restarts),
            "parallel_pending": float(self._reorder.pending),
        }

    def _take(self, timeout: float) -> int | None:
        try:
            outcomes = self.workers.finished(timeout)
        except ParallelError as exc:
            return self._failed(exc)
        reorder = self._reorder
        for outcome in outcomes:
            if outcome.error is None:
                reorder.finish(outcome.seq, outcome)  # False: given up, counted then
                continue
            reorder.finish(outcome.seq, None)
            code = self._emit(outcome)  # errors are reported at once, late or not
            if code is not None:
                return code
        for outcome in reorder.ready():
            code = self._emit(outcome)
            if code is not None:
                return code
        if reorder.given_up != self._reported_given_up:
            self._count_given_up()
        return None

    def _count_given_up(self) -> None:
        new = self._reorder.given_up - self._reported_given_up
        self._reported_given_up = self._reorder.given_up
        self.stats.drops += new
        for _ in range(new):
            if self._late_report.due():
                log.warning(
                    "gave up %d message(s) still processing behind %d finished ones "
                    "(reorder_buffer); their results will be dropped",
                    self._late_report.take(),
                    self._reorder.capacity,
                    extra={"given_up": self._reorder.given_up},
                )

    def _failed(self, exc: ParallelError) -> int:
        log.error("the %s workers failed: %s", self.mode, exc, exc_info=exc)
        return ExitCode.FAILURE


def open_parallel(
    options: RunnerOptions,
    code: UserCode,
    config: dict[str, Any],
    *,
    stats: Stats,
    emit: Emit,
    poller: zmq.Poller,
) -> Parallel | None:
    """Start the workers ``options`` ask for (None for ``parallel: none`` and for sources).

    Raises:
        ParallelError: worker processes could not start (their error is in the message).
    """
    if options.parallel == "none":
        return None
    if code.kind == "source":
        log.info("parallel=%s does not apply to a source: it runs alone", options.parallel)
        return None
    limit = 2 * options.workers
    workers: ThreadWorkers | ProcessWorkers
    if options.parallel == "threads":
        workers = ThreadWorkers(code, options.workers, limit, poller)
    else:
        workers = ProcessWorkers(code, config, options.workers, poller)
        try:
            workers.start(_START_TIMEOUT)
        except BaseException:
            workers.close()
            raise
    reorder = options.reorder_buffer or 2 * options.workers + 2
    log.info("processing in %d %s, in input order", options.workers, options.parallel)
    return Parallel(workers, options.parallel, options.workers, reorder, stats, emit)
