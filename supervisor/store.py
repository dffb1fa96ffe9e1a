"""Desired state on disk: which instances exist, what they run, and whether they should run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field, ValidationError

from .atomicfile import write_atomic
from .contract import StrictModel
from .nodeapi.specs import InputSpec, OutputSpec, RestartPolicy

__all__ = ["InstanceRecord", "StateStore"]

log = structlog.get_logger(__name__)


class InstanceRecord(StrictModel):
    """What survives a supervisor restart of one instance."""

    name: str = Field(description="Instance name.")
    entry: str = Field(description="Registry entry.")
    config: dict[str, Any] = Field(default_factory=dict, description="Current configuration.")
    input: InputSpec | list[InputSpec] | None = Field(None, description="Input override.")
    merge: list[InputSpec] | None = Field(None, description="Override of the merged inputs.")
    output: OutputSpec | None = Field(None, description="Output override.")
    restart: RestartPolicy | None = Field(None, description="Restart policy override.")
    desired: str = Field("stopped", description="'running' or 'stopped'.")
    permanent: bool = Field(
        False, description="Starts with the supervisor and always runs (registry or REST)."
    )
    on_demand: bool = Field(
        False,
        description="Created for a client or a reader: stops after its entry's "
        "no_client_timeout without clients.",
    )


class _StateFile(StrictModel):
    version: int = Field(1, description="File format version.")
    instances: list[InstanceRecord] = Field(default_factory=list, description="Instances.")


class StateStore:
    """Atomic JSON file of instance records."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[InstanceRecord]:
        """The saved records; an unreadable file is kept aside and an empty state returned."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        try:
            return _StateFile.model_validate_json(text).instances
        except ValidationError as exc:
            broken = self.path.with_suffix(".broken")
            os.replace(self.path, broken)
            log.error(
                "state_file_unreadable", path=str(self.path), kept_as=str(broken), error=str(exc)
            )
            return []

    def save(self, records: list[InstanceRecord]) -> None:
        """Write all records atomically (temp file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = _StateFile(instances=records).model_dump(mode="json")
        text = json.dumps(data, indent=2).encode()
        write_atomic(self.path, text, temp_prefix=".state-")
