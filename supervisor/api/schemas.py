"""Small answers that only the REST API gives (the node API models are in ``nodeapi.models``)."""

from __future__ import annotations

from pydantic import Field

from ..contract import StrictModel
from ..nodeapi.models import Entry

__all__ = ["Health", "StreamUrl", "UploadResult", "Version"]


class Health(StrictModel):
    """Answer of GET /health."""

    status: str = Field(
        "ok", description="'ok' while the node answers and saves its state, else 'degraded'."
    )
    version: str = Field(description="pipevisor version.")
    uptime: float = Field(description="Seconds since the supervisor started.")
    store: str = Field(
        "ok", description="'ok', or why the node's state cannot be saved (errno, SQLite error)."
    )


class Version(StrictModel):
    """Answer of GET /version."""

    version: str = Field(description="pipevisor version.")
    api: str = Field("v1", description="REST API version.")


class StreamUrl(StrictModel):
    """Answer of GET /logs/stream."""

    url: str = Field(
        description="ZMQ PUB where every instance's log entries are re-published, "
        "one topic per instance name."
    )


class UploadResult(StrictModel):
    """Answer of PUT /registry/files/{filename}."""

    filename: str = Field(description="The registry file written.")
    size: int = Field(description="Its size in bytes.")
    entry: Entry | None = Field(
        description="The entry that now carries the file's stem; null when the file is not an "
        "entry by itself (e.g. a data file used by a script)."
    )
