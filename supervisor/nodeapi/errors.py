"""Domain errors of the node API (raised by a node and by a manager alike).

The core raises these; only the edge (the FastAPI app factory, the CLI) maps them to HTTP status
codes or exit codes: not found -> 404, invalid input -> 422, malformed body -> 400, payload too
large -> 413, conflict -> 409, unavailable -> 503, storage -> 507. Every message is a sentence
for a person and quotes the bad input.
"""

from __future__ import annotations

__all__ = [
    "BackgroundNotFoundError",
    "ConflictError",
    "EntryNotFoundError",
    "InstanceNotFoundError",
    "InvalidConfigError",
    "InvalidEntryError",
    "InvalidNameError",
    "InvalidValueError",
    "MalformedRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "StorageError",
    "SupervisorError",
    "UnavailableError",
]


class SupervisorError(Exception):
    """Base of every domain error; ``message`` is what a person reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(SupervisorError):
    """The named thing does not exist."""


class EntryNotFoundError(NotFoundError):
    """No registry entry or registry file of that name."""


class InstanceNotFoundError(NotFoundError):
    """No instance of that name."""


class InvalidNameError(SupervisorError):
    """A name (of a file, an entry, an instance) is refused, e.g. it would leave the registry."""


class InvalidEntryError(SupervisorError):
    """A registry entry (e.g. an uploaded JSON config) does not validate."""


class InvalidConfigError(SupervisorError):
    """A configuration of the supervisor or of an instance is invalid."""


class InvalidValueError(SupervisorError):
    """A value no stored document may hold: NaN, an infinity, a string that is not Unicode."""


class MalformedRequestError(SupervisorError):
    """A request body that cannot be read: not UTF-8, not JSON, nested too deep (400)."""


class PayloadTooLargeError(SupervisorError):
    """An upload is larger than the configured limit."""


class ConflictError(SupervisorError):
    """The request conflicts with the current state (e.g. the name is taken)."""


class UnavailableError(SupervisorError):
    """Something the request needs does not answer now (e.g. the cluster node that runs it)."""


class BackgroundNotFoundError(NotFoundError):
    """No background of that id, or none for that camera."""


class StorageError(SupervisorError):
    """The node's state cannot be saved (a full disk, a read-only folder): the change is refused
    and nothing of it is kept; the message names the reason (errno or SQLite error)."""
