"""The restart policy's decision when a run ended: restart now, back off, finish, or give up."""

from __future__ import annotations

from dataclasses import dataclass

from .nodeapi.specs import RestartMode, RestartPolicy

__all__ = ["Decision", "decide"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a run: ``again`` with ``delay`` seconds of backoff, or not; a crash
    loop gives up; ``crash_count`` is the count of quick exits in a row, this one included."""

    again: bool
    delay: float = 0.0
    crash_count: int = 0
    crash_loop: bool = False


def decide(
    policy: RestartPolicy, failed: bool, runtime: float, quick: bool, crash_count: int
) -> Decision:
    """Apply ``policy`` to a run that lived ``runtime`` s and ``failed`` (or not).

    ``quick``: the run never got going (no ready message in time), so it counts as a quick exit
    however long it lived. A run that lived ``stable_after`` resets the crash count; backoff
    grows by ``backoff_factor`` from the second quick exit in a row, up to ``backoff_max``.
    """
    again = policy.mode == RestartMode.ALWAYS or (policy.mode == RestartMode.ON_FAILURE and failed)
    if not again:
        return Decision(again=False, crash_count=crash_count)
    if runtime >= policy.stable_after and not quick:
        crash_count = 0
    crash_count += 1
    if policy.max_restarts and crash_count > policy.max_restarts:
        return Decision(again=False, crash_count=crash_count, crash_loop=True)
    delay = 0.0
    if crash_count > 1:
        delay = min(
            policy.backoff_initial * policy.backoff_factor ** (crash_count - 2),
            policy.backoff_max,
        )
    return Decision(again=True, delay=delay, crash_count=crash_count)
