"""Desired state on disk: which instances exist, what they run, and whether they should run.

One SQLite database (stdlib ``sqlite3``, WAL) with one row per instance: a change writes its own
row, whatever the number of instances, and either commits whole or is refused with a
``StorageError`` naming the reason. The JSON file of the previous version is imported once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field, ValidationError

from .contract import StrictModel
from .jsontext import check_value
from .nodeapi.errors import StorageError, SupervisorError
from .nodeapi.specs import InputSpec, OutputSpec, RestartPolicy

__all__ = ["InstanceRecord", "StateStore"]

log = structlog.get_logger(__name__)

DB_NAME = "state.db"
LEGACY_NAME = "instances.json"  # the whole-file store of the previous version
_TEMP_PREFIXES = (".state-",)  # temp files of the old atomic writes, left by a kill


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


def _reason(exc: BaseException) -> str:
    """The errno or SQLite error name, with its text: what a person needs to fix it."""
    if isinstance(exc, OSError) and exc.errno:
        return f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno, exc.errno)})"
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)


class StateStore:
    """Instance records in ``state_dir/state.db``, one row each.

    ``open`` creates (or opens) the database, removes stale temp files and imports the legacy
    JSON file; ``put`` and ``delete`` commit one row each, or join the open ``transaction``.
    Every failure to write raises ``StorageError`` and is kept as ``last_error`` until a write
    succeeds again.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self.last_error: str | None = None
        self._db: sqlite3.Connection | None = None
        self._depth = 0  # nested transactions: one commit at the outermost end

    # -- opening -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the database. Raises ``StorageError`` when the state folder is unusable."""
        if self._db is not None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._remove_temp_files()
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # durable at each commit, as fsync was
                db.execute(
                    "CREATE TABLE IF NOT EXISTS instances "
                    "(name TEXT PRIMARY KEY, record TEXT NOT NULL)"
                )
            except BaseException:
                db.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"the state folder {self.state_dir} is not usable: {_reason(exc)}"
            ) from None
        self._db = db
        self._import_legacy()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _remove_temp_files(self) -> None:
        for child in self.state_dir.iterdir():
            if child.name.startswith(_TEMP_PREFIXES) and child.is_file():
                with contextlib.suppress(OSError):
                    child.unlink()
                    log.info("state_temp_removed", path=str(child))

    def _import_legacy(self) -> None:
        """The previous version's ``instances.json``: imported once, then renamed aside."""
        legacy = self.state_dir / LEGACY_NAME
        if not legacy.exists():
            return
        try:
            raw = json.loads(legacy.read_bytes())
            rows = raw.get("instances", []) if isinstance(raw, dict) else None
            if not isinstance(rows, list):
                raise ValueError("not an object with a list of 'instances'")
        except (OSError, ValueError) as exc:
            log.error("state_import_unreadable", path=str(legacy), error=str(exc))
            rows = []
        with self.transaction():
            for row in rows:
                record = self._validated(row)
                if record is not None:
                    self._write(record.name, record.model_dump_json())
        done = legacy.with_name(LEGACY_NAME + ".imported")
        try:
            os.replace(legacy, done)
        except OSError as exc:
            raise StorageError(f"cannot rename {legacy} aside: {_reason(exc)}") from None
        log.info("state_imported", path=str(legacy), instances=len(rows), kept_as=str(done))

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> list[InstanceRecord]:
        """Every saved record; a row that no longer validates is skipped and logged alone."""
        self.open()
        assert self._db is not None
        try:
            rows = self._db.execute("SELECT name, record FROM instances ORDER BY rowid").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {_reason(exc)}") from None
        records = []
        for name, text in rows:
            try:
                raw = json.loads(text)
            except ValueError as exc:
                log.error("state_record_skipped", instance=ascii(name), error=str(exc))
                continue
            record = self._validated(raw)
            if record is not None:
                records.append(record)
        return records

    @staticmethod
    def _validated(raw: Any) -> InstanceRecord | None:
        try:
            check_value(raw, "instance record")
            return InstanceRecord.model_validate(raw)
        except (ValidationError, SupervisorError) as exc:
            name = raw.get("name") if isinstance(raw, dict) else None
            log.error("state_record_skipped", instance=ascii(name), error=str(exc))
            return None

    # -- writing -----------------------------------------------------------------------------

    def put(self, record: InstanceRecord) -> None:
        """Save ``record`` (its own row). Raises ``StorageError``."""
        # ASCII JSON: a string that is not Unicode is escaped, and skipped alone at load.
        self._write(record.name, json.dumps(record.model_dump(mode="json"), ensure_ascii=True))

    def delete(self, name: str) -> None:
        """Forget the record ``name``. Raises ``StorageError``."""
        self._write(name, None)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Many puts and deletes, committed together at the end (or none of them)."""
        self.open()
        assert self._db is not None
        if self._depth == 0:
            self._run("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0 and self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._run("COMMIT")

    def _write(self, name: str, text: str | None) -> None:
        self.open()
        if text is None:
            self._run("DELETE FROM instances WHERE name = ?", (name,))
        else:
            self._run(
                "INSERT INTO instances (name, record) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET record = excluded.record",
                (name, text),
            )

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        assert self._db is not None
        try:
            self._db.execute(sql, args)
        except (OSError, sqlite3.Error) as exc:
            if sql == "COMMIT" and self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            self.last_error = f"cannot write {self.path}: {_reason(exc)}"
            raise StorageError(self.last_error) from None
        if self._depth == 0 and not sql.startswith("BEGIN"):
            self.last_error = None

    def health(self) -> str:
        """'ok', or the last error of a write that failed (until one succeeds again)."""
        return "ok" if self.last_error is None else self.last_error
