"""One instance: a named program with a config, its runs, its restart policy and its state.

All methods run on the supervisor's event loop. Process exits arrive through ``handle_exit`` (called
by the loop the moment the process ends); the decision to restart, back off or give up is taken
there, so a crash is answered in microseconds, not at the next tick of a polling loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from .configwait import PendingConfigs
from .contract import ConfigUpdate
from .contract.messages import ConfigAck, ConfigError, Hello, Ready, Report, Status
from .instance_hooks import InstanceHooks
from .instance_view import instance_info, next_stats, without_rates
from .instance_watch import check_stall, heartbeat_due
from .nodeapi.errors import ConflictError, InvalidConfigError
from .nodeapi.models import (
    ConfigResult,
    InstanceInfo,
    InstanceState,
    InstanceStats,
    LogStats,
    ResourceStats,
)
from .nodeapi.specs import EntrySpec
from .process import ExitStatus, ProgramProcess, describe_exit
from .restart import decide

__all__ = ["Instance"]

_LAST_ERROR_CHARS = 4000  # of a program's last error kept for the reason (a compiler's output)

log = structlog.get_logger(__name__)


class Instance:
    """State machine of one instance (see ``InstanceState``)."""

    def __init__(
        self, name: str, entry: str, spec: EntrySpec, config: dict[str, Any], hooks: InstanceHooks
    ) -> None:
        self.name = name
        self.entry = entry
        self.spec = spec
        self.config = config
        self.config_seq = 0
        self.config_pending_restart = False
        self.hooks = hooks
        self.state = InstanceState.STOPPED
        self.desired = "stopped"
        self.reason = "created"
        self.process: ProgramProcess | None = None
        self.run = 0
        self.restarts = 0
        self.crash_count = 0
        self.exit_status: ExitStatus | None = None
        self.last_error: str | None = None  # the current run's last logged error
        self.resources = ResourceStats()  # the process tree, sampled by the node's monitor
        self.stalled = False
        self.stall_restart: asyncio.Task[None] | None = None
        self.unresponsive = False  # the run's status heartbeat went silent
        self.failing: str | None = None  # why the node is ending the current run (fail_run)
        self._failing_quick = False  # that run never got going: it counts as a quick exit
        self._ending: asyncio.Task[tuple[ExitStatus, bool]] | None = None
        self.on_demand = False  # created for a client or a reader (see check_idle)
        self.permanent = False  # starts with the supervisor, always runs
        self.deleted = False  # set first by a delete: never spawned again
        # The node's start, stop, restart and delete of this instance, one at a time.
        self.lifecycle = asyncio.Lock()
        self.idle_since: float | None = None
        self.idle_stop: asyncio.Task[None] | None = None
        self.next_start_at: float | None = None
        self.ready = False
        self.speaks_contract = False
        self.routing_id: bytes | None = None
        self.stats = InstanceStats()
        self.output_port: int | None = None
        self.stream_url: str | None = None
        self.output_url: str | None = None
        self.data_url: str | None = None
        self.merge_urls: list[str] = []
        self.gather_urls: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None  # start_timeout
        self.heartbeat: asyncio.TimerHandle | None = None  # see instance_watch.heartbeat_due
        self._pending = PendingConfigs()
        self.log = log.bind(instance=name)
        self._json: bytes = b""
        self.report: dict[str, Any] = {}  # the program's last Report
        self._json_key: tuple[Any, ...] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Any change of the instance invalidates its cached JSON (listing 200 instances must stay
        # cheap: most of them have not changed since the last listing).
        object.__setattr__(self, name, value)
        if name[:5] != "_json":
            object.__setattr__(self, "_json_key", None)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Steer towards running: spawn now (a manual start also clears a crash loop)."""
        self.desired = "running"
        self.crash_count = 0
        self.hooks.changed(self)
        if self.process is not None:
            return  # running, or stopping: handle_exit starts it again since desired is running
        self._cancel_timer()
        self._spawn()

    async def stop(self) -> None:
        """Steer towards stopped: SIGTERM the group, SIGKILL after the grace period."""
        self.desired = "stopped"
        self.hooks.changed(self)
        self._cancel_timer()
        self._cancel_watch()
        process = self.process
        if process is None:
            if self.state in (
                InstanceState.BACKOFF,
                InstanceState.STARTING,
                InstanceState.RUNNING,
                InstanceState.FAILED,
            ):
                self._set(InstanceState.STOPPED, "stopped on request")
            return
        grace = self.spec.restart.stop_grace
        if self.state != InstanceState.STOPPING:
            self._set(InstanceState.STOPPING, f"SIGTERM sent, SIGKILL after {grace:g} s")
        _, killed = await process.terminate(grace)
        if killed and self.process is None and self.state == InstanceState.STOPPED:
            self.reason = f"stopped on request: killed after {grace:g} s grace"

    async def restart(self) -> None:
        """Stop (gracefully) and start again."""
        await self.stop()
        self.restarts += 1
        self.start()

    def note_error(self, run: int, message: str) -> None:
        """The program logged an error: kept, to say why if this run fails."""
        if run == self.run:
            self.last_error = message[:_LAST_ERROR_CHARS]

    def _spawn(self) -> None:
        if self.deleted:  # a start, an exit or a backoff that raced the delete
            self.log.info("instance_spawn_refused", reason="deleted")
            return
        self.run += 1
        self.last_error = None
        self.resources = ResourceStats()
        self.stalled = False
        self.unresponsive = False
        self.failing = None
        self._failing_quick = False
        self._cancel_watch()
        self.idle_since = None
        self.ready = False
        self.speaks_contract = False
        self.routing_id = None
        self.stats = InstanceStats()
        self.next_start_at = None
        try:
            process = self.hooks.launch(self)
        except Exception as exc:  # a bad entry, no free port, exec failure: data, not a crash
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self._set(InstanceState.FAILED, f"could not start: {message}")
            self.hooks.record(self, "error", self.reason)
            return
        self.process = process
        self.config_pending_restart = False
        self._set(InstanceState.STARTING, f"started pid {process.pid}")
        self.hooks.record(self, "info", f"run {self.run} started: pid {process.pid}")
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.hooks.start_seconds, self._promote, self.run)
        if self.spec.start_timeout > 0:
            self._deadline = loop.call_later(
                self.spec.start_timeout, self._start_deadline, self.run
            )

    def _promote(self, run: int) -> None:
        # Only a program that does not speak the contract: one that said hello says ready too.
        self._timer = None
        if run == self.run and self.state == InstanceState.STARTING and not self.speaks_contract:
            self._set(
                InstanceState.RUNNING,
                self.reason if self.ready else "running (no ready message yet)",
            )

    def _start_deadline(self, run: int) -> None:
        self._deadline = None
        if run == self.run and self.speaks_contract and not self.ready:
            timeout = self.spec.start_timeout
            self.fail_run(f"no ready message within {timeout:g} s of its start", quick=True)

    def fail_run(self, why: str, *, quick: bool = False) -> None:
        """End the current run as a failure the node saw (no ready, a silent heartbeat): SIGTERM,
        SIGKILL after the grace period; ``handle_exit`` then restarts it or not per the restart
        policy, with ``why`` in the reason. ``quick``: the run never got going, so however long
        it lived it counts as a quick exit (backoff, crash loop)."""
        process = self.process
        if process is None or self.failing is not None or self.desired != "running":
            return
        self.failing = why
        self._failing_quick = quick
        self._cancel_watch()
        grace = self.spec.restart.stop_grace
        self.reason = f"{why}: SIGTERM sent, SIGKILL after {grace:g} s"
        self.log.warning("instance_run_failed", why=why, run=self.run)
        self.hooks.record(self, "warning", f"{why}: stopping run {self.run}")
        self._ending = asyncio.get_running_loop().create_task(process.terminate(grace))

    def handle_exit(self, process: ProgramProcess, status: ExitStatus) -> None:
        """Called by the loop the moment a run ended: restart, back off, or give up."""
        if process is not self.process:
            return
        self.process = None
        self.exit_status = status
        self.hooks.exited(self, process)
        self._cancel_timer()
        self._cancel_watch()
        self._pending.fail_all("the program exited")
        self.unresponsive = False
        self.stats = without_rates(self.stats)  # the counters stay, the rates are over
        what = describe_exit(status)
        failed = not status.success or self.failing is not None
        if self.failing is not None:
            what = f"{self.failing} ({what})"
        self.hooks.record(self, "warning" if failed else "info", f"run {self.run} {what}")
        if self.state == InstanceState.STOPPING or self.desired == "stopped":
            self._set(InstanceState.STOPPED, f"stopped on request ({what})")
            if self.desired == "running":  # start() was called while it was stopping
                self._spawn()
            return
        policy = self.spec.restart
        decision = decide(policy, failed, process.runtime, self._failing_quick, self.crash_count)
        self.crash_count = decision.crash_count
        if decision.crash_loop:
            self._set(
                InstanceState.FAILED,
                f"crash loop: {self.crash_count} exits in a row within {policy.stable_after:g} s "
                f"of their start, the last {what}; not restarted (start it to try again)",
            )
            self.hooks.record(self, "error", self.reason)
            return
        if not decision.again:
            if not failed:
                self.desired = "stopped"
                self.hooks.changed(self)
                self._set(InstanceState.STOPPED, f"finished: {what}")
            else:
                self._set(InstanceState.FAILED, f"{what}; restart policy is {policy.mode}")
            return
        delay = decision.delay
        self.restarts += 1
        if delay <= 0:
            failing = self.failing
            self._spawn()
            if failing is not None and self.state == InstanceState.STARTING:
                self.reason = f"{self.reason}; restarted: {what}"  # say why, not just the pid
            return
        self.next_start_at = time.time() + delay
        self._set(InstanceState.BACKOFF, f"{what}; restarting in {delay:.3g} s")
        self._timer = asyncio.get_running_loop().call_later(delay, self._backoff_done)

    def _backoff_done(self) -> None:
        self._timer = None
        if self.desired == "running" and self.process is None:
            self._spawn()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_watch(self) -> None:
        """The current run's start deadline and heartbeat check."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    def _set(self, state: InstanceState, reason: str) -> None:
        if state != self.state:
            self.log.info("instance_state", state=str(state), reason=reason, run=self.run)
        self.state = state
        self.reason = reason

    # -- config channel ----------------------------------------------------------------------

    def on_message(
        self, routing_id: bytes, message: Hello | Ready | Status | ConfigAck | ConfigError | Report
    ) -> None:
        """A CONFIG message of the current run."""
        if isinstance(message, Hello):
            self.speaks_contract = True
            self.routing_id = routing_id
            if self.state == InstanceState.RUNNING and not self.ready:  # promoted before hello
                self._set(InstanceState.STARTING, "said hello: waiting for its ready message")
            self.config_pending_restart = False
            self.hooks.send_config(
                routing_id, ConfigUpdate(seq=self.config_seq, config=self.config)
            )
        elif isinstance(message, Ready):
            self.ready = True
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            # RUNNING too: the start timer may have promoted it first (a slow first configure)
            if self.state in (InstanceState.STARTING, InstanceState.RUNNING) and not self.failing:
                self._cancel_timer()
                self._set(InstanceState.RUNNING, "ready")
        elif isinstance(message, Report):
            self.report = message.report  # kept across runs until the next one replaces it
        elif isinstance(message, Status):
            self._update_stats(message)
        elif isinstance(message, ConfigAck):
            self._pending.answer(message.seq, None)
        elif isinstance(message, ConfigError):
            self._pending.answer(message.seq, message.message)

    def _update_stats(self, status: Status) -> None:
        now = time.time()
        silent = now - self.stats.updated if self.stats.updated is not None else 0.0
        self.stats = next_stats(self.stats, status, now)
        if self.unresponsive:
            self.unresponsive = False
            message = f"responds again: a status after {silent:.1f} s of silence"
            if self.failing is None:
                self.reason = message
            self.hooks.record(self, "info", message)
        if self.heartbeat is None:
            heartbeat_due(self, self.run)
        check_stall(self, now)

    async def apply_config(self, config: dict[str, Any]) -> ConfigResult:
        """Make ``config`` current: live if the program speaks CONFIG, else at the next start."""
        if self.state == InstanceState.STOPPING:
            raise ConflictError(f"instance '{self.name}' is stopping; change its config afterwards")
        seq = self.config_seq + 1
        if self.process is not None and self.routing_id is not None:
            routing_id, update = self.routing_id, ConfigUpdate(seq=seq, config=config)
            error = await self._pending.send(
                seq,
                lambda: self.hooks.send_config(routing_id, update),
                self.hooks.config_timeout,
                self.name,
            )
            if error is not None:
                raise InvalidConfigError(f"instance '{self.name}' refused the config: {error}")
            applied = "live"
        elif self.process is not None:
            applied = "next_restart"
            self.config_pending_restart = True
        else:
            applied = "next_start"
        self.config = config
        self.config_seq = seq
        self.hooks.changed(self)
        self.log.info("instance_config", seq=seq, applied=applied)
        return ConfigResult(name=self.name, config=config, seq=seq, applied=applied)

    # -- view --------------------------------------------------------------------------------

    def info_json(self, logs: tuple[int, int, int, int]) -> bytes:
        """``info()`` with the log counters (received, stored, dropped, evicted) as JSON,
        re-rendered only when something changed."""
        key = logs
        if self._json_key != key:
            info = self.info()
            info.logs = LogStats.model_construct(
                received=key[0], stored=key[1], dropped=key[2], evicted=key[3]
            )
            self._json = info.__pydantic_serializer__.to_json(info)
            self._json_key = key
        return self._json

    def info(self) -> InstanceInfo:
        """A snapshot for the API (see ``supervisor.instance_view``)."""
        return instance_info(self)
