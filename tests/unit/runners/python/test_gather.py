"""Putting a fan-in's streams back in pulse-id order: holding, the bounded wait, late pulses."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.python.gather import PulseGatherer


def test_a_pulse_goes_on_once_every_stream_is_past_it() -> None:
    g = PulseGatherer(2, wait=10.0, capacity=100)
    g.add(1, 2, None, {"w": 1}, now=0.0)  # worker 1 is faster: pulse 2 before pulse 1
    assert g.ready(0.0) == []  # worker 0 may still bring pulse 1
    g.add(0, 1, None, {"w": 0}, now=0.0)
    assert [p.pulse_id for p in g.ready(0.0)] == [1]  # 2 waits: worker 0 is only at 1
    g.add(0, 3, None, {"w": 0}, now=0.0)
    assert [(p.pulse_id, p.data) for p in g.ready(0.0)] == [(2, {"w": 1})]
    assert g.counters()["gather_held"] == 1  # 3 waits for worker 1


def test_a_silent_stream_holds_the_others_no_longer_than_the_wait() -> None:
    g = PulseGatherer(2, wait=1.0, capacity=100)
    g.add(0, 1, None, {}, now=5.0)
    g.add(0, 3, None, {}, now=5.5)
    assert g.ready(5.9) == []
    assert g.next_deadline() == pytest.approx(6.0)
    assert [p.pulse_id for p in g.ready(6.0)] == [1]
    assert [p.pulse_id for p in g.ready(6.5)] == [3]
    assert g.counters()["gather_waited"] == 2
    g.add(1, 2, None, {}, now=7.0)  # the silent worker's pulse, too late to keep the order
    assert g.ready(7.0) == []
    assert g.counters()["gather_late"] == 1


def test_beyond_its_capacity_the_oldest_goes_on_at_once() -> None:
    g = PulseGatherer(2, wait=100.0, capacity=2)
    for pulse in (1, 2, 3, 4):
        g.add(0, pulse, None, {}, now=0.0)
    assert [p.pulse_id for p in g.ready(0.0)] == [1, 2]
    assert g.counters()["gather_overflow"] == 2


def test_the_same_pulse_from_two_workers_goes_on_once() -> None:
    g = PulseGatherer(2, wait=10.0, capacity=100)
    g.add(0, 1, None, {"w": 0}, now=0.0)
    g.add(1, 1, None, {"w": 1}, now=0.0)
    assert [(p.pulse_id, p.data) for p in g.ready(0.0)] == [(1, {"w": 0})]
    assert g.counters()["gather_duplicates"] == 1


def test_fewer_than_two_streams_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        PulseGatherer(1, wait=1.0, capacity=10)


@settings(max_examples=200, deadline=None)
@given(pulses=st.integers(1, 80), workers=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_round_robin_work_at_any_pace_comes_back_complete_and_in_order(
    pulses: int, workers: int, seed: int
) -> None:
    """Pulses dealt round-robin, each worker's output in order, interleaved at random: all of
    them come out once, in order, without any waiting."""
    rng = random.Random(seed)
    queues = {w: [p for p in range(pulses) if p % workers == w] for w in range(workers)}
    g = PulseGatherer(workers, wait=1e9, capacity=10_000)
    out = []
    while any(queues.values()):
        worker = rng.choice([w for w, q in queues.items() if q])
        g.add(worker, (pulse := queues[worker].pop(0)), None, {"p": pulse}, now=0.0)
        out.extend(g.ready(0.0))
    out.extend(g.ready(2e9))
    assert [p.pulse_id for p in out] == list(range(pulses))
    counters = g.counters()
    assert counters["gather_late"] == counters["gather_overflow"] == 0
    assert counters["gather_pulses"] == pulses
