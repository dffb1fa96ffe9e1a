"""The loop: receive, call the user's function, send; config and status between messages."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import zmq

from supervisor.contract import ContractEnv, ExitCode, ProgramChannels, SocketMode
from supervisor.contract.bsread import Channel, DecodeError, Decoder, Encoder, Message

from .calls import ERROR_KEY, Outcome, invoke
from .config import ConfigRefused, Configurator
from .gather import PulseGatherer
from .merge import PulseMerger
from .options import RunnerOptions
from .parallel import Parallel, ParallelError, open_parallel
from .sockets import ClientMonitor, bind_output, connect_data
from .stats import RateLimit, Stats

__all__ = ["Runner"]

log = logging.getLogger("pipevisor.runner")

_POLL_MS = 100  # how long the loop may sleep: bounds the reaction to a stop request
_OUTPUT_LINGER_MS = 1000  # at exit, well inside the supervisor's SIGKILL grace
_SOURCE_RESTART = 1.0  # seconds before a source whose generator raised is started again
_DRAIN_MAX = 1000  # input messages taken from ZMQ per processed message, at most


def _jsonable(value: Any) -> Any:
    """numpy numbers and arrays as JSON numbers and lists; anything else as its text."""
    for method in ("tolist", "item"):  # numpy arrays have both: tolist first
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    return str(value)


def _nbytes(frames: list[Any]) -> int:
    return sum(f.nbytes if isinstance(f, memoryview) else len(f) for f in frames)


class Runner:
    """Runs one loaded user function against the contract's sockets until asked to stop.

    Call :meth:`open`, then :meth:`run` (which returns the exit code), then :meth:`close`.
    :meth:`request_stop` is safe to call from a signal handler: it only sets a flag.
    """

    def __init__(
        self,
        env: ContractEnv,
        context: zmq.Context[zmq.Socket[bytes]],
        channels: ProgramChannels,
        configurator: Configurator,
    ) -> None:
        self.env = env
        self.context = context
        self.channels = channels
        self.configurator = configurator
        self.code = configurator.code
        self.options = configurator.options
        self.stats = Stats()
        self.stop_requested = False
        self._data: zmq.Socket[bytes] | None = None
        # The entry's merged streams, or a fan-in's other inputs, after DATA.
        self._extra_inputs: list[zmq.Socket[bytes]] = []
        self._aligner: PulseMerger | PulseGatherer | None = None
        self._output: zmq.Socket[bytes] | None = None
        self._monitor: ClientMonitor | None = None
        self._parallel: Parallel | None = None  # worker threads or processes (``parallel``)
        self._abort: int | None = None  # the exit code when something between messages stops
        self._poller = zmq.Poller()
        # Input messages taken from ZMQ and not yet processed, oldest first (see _receive).
        self._waiting: deque[list[zmq.Frame]] = deque()
        self._decoder = Decoder()
        self._encoder = Encoder(
            self.options.output_compression, self.options.output_header_compression
        )
        self._next_status = 0.0
        self._error_report = RateLimit()
        self._flagged_report = RateLimit()
        self._malformed_report = RateLimit()
        self._report_errors = RateLimit()
        self._last_report: str | None = None  # the last report sent, as JSON

    def request_stop(self) -> None:
        """Ask the loop to finish after the message in hand."""
        self.stop_requested = True

    def open(self) -> None:
        """Bind OUTPUT, connect DATA (not for a source), then tell the supervisor: ``ready``.

        Raises:
            zmq.ZMQError: the output address cannot be bound.
            ParallelError: the worker processes of ``parallel`` cannot start.
        """
        output_url = None
        if self.env.output_url:
            self._output, self._monitor, output_url = bind_output(
                self.context,
                self.env.output_url,
                self.env.output_mode,
                self.options.output_queue_size,
            )
            self._poller.register(self._monitor.socket, zmq.POLLIN)
        if self.env.data_url and self.code.kind != "source":
            self._data = connect_data(
                self.context, self.env.data_url, self.env.data_mode, self.options.queue_size
            )
            self._poller.register(self._data, zmq.POLLIN)
            if self.env.merge or self.env.gather:
                self._open_extra_inputs()
        elif self.env.data_url:
            log.info("a source reads no input: DATA (%s) is not connected", self.env.data_url)
        self._parallel = self._open_parallel(self.options)
        if self.channels.config_socket is not None:
            self._poller.register(self.channels.config_socket, zmq.POLLIN)
        self.channels.ready(output_url)
        self._next_status = time.monotonic() + self.env.status_interval

    def _open_extra_inputs(self) -> None:
        """Connect the merged streams (aligned with DATA's by pulse id) or a fan-in's other
        inputs (read like DATA, put back in pulse-id order)."""
        options = self.options
        gathering = bool(self.env.gather)
        extra = self.env.gather if gathering else self.env.merge
        hwm = options.gather_buffer if gathering else options.merge_buffer
        for stream in extra:
            sock = connect_data(self.context, stream.url, stream.mode, hwm)
            self._extra_inputs.append(sock)
            self._poller.register(sock, zmq.POLLIN)
        if gathering:
            self._aligner = PulseGatherer(
                1 + len(extra), wait=options.gather_wait, capacity=options.gather_buffer
            )
        else:
            self._aligner = PulseMerger(
                1 + len(extra),
                wait=options.merge_wait,
                missing=options.merge_missing,
                capacity=options.merge_buffer,
                primary_required=self.code.kind == "camera",
            )
        log.info(
            "%s %d more stream(s) by pulse id: %s",
            "gathering" if gathering else "merging with DATA",
            len(extra),
            ", ".join(stream.url for stream in extra),
        )

    def run(self) -> int:
        """Loop until stopped (0), a finite source ends (0) or an error aborts (2)."""
        if self.code.kind == "source":
            return self._run_source()
        code = self._run_processor()
        return code if self._abort is None else self._abort

    def close(self) -> None:
        """Stop the workers, close DATA and OUTPUT; the channels belong to the caller."""
        if self._parallel is not None:
            self._parallel.close()
            self._parallel = None
        if self._monitor is not None:
            self._monitor.close()
        if self._data is not None:
            self._data.close(linger=0)
        for sock in self._extra_inputs:
            sock.close(linger=0)
        self._extra_inputs = []
        if self._output is not None:
            # Give a message still on its way a moment to finish: libzmq 4.3.5 aborts the
            # process (session_base.cpp:233) when a socket is torn down with half of a
            # multipart message sent.
            self._output.close(linger=_OUTPUT_LINGER_MS)
        self._data = self._output = self._monitor = None

    # -- the two loops ----------------------------------------------------------------------

    def _run_processor(self) -> int:
        if self._aligner is not None:
            return self._run_aligned(self._aligner)
        data = self._data
        waiting = self._waiting
        while not self.stop_requested:
            events = dict(self._poller.poll(0 if waiting else _POLL_MS))
            if data is not None and (waiting or data in events):
                code = self._receive(data)
                if code is not None:
                    return code
            self._between_messages(events)
        return ExitCode.OK

    def _run_aligned(self, merger: PulseMerger | PulseGatherer) -> int:
        """Receive DATA and the other streams, process pulses in order as the aligner allows."""
        assert self._data is not None
        inputs = [self._data, *self._extra_inputs]
        while not self.stop_requested:
            deadline = merger.next_deadline()
            timeout = _POLL_MS
            if deadline is not None:
                timeout = min(_POLL_MS, max(0, int((deadline - time.monotonic()) * 1000) + 1))
            events = dict(self._poller.poll(timeout))
            for index, sock in enumerate(inputs):
                if sock in events:
                    self._take_into(merger, index, sock)
            for pulse in merger.ready(time.monotonic()):
                code = self._process(pulse.data, pulse.pulse_id, pulse.timestamp)
                if code is not None:
                    return code
            self._between_messages(events)
        return ExitCode.OK

    def _take_into(
        self, merger: PulseMerger | PulseGatherer, index: int, sock: zmq.Socket[bytes]
    ) -> None:
        """Decode what ``sock`` holds (bounded) into the merger as stream ``index``."""
        stats = self.stats
        now = time.monotonic()
        for _ in range(_DRAIN_MAX):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            stats.messages_in += 1
            stats.bytes_in += _nbytes(frames)
            message = self._decode(frames)
            if message is not None:
                merger.add(index, message.pulse_id, message.global_timestamp, message.data, now)

    def _run_source(self) -> int:
        holder: list[Iterator[Any] | None] = [None]
        try:
            return self._source_loop(holder)
        finally:
            # A source holding a device connection (a socket, a CA channel) releases it in its
            # generator's finally: run that now, not whenever the garbage collector gets to it.
            close = getattr(holder[0], "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing the source failed")

    def _source_loop(self, holder: list[Iterator[Any] | None]) -> int:
        """Send what ``generate(parameters)`` yields until it ends or a stop is asked.

        It yields ``(channels, pulse_id, timestamp)`` to send; None while waiting (an idle
        tick); a bsread ``Message`` received from another stream, counted in messages_in and
        bytes_in and sent with each channel's own timestamp, a missing value declared with its
        received type; or the ``DecodeError`` of a malformed message received (which the
        source logs), counted in messages_in, bytes_in (its ``nbytes``) and malformed.
        """
        generate: Callable[[dict[str, Any]], Iterator[Any]] = self.code.function
        frames: Iterator[Any] | None = None
        restart_at = 0.0
        while not self.stop_requested:
            holder[0] = frames
            if frames is None:
                if time.monotonic() < restart_at:
                    self._between_messages(dict(self._poller.poll(_POLL_MS)))
                    continue
                try:
                    frames = holder[0] = iter(generate(self.configurator.parameters))
                except Exception as exc:
                    code = self._processing_error("starting the source failed", exc)
                    if code is not None:
                        return code
                    restart_at = time.monotonic() + _SOURCE_RESTART
                    continue
            self._between_messages(dict(self._poller.poll(0)))
            start = time.perf_counter()
            try:
                item = next(frames)
            except StopIteration:
                log.info("the source has finished")
                return ExitCode.OK
            except Exception as exc:
                frames = None
                code = self._processing_error("the source failed; restarting it", exc)
                if code is not None:
                    return code
                restart_at = time.monotonic() + _SOURCE_RESTART
                continue
            if item is None:  # an idle tick
                continue
            if isinstance(item, DecodeError):  # a malformed message, logged by the source
                self.stats.messages_in += 1
                self.stats.bytes_in += item.nbytes
                self.stats.malformed += 1
                continue
            self.stats.processed(time.perf_counter() - start)
            try:
                if isinstance(item, Message):  # received from a stream: republished as it came
                    self.stats.messages_in += 1
                    self.stats.bytes_in += item.nbytes
                    self.stats.last_pulse_id = item.pulse_id
                    self._send(
                        item.data,
                        item.pulse_id,
                        item.global_timestamp,
                        channel_timestamps=item.timestamps,
                        hints={channel.name: channel for channel in item.channels},
                    )
                    continue
                values, pulse_id, timestamp = item
                self.stats.last_pulse_id = pulse_id
                self._send(values, pulse_id, timestamp)
            except Exception as exc:
                code = self._processing_error("cannot send what the source yielded", exc)
                if code is not None:
                    return code
        return ExitCode.OK

    # -- one message ------------------------------------------------------------------------

    def _receive(self, data: zmq.Socket[bytes]) -> int | None:
        """Process the oldest waiting input message, after taking in what ZMQ holds.

        Messages are processed in order, so a moment's lag (a slow frame, the machine busy
        elsewhere) loses nothing. At most ``queue_size`` wait: when more have come, processing
        is slower than input and the oldest are dropped (counted), so latency stays bounded to
        about ``queue_size`` processing times. ZMQ alone could only drop the newest.
        """
        stats = self.stats
        waiting = self._waiting
        limit = self.options.queue_size
        for _ in range(_DRAIN_MAX):  # bounded: a flood cannot keep the loop from processing
            try:
                frames = data.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            waiting.append(frames)
            stats.messages_in += 1
            stats.bytes_in += _nbytes(frames)
            if len(waiting) > limit:
                waiting.popleft()
                stats.drops += 1
        while len(waiting) > limit:  # queue_size was lowered live
            waiting.popleft()
            stats.drops += 1
        if not waiting:
            return None
        message = self._decode(waiting.popleft())
        if message is None:
            return None
        return self._process(message.data, message.pulse_id, message.global_timestamp)

    def _decode(self, frames: list[zmq.Frame]) -> Message | None:
        """The bsread message, or None for a malformed one (counted, logged rate-limited)."""
        try:
            return self._decoder.decode(frames)
        except DecodeError as exc:
            self.stats.malformed += 1
            if self._malformed_report.due():
                log.warning(
                    "dropped %d malformed input message(s), the last: %s",
                    self._malformed_report.take(),
                    exc,
                    extra={"malformed": self.stats.malformed},
                )
            return None

    def _process(
        self, data: dict[str, Any], pulse_id: int, timestamp: tuple[int, int]
    ) -> int | None:
        parameters = self.configurator.parameters
        if self._parallel is not None:
            return self._parallel.submit(pulse_id, timestamp, data, parameters, self._stopping)
        start = time.perf_counter()
        try:
            result = invoke(self.code, data, pulse_id, timestamp, parameters)
            self.stats.processed(time.perf_counter() - start)
            self.stats.last_pulse_id = pulse_id
            flagged = parameters.get(ERROR_KEY)
            if flagged:
                self._flagged(flagged, pulse_id)
            if result is not None:
                self._send(result, pulse_id, timestamp)
        except Exception as exc:
            return self._processing_error(f"processing pulse {pulse_id} failed", exc)
        return None

    def _flagged(self, error: object, pulse_id: int) -> None:
        """The function went on despite an error it put in ``parameters["processing_error"]``
        (CamServer's ``notify_on_error``): count it and show it, but the stream goes on."""
        self.stats.errors += 1
        self.stats.last_error = str(error)[:2000]
        if self._flagged_report.due():
            count = self._flagged_report.take()
            log.warning(
                "pulse %d sent flagged with processing_error: %s%s",
                pulse_id,
                error,
                f" ({count - 1} more flagged frames since the last report)" if count > 1 else "",
                extra={"errors": self.stats.errors},
            )

    def _send(
        self,
        values: Mapping[str, Any],
        pulse_id: int,
        timestamp: Any,
        *,
        channel_timestamps: Mapping[str, tuple[int, int] | None] | None = None,
        hints: Mapping[str, Channel] | None = None,
    ) -> None:
        if not isinstance(values, Mapping):
            raise TypeError(f"expected a dict of channels, got {type(values).__name__}")
        if self._output is None:
            return
        frames = self._encoder.encode(
            values, pulse_id, timestamp, channel_timestamps=channel_timestamps, hints=hints
        )
        output = self._output
        if (
            self.env.output_mode == SocketMode.PUSH
            and self.options.output_wait > 0
            and self._monitor is not None
            and self._monitor.clients
            and not output.poll(0, zmq.POLLOUT)
        ):
            # A connected consumer is lossless: wait for it (bounded, so config and status
            # still flow). With no consumer nothing waits (CamServer's frozen PUSH pipeline).
            output.poll(int(self.options.output_wait * 1000), zmq.POLLOUT)
        try:
            output.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.stats.output_drops += 1
            return
        self.stats.messages_out += 1
        self.stats.bytes_out += _nbytes(frames)

    def _processing_error(self, what: str, exc: BaseException | None = None) -> int | None:
        self.stats.errors += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:2000] if exc else what
        if self.options.abort_on_error:
            log.error("%s; aborting (abort_on_error)", what, exc_info=exc or True)
            return ExitCode.PROCESSING_ERROR
        if self._error_report.due():
            suppressed = self._error_report.take() - 1
            log.error(
                "%s%s",
                what,
                f" ({suppressed} more errors since the last report)" if suppressed else "",
                exc_info=exc or True,
                extra={"errors": self.stats.errors},
            )
        return None

    # -- between messages -------------------------------------------------------------------

    def _between_messages(self, events: dict[Any, int]) -> None:
        if self._parallel is not None:
            self._stop_with(self._parallel.collect())
        config = self.channels.config_socket
        if config is not None and config in events:
            for update in self.channels.poll_config():
                self._apply(update.seq, update.config)
        if self._monitor is not None and self._monitor.socket in events:
            self._monitor.update()
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.env.status_interval
            self._report()
            self.channels.status(
                **self.stats.interval_fields(),
                log_drops=self.channels.log_drops,
                clients=None if self._monitor is None else self._monitor.clients,
                counters=self._counters(),
            )

    def _report(self) -> None:
        """Send the user code's ``report(parameters)`` when it changed (a JSON object)."""
        if self.code.report is None:
            return
        try:
            report = self.code.report(self.configurator.parameters)
            if report is None:
                return
            if not isinstance(report, Mapping):
                raise TypeError(f"report() must return a dict, got {type(report).__name__}")
            text = json.dumps(report, sort_keys=True, default=_jsonable)
            if text != self._last_report:
                self.channels.report(json.loads(text))
                self._last_report = text
        except Exception:
            if self._report_errors.due():
                log.exception("report() failed (%d times)", self._report_errors.take())

    def _apply(self, seq: int, config: dict[str, Any]) -> None:
        old = self.options
        if self._parallel is not None:  # worker threads must not see the dict half updated
            self._stop_with(self._parallel.quiesce())
        try:
            new = self.configurator.apply(config)
        except ConfigRefused as exc:
            log.warning("configuration %d refused: %s", seq, exc)
            self.channels.error(seq, str(exc))
            return
        self.options = new
        if (new.output_compression, new.output_header_compression) != (
            old.output_compression,
            old.output_header_compression,
        ):
            self._encoder = Encoder(new.output_compression, new.output_header_compression)
        url = self.env.data_url  # never None while there is a DATA socket
        if self._data is not None and url is not None and new.queue_size != old.queue_size:
            # A new HWM only applies to new connections: reconnect (what is queued is stale).
            self._data.setsockopt(zmq.RCVHWM, new.queue_size)
            self._data.disconnect(url)
            self._data.connect(url)
        aligner = self._aligner  # new settings take effect from the next pulse
        if isinstance(aligner, PulseMerger):
            aligner.wait = new.merge_wait
            aligner.missing_policy = new.merge_missing
            aligner.capacity = new.merge_buffer
        elif isinstance(aligner, PulseGatherer):
            aligner.wait = new.gather_wait
            aligner.capacity = new.gather_buffer
        if self._output is not None and new.output_queue_size != old.output_queue_size:
            self._output.setsockopt(zmq.SNDHWM, new.output_queue_size)  # for new clients
        failure = self._apply_parallel(old, new)
        if failure is not None:
            self.channels.error(seq, failure)
            return
        self.channels.ack(seq)
        self._report()  # what the new config changed, without waiting for the next status

    # -- parallel processing (``parallel``: see parallel.py) --------------------------------

    def _open_parallel(self, options: RunnerOptions) -> Parallel | None:
        return open_parallel(
            options,
            self.code,
            self.configurator.config,
            stats=self.stats,
            emit=self._emit,
            poller=self._poller,
        )

    def _apply_parallel(self, old: RunnerOptions, new: RunnerOptions) -> str | None:
        """Pass a configuration on to the workers, or restart them for a new ``parallel`` or
        ``workers`` (the messages in flight finish first); returns why that failed."""
        running = self._parallel
        if (new.parallel, new.workers) == (old.parallel, old.workers):
            if running is not None:
                running.reconfigure(self.configurator.config)
                running.set_reorder_buffer(new.reorder_buffer or 2 * new.workers + 2)
            return None
        if running is not None:
            self._stop_with(running.drain())
            running.close()
            self._parallel = None
        try:
            self._parallel = self._open_parallel(new)
        except ParallelError as exc:
            log.error(
                "cannot start the workers of parallel=%s: %s", new.parallel, exc, exc_info=exc
            )
            self._stop_with(ExitCode.FAILURE)
            return f"cannot start the workers of parallel={new.parallel}: {exc}"
        return None

    def _emit(self, outcome: Outcome) -> int | None:
        """Count and send what came of a message in a worker, as :meth:`_process` does."""
        pulse_id = outcome.pulse_id
        what = f"processing pulse {pulse_id} failed"
        if outcome.error is not None:
            return self._processing_error(what, outcome.error)
        self.stats.processed(outcome.seconds)
        self.stats.last_pulse_id = pulse_id
        if outcome.flagged:
            self._flagged(outcome.flagged, pulse_id)
        if outcome.result is not None:
            try:
                self._send(outcome.result, pulse_id, outcome.timestamp)
            except Exception as exc:
                return self._processing_error(what, exc)
        return None

    def _counters(self) -> dict[str, float]:
        counters = {} if self._aligner is None else self._aligner.counters()
        if self._parallel is not None:
            counters.update(self._parallel.counters())
        return counters

    def _stopping(self) -> bool:
        return self.stop_requested

    def _stop_with(self, code: int | None) -> None:
        """Stop the loop with exit code ``code`` (None: carry on)."""
        if code is not None and self._abort is None:
            self._abort = code
            self.stop_requested = True
