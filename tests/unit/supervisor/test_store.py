"""Desired state on disk."""

from __future__ import annotations

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
