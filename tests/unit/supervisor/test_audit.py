"""The audit log: JSON lines appended to a file, and the newest records in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.audit import AuditLog, AuditRecord


def _record(n: int, **fields: object) -> AuditRecord:
    base = {
        "auth": "anonymous",
        "method": "POST",
        "path": f"/api/v1/instances/i{n}/start",
        "target": f"i{n}",
        "status": 200,
    }
    return AuditRecord.at(1_700_000_000.0 + n, **{**base, **fields})


def test_records_are_appended_as_json_lines(tmp_path: Path) -> None:
    """Each record is one JSON line in the file, readable back into the same record."""
    path = tmp_path / "state" / "audit.jsonl"
    with AuditLog(path) as log:
        log.record(_record(1))
        log.record(_record(2, status=401))
    lines = path.read_text().splitlines()
    assert [AuditRecord.model_validate_json(line) for line in lines] == [
        _record(1),
        _record(2, status=401),
    ]


def test_each_record_is_on_disk_before_record_returns(tmp_path: Path) -> None:
    """A record is flushed at once: another reader sees it while the log is still open."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record(_record(1))
        assert json.loads(path.read_text())["target"] == "i1"


def test_an_existing_file_is_appended_to(tmp_path: Path) -> None:
    """Reopening the log keeps the earlier records (append mode)."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record(_record(1))
    with AuditLog(path) as log:
        log.record(_record(2))
        assert [r.target for r in log.tail()] == ["i2"]  # memory holds this run's records only
    assert len(path.read_text().splitlines()) == 2


def test_memory_keeps_the_newest_capacity_records(tmp_path: Path) -> None:
    """Only the newest ``capacity`` records stay in memory; the file keeps all of them."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, capacity=3) as log:
        for n in range(5):
            log.record(_record(n))
        assert [r.target for r in log.tail(10)] == ["i2", "i3", "i4"]
        assert [r.target for r in log.tail(2)] == ["i3", "i4"]
        assert log.tail(0) == []
    assert len(path.read_text().splitlines()) == 5


def test_memory_only_log_writes_no_file(tmp_path: Path) -> None:
    """With no path, records are only kept in memory."""
    log = AuditLog(None)
    log.record(_record(1))
    assert [r.target for r in log.tail()] == ["i1"]
    assert list(tmp_path.iterdir()) == []


def test_record_has_unix_and_iso_time() -> None:
    """A record carries its time as unix seconds and as ISO 8601 in UTC."""
    record = _record(0)
    assert record.time == 1_700_000_000.0
    assert record.iso_time == "2023-11-14T22:13:20.000+00:00"


def test_record_refuses_unknown_fields() -> None:
    """A mistyped field fails loudly (strict model)."""
    with pytest.raises(ValueError, match="statsu"):
        _record(0, statsu=200)


def test_capacity_must_be_positive() -> None:
    """A capacity below 1 is refused."""
    with pytest.raises(ValueError, match="capacity"):
        AuditLog(None, capacity=0)
