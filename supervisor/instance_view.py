"""What the API shows of an instance: its snapshot, its reason, its rates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contract.messages import Status
from .nodeapi.models import InstanceInfo, InstanceState, InstanceStats, LogStats

if TYPE_CHECKING:
    from .instance import Instance

__all__ = ["instance_info", "next_stats", "without_rates"]


def next_stats(prev: InstanceStats, status: Status, now: float) -> InstanceStats:
    """The stats after a status message: its counters, with rates since the previous one."""
    values = status.model_dump(exclude={"kind", "instance", "run"})
    rate_in = rate_out = byte_rate_in = byte_rate_out = 0.0
    if prev.updated is not None and now > prev.updated:
        dt = now - prev.updated
        rate_in = max(0, status.messages_in - prev.messages_in) / dt
        rate_out = max(0, status.messages_out - prev.messages_out) / dt
        byte_rate_in = max(0, status.bytes_in - prev.bytes_in) / dt
        byte_rate_out = max(0, status.bytes_out - prev.bytes_out) / dt
    moved_in = status.messages_in > prev.messages_in
    moved_out = status.messages_out > prev.messages_out
    return InstanceStats(
        **values,
        rate_in=rate_in,
        rate_out=rate_out,
        byte_rate_in=byte_rate_in,
        byte_rate_out=byte_rate_out,
        updated=now,
        last_input_at=now if moved_in else prev.last_input_at,
        last_output_at=now if moved_out else prev.last_output_at,
    )


def without_rates(stats: InstanceStats) -> InstanceStats:
    """The stats with the rates at 0: shown once they are no longer current (the program went
    silent, or its run ended); the counters stay."""
    if not (stats.rate_in or stats.rate_out or stats.byte_rate_in or stats.byte_rate_out):
        return stats
    return stats.model_copy(
        update={"rate_in": 0.0, "rate_out": 0.0, "byte_rate_in": 0.0, "byte_rate_out": 0.0}
    )


def _reason(instance: Instance) -> str:
    """The reason, with what the program last logged as an error when its run failed.

    Composed when asked, not at the exit: the record may arrive after the exit is seen."""
    status = instance.exit_status
    if (
        instance.last_error
        and instance.process is None
        and status is not None
        and not status.success
        and instance.state in (InstanceState.BACKOFF, InstanceState.FAILED)
    ):
        return f"{instance.reason}; it logged: {instance.last_error}"
    return instance.reason


def instance_info(instance: Instance) -> InstanceInfo:
    """A snapshot of ``instance`` for the API (built without re-validating: every value is
    already typed)."""
    status = instance.exit_status
    return InstanceInfo.model_construct(
        name=instance.name,
        entry=instance.entry,
        state=instance.state,
        desired=instance.desired,
        reason=_reason(instance),
        pid=instance.process.pid if instance.process else None,
        run=instance.run,
        restarts=instance.restarts,
        exit_code=status.code if status else None,
        exit_signal=status.signal_name if status else None,
        started_at=instance.process.started if instance.process else None,
        next_start_at=instance.next_start_at,
        ready=instance.ready,
        speaks_contract=instance.speaks_contract,
        stream=instance.stream_url,
        output_mode=str(instance.spec.output.mode) if instance.spec.output.enabled else None,
        input=instance.spec.input,
        data_url=instance.data_url,
        merge_urls=list(instance.merge_urls),
        gather_urls=list(instance.gather_urls),
        report=instance.report,
        config=instance.config,
        config_seq=instance.config_seq,
        config_pending_restart=instance.config_pending_restart,
        restart_policy=instance.spec.restart,
        stats=instance.stats,
        resources=instance.resources,
        stalled=instance.stalled,
        unresponsive=instance.unresponsive,
        permanent=instance.permanent,
        on_demand=instance.on_demand,
        idle_since=instance.idle_since,
        stops_at=(
            instance.idle_since + instance.spec.no_client_timeout
            if instance.idle_since is not None
            else None
        ),
        logs=LogStats(),
    )
