"""Desired state on disk: which instances exist, what they run, and whether they should run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field, ValidationError

from .atomicfile import write_atomic
from .contract import StrictModel
from .jsontext import check_value
from .nodeapi.errors import SupervisorError
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
        """The saved records. A record that no longer validates (or holds a string that is not
        Unicode) is dropped alone, with the file copied aside; an unreadable file is kept aside
        and an empty state returned."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            # Python's parser, not pydantic's: it reads back any string json.dumps escaped, so
            # one bad value is judged by itself instead of making the whole file unreadable.
            raw = json.loads(text)
            if not isinstance(raw, dict) or not isinstance(raw.get("instances", []), list):
                raise ValueError("not an object with a list of 'instances'")
            _StateFile.model_validate({**raw, "instances": []})  # the format version
        except ValueError as exc:  # ValidationError and JSONDecodeError included
            self._keep_aside("state_file_unreadable", exc)
            return []
        records = []
        for raw_record in raw.get("instances", []):
            try:
                check_value(raw_record, "instance record")
                records.append(InstanceRecord.model_validate(raw_record))
            except (ValidationError, SupervisorError) as exc:
                name = raw_record.get("name") if isinstance(raw_record, dict) else None
                self._keep_aside("state_record_dropped", exc, instance=ascii(name))
        return records

    def _keep_aside(self, event: str, exc: Exception, **context: str) -> None:
        broken = self.path.with_suffix(".broken")
        shutil.copyfile(self.path, broken)
        log.error(event, path=str(self.path), kept_as=str(broken), error=str(exc), **context)

    def save(self, records: list[InstanceRecord]) -> None:
        """Write all records atomically (temp file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = _StateFile(instances=records).model_dump(mode="json")
        # ASCII: a string that is not Unicode is escaped, never a byte that breaks the file.
        text = json.dumps(data, indent=2, ensure_ascii=True).encode("ascii")
        write_atomic(self.path, text, temp_prefix=".state-")
