"""The placement table: which node runs each instance placed through the manager, and why.

It is the manager's desired state: a node in a cluster starts empty and runs what the manager
tells it, so the table (saved atomically in the manager's state folder) is what comes back
after a node or the manager restarts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog
from pydantic import Field, ValidationError

from supervisor.atomicfile import write_atomic
from supervisor.contract import StrictModel
from supervisor.nodeapi.models import CreateInstance

__all__ = ["Ledger", "Placement"]

log = structlog.get_logger(__name__)


class Placement(StrictModel):
    """Where one instance runs and why."""

    instance: str = Field(description="Instance name.")
    node: str | None = Field(description="The node that runs it; None while it waits for one.")
    why: str = Field(description="The rule that chose the node, with what it compared.")
    rule: str = Field(
        description="pinned, colocated, camera, least_loaded, adopted, or waiting (no node)."
    )
    permanent: bool = Field(
        False, description="Moved to another node when its node is down; otherwise it is gone."
    )
    request: CreateInstance = Field(description="How it was created: how to create it again.")
    placed_at: float = Field(default_factory=time.time, description="Unix time of the decision.")
    moves: int = Field(0, description="Times it was moved off a node that went down.")
    moved_from: str | None = Field(None, description="The node it was last moved off.")


class _LedgerFile(StrictModel):
    placements: list[Placement] = Field(default_factory=list)


class Ledger:
    """The placements, by instance name, saved on every change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._placements: dict[str, Placement] = {}
        self.last_error: str | None = None  # of the last save, until one succeeds

    def load(self) -> None:
        if self.path is None:
            return
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        try:
            placements = _LedgerFile.model_validate_json(text).placements
        except ValidationError as exc:
            broken = self.path.with_suffix(".broken")
            os.replace(self.path, broken)
            log.error("ledger_unreadable", path=str(self.path), kept_as=str(broken), error=str(exc))
            return
        self._placements = {p.instance: p for p in placements}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # pydantic's own encoder: a few ms for hundreds of placements (json.dumps with an
        # indent takes the pure-Python path, several times slower, on the event loop).
        data = _LedgerFile(placements=list(self._placements.values())).model_dump_json()
        try:
            write_atomic(self.path, data.encode(), temp_prefix=".ledger-")
        except OSError as exc:
            self.last_error = f"cannot write {self.path}: {exc.strerror or exc}"
            raise
        self.last_error = None

    def health(self) -> str:
        """'ok', or the last error of a save that failed (until one succeeds again)."""
        return "ok" if self.last_error is None else self.last_error

    def get(self, instance: str) -> Placement | None:
        return self._placements.get(instance)

    def put(self, placement: Placement) -> None:
        self._placements[placement.instance] = placement
        self.save()

    def remove(self, instance: str) -> Placement | None:
        placement = self._placements.pop(instance, None)
        if placement is not None:
            self.save()
        return placement

    def all(self) -> list[Placement]:
        return list(self._placements.values())

    def on_node(self, node: str) -> list[Placement]:
        return [p for p in self._placements.values() if p.node == node]
