"""The restart policy's decision after a run: again or not, backoff, crash loops."""

from __future__ import annotations

from supervisor.nodeapi.specs import RestartMode, RestartPolicy
from supervisor.restart import decide


def _policy(**kw):
    base = {"mode": RestartMode.ON_FAILURE, "backoff_initial": 0.5, "backoff_factor": 2.0}
    return RestartPolicy(**(base | kw))


def test_on_failure_restarts_a_failure_and_finishes_a_success():
    """on-failure: a failed run again, a clean exit not (its crash count untouched)."""
    assert decide(_policy(), failed=True, runtime=0.1, quick=False, crash_count=0).again
    done = decide(_policy(), failed=False, runtime=0.1, quick=False, crash_count=3)
    assert (done.again, done.crash_count) == (False, 3)


def test_quick_exits_back_off_and_a_stable_run_resets_the_count():
    """The first quick exit restarts at once, the next ones wait longer and longer."""
    policy = _policy(stable_after=10.0, backoff_max=1.5)
    delays, count = [], 0
    for _ in range(4):
        decision = decide(policy, failed=True, runtime=0.1, quick=False, crash_count=count)
        delays.append(decision.delay)
        count = decision.crash_count
    assert delays == [0.0, 0.5, 1.0, 1.5]
    stable = decide(policy, failed=True, runtime=60.0, quick=False, crash_count=count)
    assert (stable.crash_count, stable.delay) == (1, 0.0)


def test_a_run_that_never_got_going_counts_as_quick_however_long_it_lived():
    """quick: no ready message in time, so the crash count is not reset by its runtime."""
    decision = decide(
        _policy(stable_after=1.0), failed=True, runtime=60.0, quick=True, crash_count=2
    )
    assert decision.crash_count == 3


def test_a_crash_loop_gives_up_after_max_restarts():
    """More quick exits in a row than max_restarts: no restart, and it says so."""
    decision = decide(_policy(max_restarts=3), failed=True, runtime=0.1, quick=False, crash_count=3)
    assert (decision.again, decision.crash_loop, decision.crash_count) == (False, True, 4)
