"""Checks of each instance's run: an idle on-demand run, a stalled one (the monitoring round), a
silent status heartbeat (a timer of its own, see ``Instance``)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .contract import SocketMode
from .instance_view import without_rates
from .nodeapi.models import InstanceState

if TYPE_CHECKING:
    from .instance import Instance

__all__ = ["SILENT_INTERVALS", "check_heartbeat", "check_idle", "check_stall"]

SILENT_INTERVALS = 1.5
"""Status intervals without a status before a run is unresponsive: a program frozen just after
its status is noticed 1.5 intervals later (the issue asks for under 2), and one whose status
comes half an interval late (a busy loop, a loaded machine) is not flagged."""


def check_idle(instance: Instance, now: float) -> None:
    """An on-demand instance without clients stops after its entry's no_client_timeout.

    The clients are the program's own count (its status); one that does not count them is
    never stopped this way. The countdown starts once the program is ready, so the client
    that asked for the stream has the whole timeout to connect."""
    timeout = instance.spec.no_client_timeout
    clients = instance.stats.clients
    if (
        not instance.on_demand
        or timeout <= 0
        or instance.state != InstanceState.RUNNING
        or not instance.ready
        or clients is None
        or instance.desired != "running"
        or clients > 0
    ):
        if instance.idle_since is not None:  # assigned only on a change: it re-renders the JSON
            instance.idle_since = None
        return
    if instance.idle_since is None:
        instance.idle_since = now
    elif now - instance.idle_since >= timeout:
        instance.hooks.record(instance, "info", f"no client for {timeout:g} s: stopped (on demand)")
        instance.idle_stop = asyncio.get_running_loop().create_task(instance.stop())


def check_stall(instance: Instance, now: float) -> None:
    """Mark the instance stalled when its input moved but its output has not for the
    entry's ``stall_timeout``; log it once, and restart it if the entry asks for that."""
    timeout = instance.spec.stall_timeout
    stats = instance.stats
    if (
        timeout is None
        or instance.state != InstanceState.RUNNING
        or instance.process is None
        or not instance.spec.output.enabled
        or stats.last_input_at is None
    ):
        if instance.stalled:
            instance.stalled = False  # not running any more: nothing to say
        return
    if instance.spec.output.mode == SocketMode.PUSH and stats.clients == 0:
        # A PUSH without a consumer cannot send: the program waits for one, it is not stalled.
        if instance.stalled:
            instance.stalled = False
            instance.hooks.record(instance, "info", "no consumer on its PUSH output: not stalled")
        return
    quiet_since = stats.last_output_at or instance.process.started
    stalled = (
        stats.last_input_at > quiet_since
        and now - stats.last_input_at < timeout  # the input still flows
        and now - quiet_since >= timeout
    )
    if stalled == instance.stalled:
        return
    instance.stalled = stalled
    if not stalled:
        instance.hooks.record(instance, "info", "output moves again: no longer stalled")
        return
    message = f"stalled: input flows but no output for {now - quiet_since:.0f} s"
    if instance.spec.restart_on_stall:
        instance.hooks.record(instance, "warning", f"{message}; restarting it (restart_on_stall)")
        instance.stall_restart = asyncio.get_running_loop().create_task(instance.restart())
    else:
        instance.hooks.record(instance, "warning", message)


def check_heartbeat(instance: Instance, now: float, interval: float) -> float | None:
    """Mark the run unresponsive when no status came for ``SILENT_INTERVALS`` status intervals
    (its rates then show 0), and end it if the entry says ``restart_on_unresponsive``.

    Armed by the run's first status: a program that never sends one is never unresponsive.
    Returns the seconds until the next check is due, or None when none is needed (the next
    status arms it again)."""
    updated = instance.stats.updated
    if (
        updated is None
        or instance.unresponsive
        or instance.process is None
        or instance.failing is not None
        or instance.desired != "running"
        or instance.state not in (InstanceState.STARTING, InstanceState.RUNNING)
    ):
        return None
    silent = now - updated
    limit = SILENT_INTERVALS * interval
    if silent < limit:
        return limit - silent
    instance.unresponsive = True
    instance.stats = without_rates(instance.stats)
    message = f"unresponsive: no status for {silent:.1f} s (one is due every {interval:g} s)"
    instance.log.warning("instance_unresponsive", silent=round(silent, 3))
    if instance.spec.restart_on_unresponsive:
        instance.fail_run(f"{message}; restart_on_unresponsive")
    else:
        instance.reason = message
        instance.hooks.record(instance, "warning", message)
    return None


def heartbeat_due(instance: Instance, run: int) -> None:
    """The heartbeat check of ``run``, on a timer of its own: a frozen program is noticed when
    its status is overdue, not at the next monitoring round (see ``check_heartbeat``)."""
    instance.heartbeat = None
    if run != instance.run:
        return
    delay = check_heartbeat(instance, time.time(), instance.hooks.status_interval)
    if delay is not None:
        # A little late rather than early: an early wake-up would only re-arm the timer.
        instance.heartbeat = asyncio.get_running_loop().call_later(
            delay + 0.001, heartbeat_due, instance, run
        )
