"""The placement table: saved on every change, read back, a corrupt file kept aside."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from cluster.ledger import Ledger, Placement
from supervisor.nodeapi.models import CreateInstance
from supervisor.nodeapi.specs import InputSpec


def placement(name: str, node: str | None = "a", **fields: object) -> Placement:
    """A placement of ``name`` on ``node``."""
    request = CreateInstance(name=name, entry="spots", config={"threshold": 3})
    return Placement(
        instance=name, node=node, why="least loaded", rule="least_loaded", request=request, **fields
    )  # type: ignore[arg-type]


def test_placements_survive_a_save_and_load(tmp_path: Path) -> None:
    """What is put is read back identically by a new ledger on the same file."""
    path = tmp_path / "state" / "placements.json"
    ledger = Ledger(path)
    moved = placement("cam1", "b", permanent=True, moves=2, moved_from="a")
    waiting = placement("spots", None).model_copy(
        update={
            "request": CreateInstance(name="spots", entry="spots", input=InputSpec(url="tcp://a:1"))
        }
    )
    ledger.put(moved)
    ledger.put(waiting)
    ledger.put(placement("gone"))
    ledger.remove("gone")

    again = Ledger(path)
    again.load()
    assert sorted(again.all(), key=lambda p: p.instance) == [moved, waiting]
    assert again.get("cam1") == moved
    assert again.on_node("b") == [moved]


def test_a_missing_file_is_an_empty_ledger(tmp_path: Path) -> None:
    """A manager starting for the first time has no placements."""
    ledger = Ledger(tmp_path / "placements.json")
    ledger.load()
    assert ledger.all() == []


def test_a_corrupt_file_is_kept_aside(tmp_path: Path) -> None:
    """An unreadable file is renamed to .broken (not lost) and logged; the ledger starts empty."""
    path = tmp_path / "placements.json"
    path.write_text('{"placements": [{"instance": 3')
    ledger = Ledger(path)
    with capture_logs() as logs:
        ledger.load()
    assert ledger.all() == []
    assert not path.exists()
    assert (tmp_path / "placements.broken").read_text() == '{"placements": [{"instance": 3'
    events = [e for e in logs if e["event"] == "ledger_unreadable"]
    assert events[0]["kept_as"] == str(tmp_path / "placements.broken")


def test_a_ledger_without_a_path_keeps_placements_in_memory(tmp_path: Path) -> None:
    """With no path nothing is written, and placements are still kept."""
    ledger = Ledger(None)
    ledger.put(placement("cam1"))
    ledger.load()
    assert [p.instance for p in ledger.all()] == ["cam1"]
    assert list(tmp_path.iterdir()) == []
