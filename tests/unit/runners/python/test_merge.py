"""Aligning streams by pulse id: order, completeness, the bounded wait, and the counts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.python.merge import PulseMerger


def merger(streams: int = 2, **kwargs) -> PulseMerger:
    options = {"wait": 0.5, "missing": "drop", "capacity": 100} | kwargs
    return PulseMerger(streams, **options)


def test_complete_pulses_come_out_in_order_with_every_streams_channels() -> None:
    m = merger()
    m.add(1, 11, None, {"b": 11}, now=0.0)
    m.add(1, 10, None, {"b": 10}, now=0.0)
    assert m.ready(0.0) == []  # stream 0 has neither yet
    m.add(0, 10, (1, 0), {"a": 10}, now=0.0)
    m.add(0, 11, (1, 1), {"a": 11}, now=0.0)
    out = m.ready(0.0)
    assert [(p.pulse_id, p.data, p.timestamp, p.missing) for p in out] == [
        (10, {"a": 10, "b": 10}, (1, 0), ()),
        (11, {"a": 11, "b": 11}, (1, 1), ()),
    ]
    assert m.counters()["merge_pulses"] == 2
    assert m.counters()["merge_held"] == 0


def test_a_pulse_one_stream_skipped_is_settled_as_soon_as_that_stream_moves_past_it() -> None:
    m = merger(wait=10.0)
    m.add(0, 1, None, {"a": 1}, now=0.0)
    assert m.ready(0.0) == []  # stream 1 may still bring pulse 1
    m.add(1, 2, None, {"b": 2}, now=0.0)  # it did not: it is at 2 already
    assert m.ready(0.0) == []  # 1 is settled (dropped); 2 waits for stream 0
    m.add(0, 2, None, {"a": 2}, now=0.0)
    assert [p.pulse_id for p in m.ready(0.0)] == [2]
    counters = m.counters()
    assert counters["merge_in1_missing"] == 1
    assert counters["merge_incomplete_dropped"] == 1
    assert counters["merge_in0_missing"] == 0


def test_deliver_hands_an_incomplete_pulse_on_without_the_missing_channels() -> None:
    m = merger(missing="deliver")
    m.add(0, 1, None, {"a": 1}, now=0.0)
    m.add(1, 2, None, {"b": 2}, now=0.0)
    m.add(0, 2, None, {"a": 2}, now=0.0)
    out = m.ready(0.0)
    assert [(p.pulse_id, p.data, p.missing) for p in out] == [
        (1, {"a": 1}, (1,)),
        (2, {"a": 2, "b": 2}, ()),
    ]
    assert m.counters()["merge_incomplete_delivered"] == 1


def test_a_silent_stream_holds_a_pulse_no_longer_than_the_wait() -> None:
    m = merger(wait=0.5, missing="deliver")
    m.add(0, 1, None, {"a": 1}, now=10.0)
    assert m.ready(10.4) == []
    assert m.next_deadline() == pytest.approx(10.5)
    assert [p.pulse_id for p in m.ready(10.5)] == [1]
    assert m.next_deadline() is None


def test_order_is_kept_behind_a_pulse_that_is_still_waiting() -> None:
    m = merger(streams=2, wait=1.0)
    m.add(0, 4, None, {"a": 4}, now=0.0)  # 4 lacks stream 1 so far
    m.add(0, 5, None, {"a": 5}, now=0.1)
    m.add(1, 5, None, {"b": 5}, now=0.1)  # 5 is complete, and stream 1 is past 4
    assert [p.pulse_id for p in m.ready(0.1)] == [5]  # 4 settled (dropped) first, then 5

    m = merger(streams=3, wait=1.0)
    for stream in (0, 1):
        m.add(stream, 4, None, {f"s{stream}": 4}, now=0.0)
    for stream in (0, 1, 2):
        m.add(stream, 5, None, {f"s{stream}": 5}, now=0.1)
    # Stream 2 is past 4 too: no wait for it.
    assert [p.pulse_id for p in m.ready(0.1)] == [5]

    m = merger(streams=3, wait=1.0, missing="deliver")
    m.add(0, 4, None, {"a": 4}, now=0.0)
    m.add(2, 4, None, {"c": 4}, now=0.0)
    for stream in (0, 2):
        m.add(stream, 5, None, {"x": 5}, now=0.1)
    # 5 is not complete either; stream 1 has said nothing: both wait, 4 first.
    assert m.ready(0.5) == []
    assert [p.pulse_id for p in m.ready(1.0)] == [4]
    assert [p.pulse_id for p in m.ready(1.1)] == [5]


def test_a_part_that_comes_after_its_pulse_was_settled_is_late_and_dropped() -> None:
    m = merger(wait=0.1, missing="deliver")
    m.add(0, 1, None, {"a": 1}, now=0.0)
    assert [p.pulse_id for p in m.ready(0.2)] == [1]
    m.add(1, 1, None, {"b": 1}, now=0.3)
    assert m.ready(0.3) == []
    assert m.counters()["merge_in1_late"] == 1


def test_beyond_its_capacity_the_oldest_pulse_is_settled_at_once() -> None:
    m = merger(capacity=3, wait=100.0, missing="deliver")
    for pulse in range(5):
        m.add(0, pulse, None, {"a": pulse}, now=0.0)
    out = m.ready(0.0)
    assert [p.pulse_id for p in out] == [0, 1]
    assert m.counters()["merge_overflow"] == 2
    assert m.counters()["merge_held"] == 3


def test_the_first_streams_channels_win_a_clash() -> None:
    m = merger()
    m.add(1, 1, None, {"x": "second", "b": 1}, now=0.0)
    m.add(0, 1, None, {"x": "first", "a": 1}, now=0.0)
    (pulse,) = m.ready(0.0)
    assert pulse.data == {"x": "first", "a": 1, "b": 1}


def test_a_camera_pipeline_never_gets_a_pulse_without_its_image() -> None:
    m = merger(missing="deliver", primary_required=True, wait=0.1)
    m.add(1, 1, None, {"b": 1}, now=0.0)
    assert m.ready(0.2) == []
    counters = m.counters()
    assert counters["merge_in0_missing"] == 1
    assert counters["merge_incomplete_dropped"] == 1


def test_a_duplicate_part_is_counted_and_the_newer_one_kept() -> None:
    m = merger()
    m.add(1, 1, None, {"b": "old"}, now=0.0)
    m.add(1, 1, None, {"b": "new"}, now=0.0)
    m.add(0, 1, None, {"a": 1}, now=0.0)
    (pulse,) = m.ready(0.0)
    assert pulse.data["b"] == "new"
    assert m.counters()["merge_in1_duplicates"] == 1


def test_fewer_than_two_streams_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        PulseMerger(1, wait=1.0, missing="drop", capacity=10)


@settings(max_examples=200, deadline=None)
@given(
    pulses=st.integers(1, 60),
    streams=st.integers(2, 4),
    loss=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_interleaving_gives_each_complete_pulse_once_in_order(
    pulses: int, streams: int, loss: float, seed: int
) -> None:
    """Streams in pulse-id order, interleaved at random, each losing some pulses: every pulse
    all streams had comes out exactly once, in order, and the counts add up."""
    rng = random.Random(seed)
    sent = {s: [p for p in range(pulses) if rng.random() >= loss] for s in range(streams)}
    queues = {s: list(v) for s, v in sent.items()}
    m = merger(streams=streams, wait=1e9, capacity=10_000)
    out = []
    while any(queues.values()):
        stream = rng.choice([s for s, q in queues.items() if q])
        pulse = queues[stream].pop(0)
        m.add(stream, pulse, None, {f"s{stream}": pulse}, now=0.0)
        out.extend(m.ready(0.0))
    out.extend(m.ready(2e9))  # the end: what still waits is settled
    ids = [p.pulse_id for p in out]
    complete = sorted(set.intersection(*(set(v) for v in sent.values())))
    assert ids == complete
    for p in out:
        assert p.data == {f"s{s}": p.pulse_id for s in range(streams)}
    counters = m.counters()
    assert counters["merge_pulses"] == len(complete)
    seen = set().union(*(set(v) for v in sent.values()))
    assert counters["merge_incomplete_dropped"] == len(seen) - len(complete)
    for s in range(streams):
        assert counters[f"merge_in{s}_received"] == len(sent[s])
        assert counters[f"merge_in{s}_missing"] == len(seen - set(sent[s]))
        assert counters[f"merge_in{s}_late"] == 0
