"""The instance state machine with real short-lived processes and injected hooks."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor.contract import ConfigAck, ConfigError, Hello, Ready, Report, Status
from supervisor.instance import Instance
from supervisor.instance_hooks import InstanceHooks
from supervisor.instance_watch import check_idle, check_stall
from supervisor.nodeapi.models import InstanceState
from supervisor.nodeapi.specs import EntrySpec, RestartPolicy
from supervisor.process import ProgramProcess
from tests.support import run, wait_until


class _Node:
    """Plays the supervisor: spawns /bin/sh with a script, records what the instance reports."""

    def __init__(self, script: str, cwd: Path) -> None:
        self.script = script
        self.cwd = cwd
        self.records: list[tuple[str, str]] = []
        self.sent: list = []
        self.saved = 0

    def hooks(self, **kw) -> InstanceHooks:
        return InstanceHooks(
            launch=self.launch,
            record=lambda _i, level, msg: self.records.append((level, msg)),
            changed=lambda _i: setattr(self, "saved", self.saved + 1),
            send_config=lambda rid, update: self.sent.append((rid, update)),
            exited=lambda _i, p: (os.close(p.stdout_fd), os.close(p.stderr_fd)),
            **kw,
        )

    def launch(self, instance: Instance) -> ProgramProcess:
        return ProgramProcess(
            ["/bin/sh", "-c", self.script], dict(os.environ), self.cwd, instance.handle_exit
        )


def _instance(node: _Node, **policy) -> Instance:
    spec = EntrySpec(program="x.sh", restart=RestartPolicy(**policy))
    return Instance("demo", "x", spec, {"gain": 1}, node.hooks(start_seconds=0.2, config_timeout=1))


def test_quick_exits_back_off_exponentially_until_the_crash_loop_limit(tmp_path):
    """Delays 0, 0.01, 0.02, 0.04 s, then failed with the reason and the last exit code."""
    node = _Node("exit 5", tmp_path)

    async def main():
        instance = _instance(node, backoff_initial=0.01, max_restarts=4, stable_after=60)
        reasons = []
        instance.start()
        while instance.state != InstanceState.FAILED:
            if instance.state == InstanceState.BACKOFF and instance.reason not in reasons:
                reasons.append(instance.reason)
            await asyncio.sleep(0.001)
        return instance, reasons

    with capture_logs() as events:
        instance, reasons = run(main())
    assert reasons == [f"exited with code 5; restarting in {d} s" for d in ("0.01", "0.02", "0.04")]
    assert instance.run == 5
    assert instance.restarts == 4
    assert instance.reason.startswith("crash loop: 5 exits in a row")
    assert instance.info().exit_code == 5
    states = [e["state"] for e in events if e["event"] == "instance_state"]
    assert states[-1] == "failed"


def test_stop_during_backoff_cancels_the_restart(tmp_path):
    """A stop while waiting to restart leaves the instance stopped, not restarted later."""
    node = _Node("exit 1", tmp_path)

    async def main():
        instance = _instance(node, backoff_initial=0.2, stable_after=60)
        instance.start()
        await wait_until(lambda: instance.state == InstanceState.BACKOFF)
        await instance.stop()
        stopped_run = instance.run
        await asyncio.sleep(0.4)  # longer than the backoff: nothing may start
        return instance, stopped_run

    instance, stopped_run = run(main())
    assert instance.state == InstanceState.STOPPED
    assert instance.run == stopped_run
    assert instance.desired == "stopped"


def test_hello_gets_the_config_and_ready_means_running(tmp_path):
    """The answer to hello is the current config; Ready promotes starting to running."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _instance(node)
        instance.start()
        assert instance.state == InstanceState.STARTING
        instance.on_message(b"rid", Hello(instance="demo", run=1, pid=1))
        instance.on_message(b"rid", Ready(instance="demo", run=1))
        state = instance.state
        await instance.stop()
        return instance, state

    _, state = run(main())
    assert state == InstanceState.RUNNING
    assert node.sent[0][0] == b"rid"
    assert node.sent[0][1].config == {"gain": 1}


def test_a_ready_after_the_start_timer_replaces_the_no_ready_reason(tmp_path):
    """A program slow to get ready (a first compile) is promoted by the timer, then says ready."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _instance(node)
        instance.start()
        await wait_until(lambda: instance.state == InstanceState.RUNNING)
        before = instance.reason
        instance.on_message(b"rid", Ready(instance="demo", run=1))
        after = (instance.state, instance.reason)
        await instance.stop()
        return before, after

    before, after = run(main())
    assert before == "running (no ready message yet)"
    assert after == (InstanceState.RUNNING, "ready")


def test_a_failed_run_s_reason_quotes_the_last_error_it_logged(tmp_path):
    """The last error record of the run joins the reason once the run has failed, even when it
    arrives after the exit; one of an earlier run, or of a run that succeeded, does not."""
    node = _Node("exit 4", tmp_path)

    async def main():
        instance = _instance(node, mode="never")
        instance.start()
        instance.note_error(0, "an earlier run's error")
        await wait_until(lambda: instance.state == InstanceState.FAILED)
        before = instance.info().reason
        instance.note_error(1, "cannot compile x.c:\nx.c:3:12: error: 'nope' undeclared")
        return before, instance.info().reason

    before, after = run(main())
    assert before == "exited with code 4; restart policy is never"
    assert after == (
        "exited with code 4; restart policy is never; "
        "it logged: cannot compile x.c:\nx.c:3:12: error: 'nope' undeclared"
    )


def _stall_instance(node: _Node, **spec) -> Instance:
    entry = EntrySpec(program="x.sh", stall_timeout=0.3, **spec)
    return Instance("demo", "x", entry, {}, node.hooks(start_seconds=0.05, config_timeout=1))


def _status(messages_in: int, messages_out: int) -> Status:
    return Status(instance="demo", run=1, messages_in=messages_in, messages_out=messages_out)


def test_input_flowing_without_output_marks_the_instance_stalled(tmp_path):
    """Output still while input moves for stall_timeout: stalled, logged; output again: not."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _stall_instance(node)
        instance.start()
        await wait_until(lambda: instance.state == InstanceState.RUNNING)
        instance.on_message(b"rid", _status(10, 10))
        flowing = 10

        def feed() -> bool:  # input keeps moving, output stays at 10
            nonlocal flowing
            flowing += 1
            instance.on_message(b"rid", _status(flowing, 10))
            return instance.stalled

        await wait_until(feed)
        marked = instance.info().stalled
        instance.on_message(b"rid", _status(flowing + 1, 11))
        after = instance.stalled
        await instance.stop()
        return marked, after

    marked, after = run(main())
    assert marked is True
    assert after is False
    messages = [m for _, m in node.records]
    assert any(m.startswith("stalled: input flows but no output for") for m in messages)
    assert "output moves again: no longer stalled" in messages


def test_restart_on_stall_restarts_the_instance(tmp_path):
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _stall_instance(node, restart_on_stall=True)
        instance.start()
        await wait_until(lambda: instance.state == InstanceState.RUNNING)
        count = 0

        def feed() -> bool:
            nonlocal count
            count += 1
            if instance.run == 1:
                instance.on_message(b"rid", _status(count, 0))
            return instance.run == 2

        await wait_until(feed)
        state = instance.state
        await instance.stop()
        return state

    assert run(main()) in (InstanceState.STARTING, InstanceState.RUNNING)
    assert any("restarting it (restart_on_stall)" in m for _, m in node.records)


def test_an_on_demand_instance_stops_after_its_timeout_without_clients(tmp_path):
    """Counted down from the last client's departure, reset by a new client, then stopped."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        entry = EntrySpec(program="x.sh", no_client_timeout=0.3)
        instance = Instance("demo", "x", entry, {}, node.hooks(start_seconds=0.05))
        instance.on_demand = True
        instance.start()
        instance.on_message(b"rid", Ready(instance="demo", run=1))
        instance.on_message(b"rid", Status(instance="demo", run=1, clients=1))
        check_idle(instance, 100.0)
        with_client = instance.idle_since
        instance.on_message(b"rid", Status(instance="demo", run=1, clients=0))
        check_idle(instance, 100.0)
        countdown = instance.info().stops_at
        instance.on_message(b"rid", Status(instance="demo", run=1, clients=2))
        check_idle(instance, 100.1)
        reset = instance.idle_since
        instance.on_message(b"rid", Status(instance="demo", run=1, clients=0))
        check_idle(instance, 101.0)
        check_idle(instance, 101.4)
        await wait_until(lambda: instance.state == InstanceState.STOPPED)
        return with_client, countdown, reset, instance

    with_client, countdown, reset, instance = run(main())
    assert with_client is None
    assert countdown == pytest.approx(100.3)
    assert reset is None
    assert instance.desired == "stopped"
    assert ("info", "no client for 0.3 s: stopped (on demand)") in node.records


def test_an_instance_that_does_not_count_clients_is_never_stopped_for_it(tmp_path):
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        entry = EntrySpec(program="x.sh", no_client_timeout=0.1)
        instance = Instance("demo", "x", entry, {}, node.hooks(start_seconds=0.05))
        instance.on_demand = True
        instance.start()
        instance.on_message(b"rid", Ready(instance="demo", run=1))
        instance.on_message(b"rid", Status(instance="demo", run=1, clients=None))
        for now in (100.0, 200.0):
            check_idle(instance, now)
        state = instance.state
        await instance.stop()
        return state

    assert run(main()) == InstanceState.RUNNING


def test_live_config_is_applied_on_ack_and_kept_on_error(tmp_path):
    """apply_config resolves by the program's ack or error for its sequence number."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _instance(node)
        instance.start()
        instance.on_message(b"rid", Hello(instance="demo", run=1, pid=1))

        async def answer(message_type, **fields):
            await wait_until(lambda: len(node.sent) >= 2 + answer.count)
            seq = node.sent[-1][1].seq
            instance.on_message(b"rid", message_type(instance="demo", run=1, seq=seq, **fields))
            answer.count += 1

        answer.count = 0
        ok = asyncio.gather(instance.apply_config({"gain": 2}), answer(ConfigAck))
        result, _ = await ok
        refused = asyncio.gather(
            instance.apply_config({"gain": -1}),
            answer(ConfigError, message="gain must be > 0"),
            return_exceptions=True,
        )
        error, _ = await refused
        config = instance.config
        await instance.stop()
        return result, error, config

    result, error, config = run(main())
    assert result.applied == "live"
    assert result.seq == 1
    assert "refused the config: gain must be > 0" in error.message
    assert config == {"gain": 2}


def test_a_report_is_shown_and_kept_until_the_next(tmp_path):
    """The program's report reaches the instance's view, and survives a restart of the run."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = Instance("demo", "x", EntrySpec(program="x.sh"), {}, node.hooks())
        instance.start()
        instance.on_message(b"rid", Report(instance="demo", run=1, report={"files": 2}))
        shown = instance.info().report
        listed = json.loads(instance.info_json((0, 0, 0, 0)))["report"]
        await instance.stop()
        return shown, listed, instance.info().report

    shown, listed, after_stop = run(main())
    assert shown == listed == after_stop == {"files": 2}


def _live_instance(node: _Node, interval: float = 0.1, **spec) -> Instance:
    entry = EntrySpec(program="x.sh", **spec)
    hooks = node.hooks(start_seconds=0.05, config_timeout=1, status_interval=interval)
    return Instance("demo", "x", entry, {}, hooks)


def test_a_program_that_said_hello_but_never_ready_fails_at_its_start_timeout(tmp_path):
    """Hello but no ready: starting (not promoted), then stopped at start_timeout with a reason
    saying so; under restart policy never it is failed."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _live_instance(node, start_timeout=0.3, restart=RestartPolicy(mode="never"))
        instance.start()
        instance.on_message(b"rid", Hello(instance="demo", run=1, pid=1))
        await asyncio.sleep(0.15)  # past start_seconds: a contract program is not promoted
        waiting = instance.state
        await wait_until(lambda: instance.state == InstanceState.FAILED)
        return waiting, instance.info().reason

    waiting, reason = run(main())
    assert waiting == InstanceState.STARTING
    assert reason.startswith("no ready message within 0.3 s of its start (")
    assert reason.endswith("; restart policy is never")


def test_a_start_timeout_counts_as_a_quick_exit_and_restarts_per_policy(tmp_path):
    """Under on-failure the run is restarted, and the backoff grows even though each run lived
    longer than stable_after: a run that never got ready was never stable."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _live_instance(
            node, start_timeout=0.2, restart=RestartPolicy(stable_after=0.1, backoff_initial=0.05)
        )
        instance.start()
        reasons = []
        while instance.run < 3:
            if instance.state == InstanceState.STARTING and not instance.speaks_contract:
                instance.on_message(b"rid", Hello(instance="demo", run=instance.run, pid=1))
            if instance.reason not in reasons:
                reasons.append(instance.reason)
            await asyncio.sleep(0.005)
        await instance.stop()
        return instance, reasons

    instance, reasons = run(main())
    assert instance.crash_count == 2
    assert any("; restarted: no ready message within 0.2 s of its start" in r for r in reasons)
    assert any(r.startswith("no ready message within 0.2 s") and "restarting in 0.05 s" in r
               for r in reasons)  # fmt: skip


def test_a_program_that_never_says_hello_is_still_promoted_and_never_timed_out(tmp_path):
    """No hello (a program that ignores the contract): running after start_seconds, kept."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _live_instance(node, start_timeout=0.2)
        instance.start()
        await asyncio.sleep(0.4)
        state, run_ = instance.state, instance.run
        await instance.stop()
        return state, run_

    assert run(main()) == (InstanceState.RUNNING, 1)


def test_a_silent_heartbeat_marks_the_run_unresponsive_and_a_status_clears_it(tmp_path):
    """No status for 1.5 intervals: unresponsive, rates 0 (counters kept), reason and log say
    so; the next status clears it. A run that never sent a status is never unresponsive."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _live_instance(node, interval=0.1)
        instance.start()
        instance.on_message(b"rid", Hello(instance="demo", run=1, pid=1))
        instance.on_message(b"rid", Ready(instance="demo", run=1))
        await asyncio.sleep(0.3)
        never_sent = instance.unresponsive
        instance.on_message(b"rid", _status(10, 10))
        await asyncio.sleep(0.05)
        instance.on_message(b"rid", _status(20, 20))
        rate = instance.stats.rate_in
        last = instance.stats.updated
        await wait_until(lambda: instance.unresponsive, timeout=2)
        noticed = time.time() - last
        info = instance.info()
        instance.on_message(b"rid", _status(30, 30))
        after = (instance.unresponsive, instance.reason, instance.state)
        await instance.stop()
        return never_sent, rate, noticed, info, after

    never_sent, rate, noticed, info, after = run(main())
    assert never_sent is False
    assert rate > 0
    # Never before 1.5 intervals (how soon after is bench_liveness's figure, not a test's).
    assert noticed >= 0.15
    assert info.unresponsive is True
    assert info.state == InstanceState.RUNNING
    assert info.reason.startswith("unresponsive: no status for 0.")
    assert (info.stats.rate_in, info.stats.rate_out, info.stats.messages_in) == (0.0, 0.0, 20)
    assert after[0] is False
    assert after[1].startswith("responds again: a status after")
    assert any(m.startswith("unresponsive: no status for") for _, m in node.records)


def test_restart_on_unresponsive_ends_the_run_and_restarts_it_per_policy(tmp_path):
    """With restart_on_unresponsive the silent run is stopped and the next one started, the
    reason saying why; the first such restart after a stable run is immediate."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _live_instance(
            node, interval=0.05, restart_on_unresponsive=True, restart=RestartPolicy(stop_grace=1)
        )
        instance.start()
        instance.on_message(b"rid", Hello(instance="demo", run=1, pid=1))
        instance.on_message(b"rid", Ready(instance="demo", run=1))
        instance.on_message(b"rid", _status(1, 1))
        await wait_until(lambda: instance.run == 2, timeout=3)
        info = instance.info()
        await instance.stop()
        return info

    info = run(main())
    assert info.state == InstanceState.STARTING
    assert info.unresponsive is False
    assert "; restarted: unresponsive: no status for" in info.reason
    assert "restart_on_unresponsive" in info.reason
    assert any(m.startswith("run 1 unresponsive: no status") for _, m in node.records)


def test_rates_are_zeroed_when_the_run_ends(tmp_path):
    """A stopped instance shows no rate from its last status; its counters stay."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        instance = _live_instance(node)
        instance.start()
        instance.on_message(b"rid", _status(1, 1))
        await asyncio.sleep(0.02)
        instance.on_message(b"rid", _status(5, 5))
        rate = instance.stats.rate_out
        await instance.stop()
        return rate, instance.info().stats

    rate, stats = run(main())
    assert rate > 0
    assert (stats.rate_out, stats.messages_out) == (0.0, 5)


def test_a_push_output_without_a_consumer_is_not_stalled(tmp_path):
    """Input flows, output still, but the PUSH output has no peer: blocked, not stalled (and
    not restarted by restart_on_stall); with a consumer connected the same is a stall."""
    node = _Node("exec sleep 30", tmp_path)

    async def main():
        entry = EntrySpec(
            program="x.sh", stall_timeout=0.2, restart_on_stall=True, output={"mode": "PUSH"}
        )
        instance = Instance("demo", "x", entry, {}, node.hooks(start_seconds=0.05))
        instance.start()
        await wait_until(lambda: instance.state == InstanceState.RUNNING)
        count = 10
        for _ in range(30):  # 0.45 s of input, output standing still, nobody to push to
            count += 1
            instance.on_message(b"rid", Status(instance="demo", run=1, messages_in=count,
                                               messages_out=10, clients=0))  # fmt: skip
            await asyncio.sleep(0.015)
        alone = (instance.stalled, instance.run)
        instance.stats = instance.stats.model_copy(update={"clients": 1})
        check_stall(instance, time.time())
        with_consumer = instance.stalled
        await wait_until(lambda: instance.run == 2)
        await instance.stop()
        return alone, with_consumer

    alone, with_consumer = run(main())
    assert alone == (False, 1)
    assert with_consumer is True
