"""The audit log: who changed what on this node, when, and whether it was allowed.

Every mutating REST call (allowed or refused) becomes one ``AuditRecord``: a JSON line appended
to a file, and an entry of a bounded in-memory ring that ``GET /api/v1/audit`` shows.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog
from pydantic import Field, field_validator

from .contract import StrictModel

__all__ = ["AuditLog", "AuditRecord"]

log = structlog.get_logger(__name__)


class AuditRecord(StrictModel):
    """One mutating request and its outcome."""

    time: float = Field(description="Unix time the request arrived, s.")
    iso_time: str = Field(description="The same time in ISO 8601, UTC.")
    client: str | None = Field(None, description="Client address (host:port) as the server saw it.")
    auth: str = Field(description="'token' (a valid bearer token) or 'anonymous'.")
    method: str = Field(description="HTTP method.")
    path: str = Field(description="Request path.")
    target: str | None = Field(None, description="Instance or registry file the call is about.")
    body: str | None = Field(
        None, description="Request body of config changes and creations, truncated."
    )
    body_truncated: bool = Field(False, description="The body was longer than what is kept.")
    status: int = Field(description="HTTP status code of the answer.")

    @field_validator("client", "path", "target", "body", mode="after")
    @classmethod
    def _escape_surrogates(cls, value: str | None) -> str | None:
        """A refused request may name a string that is not Unicode (a lone surrogate): keep it
        escaped, so the record can still be written and shown."""
        if value is None or value.isascii():
            return value
        return value.encode("utf-8", "backslashreplace").decode("utf-8")

    @classmethod
    def at(cls, time: float, **fields: object) -> AuditRecord:
        """A record of ``time`` with its ISO form filled in."""
        iso = datetime.fromtimestamp(time, UTC).isoformat(timespec="milliseconds")
        return cls.model_validate({"time": time, "iso_time": iso, **fields})


class AuditLog:
    """Append-only JSON-lines file plus the newest ``capacity`` records in memory.

    Args:
        path: The JSON-lines file, opened in append mode (its folder is created); None keeps
            records in memory only.
        capacity: Records kept in memory.
    """

    def __init__(self, path: Path | None, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError(f"audit capacity must be at least 1, not {capacity}")
        self.path = path
        self._records: deque[AuditRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def record(self, record: AuditRecord) -> None:
        """Keep ``record`` and append it to the file: one write and one flush."""
        line = record.model_dump_json() + "\n"
        with self._lock:
            self._records.append(record)
            if self._file is not None:
                try:
                    self._file.write(line)
                    self._file.flush()
                except OSError as exc:  # a full disk: kept in memory, the call still answered
                    log.error("audit_write_failed", path=str(self.path), reason=str(exc))

    def tail(self, n: int = 100) -> list[AuditRecord]:
        """The newest ``n`` records, oldest first."""
        with self._lock:
            if n <= 0:
                return []
            return list(self._records)[-n:]

    def close(self) -> None:
        """Close the file; records are still kept in memory afterwards."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
