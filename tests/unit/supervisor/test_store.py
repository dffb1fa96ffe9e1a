"""Desired state on disk."""

from __future__ import annotations

import json

from supervisor.store import InstanceRecord, StateStore


def test_records_round_trip_and_the_write_is_atomic(tmp_path):
    """What is saved is loaded back; no temporary file stays behind."""
    store = StateStore(tmp_path / "instances.json")
    records = [InstanceRecord(name="a", entry="e", config={"x": 1}, desired="running")]
    store.save(records)
    assert store.load() == records
    assert [p.name for p in tmp_path.iterdir()] == ["instances.json"]


def test_missing_file_is_an_empty_state(tmp_path):
    """A first start has no state."""
    assert StateStore(tmp_path / "nope.json").load() == []


def test_unreadable_file_is_kept_aside_not_lost(tmp_path):
    """A corrupt state file is renamed for a person to inspect, and the node starts empty."""
    path = tmp_path / "instances.json"
    path.write_text("{not json")
    assert StateStore(path).load() == []
    assert (tmp_path / "instances.broken").read_text() == "{not json"


def test_a_record_that_is_not_unicode_is_dropped_alone(tmp_path):
    """A lone surrogate that reached the store costs its own record, never the others."""
    store = StateStore(tmp_path / "instances.json")
    good = [InstanceRecord(name="a", entry="e"), InstanceRecord(name="c", entry="e")]
    bad = InstanceRecord(name="b", entry="e", config={"deep": ["\ud800"]})
    store.save([good[0], bad, good[1]])
    assert (tmp_path / "instances.json").read_bytes().isascii()
    assert store.load() == good
    assert (tmp_path / "instances.json").exists()
    assert (tmp_path / "instances.broken").exists()


def test_a_record_out_of_range_is_dropped_alone(tmp_path):
    """A record that no longer validates (a stop grace of 1e300 saved before the bounds) is
    dropped alone; the others load."""
    path = tmp_path / "instances.json"
    ok = {"name": "a", "entry": "e"}
    old = {"name": "b", "entry": "e", "restart": {"stop_grace": 1e300}}
    path.write_text(json.dumps({"version": 1, "instances": [ok, old]}))
    assert [r.name for r in StateStore(path).load()] == ["a"]
