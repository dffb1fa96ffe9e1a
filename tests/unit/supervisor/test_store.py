"""Desired state on disk: one SQLite row per instance, every write whole or refused."""

from __future__ import annotations

import json
import sqlite3

import pytest

from supervisor.nodeapi import StorageError
from supervisor.store import InstanceRecord, StateStore


def _rows(tmp_path) -> dict[str, dict]:
    with sqlite3.connect(tmp_path / "state.db") as db:
        return {n: json.loads(t) for n, t in db.execute("SELECT name, record FROM instances")}


def test_records_round_trip_one_row_each(tmp_path):
    """What is put is loaded back; a put writes its own row, a delete removes only its own."""
    store = StateStore(tmp_path)
    a = InstanceRecord(name="a", entry="e", config={"x": 1}, desired="running")
    b = InstanceRecord(name="b", entry="e")
    store.put(a)
    store.put(b)
    store.put(a.model_copy(update={"desired": "stopped"}))
    assert store.load() == [a.model_copy(update={"desired": "stopped"}), b]
    store.delete("a")
    assert StateStore(tmp_path).load() == [b]
    assert set(_rows(tmp_path)) == {"b"}
    store.close()


def test_a_missing_folder_is_an_empty_state(tmp_path):
    """A first start has no state."""
    assert StateStore(tmp_path / "new").load() == []


def test_a_transaction_commits_together_or_not_at_all(tmp_path):
    """Puts in a transaction are saved at its end; an error inside saves none of them."""
    store = StateStore(tmp_path)

    def fails() -> None:
        with store.transaction():
            store.put(InstanceRecord(name="a", entry="e"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails()
    assert store.load() == []
    with store.transaction(), store.transaction():
        store.put(InstanceRecord(name="a", entry="e"))
        store.put(InstanceRecord(name="b", entry="e"))
    assert [r.name for r in StateStore(tmp_path).load()] == ["a", "b"]


def test_the_json_file_of_the_previous_version_is_imported_once(tmp_path):
    """An upgrade keeps every instance: instances.json is imported, then renamed aside; a bad
    record in it is skipped alone."""
    old = [
        {"name": "a", "entry": "e", "config": {"x": 1}, "desired": "running"},
        {"name": "b", "entry": "e", "restart": {"stop_grace": 1e300}},
        {"name": "c", "entry": "e", "permanent": True},
    ]
    (tmp_path / "instances.json").write_text(json.dumps({"version": 1, "instances": old}))
    store = StateStore(tmp_path)
    assert [(r.name, r.desired, r.permanent) for r in store.load()] == [
        ("a", "running", False),
        ("c", "stopped", True),
    ]
    assert not (tmp_path / "instances.json").exists()
    assert (tmp_path / "instances.json.imported").exists()
    store.delete("a")
    assert [r.name for r in StateStore(tmp_path).load()] == ["c"]  # not imported again


def test_a_bad_row_is_skipped_alone(tmp_path):
    """A row that no longer validates, a lone surrogate or broken JSON costs its own record."""
    store = StateStore(tmp_path)
    store.put(InstanceRecord(name="a", entry="e"))
    store.put(InstanceRecord(name="b", entry="e", config={"deep": ["\ud800"]}))
    store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("INSERT INTO instances VALUES ('c', '{not json')")
        db.execute(
            "INSERT INTO instances VALUES ('d', ?)",
            (json.dumps({"name": "d", "entry": "e", "restart": {"stop_grace": 1e300}}),),
        )
        db.execute(
            "INSERT INTO instances VALUES ('f', ?)", (json.dumps({"name": "f", "entry": "e"}),)
        )
    assert [r.name for r in StateStore(tmp_path).load()] == ["a", "f"]


def test_stale_temp_files_of_the_old_store_are_removed(tmp_path):
    """``.state-*`` files left by a kill during the old whole-file write go at start."""
    (tmp_path / ".state-abc123").write_text("{")
    (tmp_path / "keep.txt").write_text("x")
    StateStore(tmp_path).load()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("state.db")) == [
        "keep.txt"
    ]


def test_a_read_only_database_refuses_the_write_and_says_why(tmp_path):
    """A write that cannot be saved raises ``StorageError`` naming the SQLite error, keeps it as
    the store's health until a write succeeds, and saves nothing."""
    store = StateStore(tmp_path)
    store.put(InstanceRecord(name="a", entry="e"))
    assert store.health() == "ok"
    assert store._db is not None
    store._db.execute("PRAGMA query_only = ON")  # what a read-only file answers, even to root
    with pytest.raises(StorageError, match=r"readonly database.*SQLITE_READONLY"):
        store.put(InstanceRecord(name="b", entry="e"))

    def in_transaction() -> None:
        with store.transaction():
            store.put(InstanceRecord(name="b", entry="e"))

    with pytest.raises(StorageError):
        in_transaction()
    assert "SQLITE_READONLY" in store.health()
    store._db.execute("PRAGMA query_only = OFF")
    store.delete("a")
    assert store.health() == "ok"
    assert store.load() == []


def test_an_unusable_state_folder_is_one_clear_error(tmp_path):
    """A state folder that is a file (or read-only) is a ``StorageError`` naming it, not a
    traceback."""
    (tmp_path / "state").write_text("")
    with pytest.raises(StorageError, match=r"the state folder .*state is not usable: .*EEXIST"):
        StateStore(tmp_path / "state").load()
