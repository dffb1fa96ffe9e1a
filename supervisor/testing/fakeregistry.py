"""The registry of a ``FakeNode``: files in a dict, judged like the real registry's."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..nodeapi.errors import (
    EntryNotFoundError,
    InvalidEntryError,
    InvalidNameError,
    PayloadTooLargeError,
)
from ..nodeapi.models import Entry, EntryKind, RegistryFile
from ..nodeapi.specs import EntrySpec

__all__ = ["FakeRegistry"]


class FakeRegistry:
    """Registry files in a dict; names judged like the real registry's (a path -> InvalidName).

    ``name.json`` is a config entry (invalid when it does not validate), ``name.py`` a script,
    a file in ``executables`` a program; any other file is data, not an entry.
    """

    def __init__(self, max_upload_bytes: int) -> None:
        self.max_upload_bytes = max_upload_bytes
        self.files: dict[str, bytes] = {}
        self.executables: set[str] = set()

    @staticmethod
    def _check(filename: str) -> None:
        if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
            raise InvalidNameError(f"invalid file name {filename!r}: it must be a single file name")

    def _entry(self, filename: str) -> Entry | None:
        stem = filename.rsplit(".", 1)[0] if "." in filename else filename
        fields: dict[str, Any] = {"name": stem, "filename": filename, "modified": 1.0e9}
        if filename.endswith(".json"):
            try:
                spec = EntrySpec.model_validate_json(self.files[filename])
            except ValueError as exc:
                return Entry(**fields, kind=EntryKind.CONFIG, valid=False, error=str(exc)[:200])
            return Entry(**fields, kind=EntryKind.CONFIG, valid=True, spec=spec, argv=["run"])
        if filename.endswith(".py"):
            spec = EntrySpec(program=filename)
            return Entry(**fields, kind=EntryKind.SCRIPT, valid=True, spec=spec, argv=["py"])
        if filename in self.executables:
            spec = EntrySpec(program=filename)
            return Entry(**fields, kind=EntryKind.EXECUTABLE, valid=True, spec=spec, argv=["x"])
        return None

    def entries(self) -> list[Entry]:
        found = (self._entry(f) for f in sorted(self.files))
        return [e for e in found if e is not None]

    def get(self, name: str) -> Entry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise EntryNotFoundError(f"no registry entry named {name!r}")

    def file_list(self) -> list[RegistryFile]:
        return [
            RegistryFile(
                filename=name,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                executable=name in self.executables,
            )
            for name, data in sorted(self.files.items())
        ]

    def read_file(self, filename: str) -> bytes:
        self._check(filename)
        try:
            return self.files[filename]
        except KeyError:
            raise EntryNotFoundError(f"no registry file named {filename!r}") from None

    def write_file(self, filename: str, data: bytes, *, executable: bool = False) -> Entry | None:
        self._check(filename)
        if len(data) > self.max_upload_bytes:
            raise PayloadTooLargeError(f"{filename!r} is {len(data)} bytes, over the limit")
        if filename.endswith(".json"):
            try:
                json.loads(data)
            except ValueError as exc:
                raise InvalidEntryError(f"{filename}: not valid JSON: {exc}") from exc
        self.files[filename] = data
        if executable:
            self.executables.add(filename)
        return self._entry(filename)

    def delete_file(self, filename: str) -> None:
        self._check(filename)
        if self.files.pop(filename, None) is None:
            raise EntryNotFoundError(f"no registry file named {filename!r}")
        self.executables.discard(filename)
