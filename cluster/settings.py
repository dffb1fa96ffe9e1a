"""Settings of the cluster manager, from the command line or the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from supervisor.settings import ServiceSettings

__all__ = ["ManagerSettings"]


class ManagerSettings(ServiceSettings):
    """Everything ``pipevisor manager`` can be told."""

    STATE_DIR_NAME: ClassVar[str] = ".pipevisor-manager"

    registry: Path = Field(description="The cluster's registry folder: its files reach every node.")
    config: Path | None = Field(
        None, description="The rules (JSON, ours or CamServer's servers.json); None: no rules."
    )
    api_port: int = Field(8080, ge=0, le=65535, description="REST port (0: any free port).")
    log_host: str = Field(
        "127.0.0.1", description="Interface of the merged log stream (a ZMQ PUB)."
    )
    token: str | None = Field(
        None,
        description="Bearer token of mutating endpoints, and of the nodes' APIs unless a node's "
        "rules give its own.",
    )
