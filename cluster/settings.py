"""Settings of the cluster manager, from the command line or the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from supervisor.contract import StrictModel

__all__ = ["ManagerSettings"]


class ManagerSettings(StrictModel):
    """Everything ``pipevisor manager`` can be told."""

    registry: Path = Field(description="The cluster's registry folder: its files reach every node.")
    config: Path | None = Field(
        None, description="The rules (JSON, ours or CamServer's servers.json); None: no rules."
    )
    state_dir: Path | None = Field(
        None, description="Placements and audit log (default: REGISTRY/.pipevisor-manager)."
    )
    backgrounds: Path | None = Field(
        None, description="Background images (default: 'backgrounds' beside REGISTRY)."
    )
    api_host: str = Field("127.0.0.1", description="Interface the REST API listens on.")
    api_port: int = Field(8080, ge=0, le=65535, description="REST port (0: any free port).")
    log_host: str = Field(
        "127.0.0.1", description="Interface of the merged log stream (a ZMQ PUB)."
    )
    token: str | None = Field(
        None,
        description="Bearer token of mutating endpoints, and of the nodes' APIs unless a node's "
        "rules give its own.",
    )
    log_format: Literal["console", "json"] = Field("console", description="Manager log format.")
    max_upload_bytes: int = Field(64 * 2**20, gt=0, description="Largest registry upload.")

    @model_validator(mode="after")
    def _defaults(self) -> ManagerSettings:
        if self.state_dir is None:
            self.state_dir = self.registry / ".pipevisor-manager"
        if self.backgrounds is None:
            self.backgrounds = self.registry.absolute().parent / "backgrounds"
        return self
