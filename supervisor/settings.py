"""Settings of a service (a node, a manager) and of one supervisor node, from the command line
or the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .contract import StrictModel

__all__ = ["ServiceSettings", "Settings"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host names a loopback-bound API always answers to."""


class ServiceSettings(StrictModel):
    """What every served node API is told: its folders, its REST address, token and logging."""

    STATE_DIR_NAME: ClassVar[str] = ".pipevisor"  # in REGISTRY, unless state_dir is given

    registry: Path = Field(description="The registry folder.")
    state_dir: Path | None = Field(
        None,
        description="Where desired state and the audit log live (default: in REGISTRY).",
    )
    backgrounds: Path | None = Field(
        None, description="Folder of background images (default: 'backgrounds' beside REGISTRY)."
    )
    api_host: str = Field("127.0.0.1", description="Interface the REST API listens on.")
    api_port: int = Field(8090, ge=0, le=65535, description="REST port (0: any free port).")
    token: str | None = Field(
        None, description="Operator bearer token, which every change needs (None: no protection)."
    )
    viewer_token: str | None = Field(
        None,
        description="Viewer bearer token: once given, reads need it or the operator token, and "
        "viewers see secrets redacted; needs an operator token.",
    )
    allowed_hosts: list[str] = Field(
        [],
        description="Host names, beyond 127.0.0.1, localhost and [::1], that a loopback-bound "
        "API answers to (others get 421, against DNS rebinding).",
    )
    log_format: Literal["console", "json"] = Field("console", description="Log format.")
    max_upload_bytes: int = Field(64 * 2**20, gt=0, description="Largest registry upload.")

    @property
    def accepted_hosts(self) -> frozenset[str] | None:
        """Host names the API answers to: any (None) unless it is bound to loopback."""
        if not (self.api_host in LOOPBACK_NAMES or self.api_host.startswith("127.")):
            return None
        return LOOPBACK_NAMES | {self.api_host} | {h.lower() for h in self.allowed_hosts}

    @model_validator(mode="after")
    def _tokens(self) -> ServiceSettings:
        if self.viewer_token and not self.token:
            raise ValueError("a viewer token needs an operator token")
        if self.viewer_token and self.viewer_token == self.token:
            raise ValueError("the viewer token must differ from the operator token")
        return self

    @model_validator(mode="after")
    def _folders(self) -> ServiceSettings:
        if self.state_dir is None:
            self.state_dir = self.registry / self.STATE_DIR_NAME
        if self.backgrounds is None:
            self.backgrounds = self.registry.absolute().parent / "backgrounds"
        return self


class Settings(ServiceSettings):
    """Everything ``pipevisor serve`` can be told."""

    control_host: str = Field(
        "127.0.0.1", description="Interface of the CONFIG and LOG sockets (programs are local)."
    )
    stream_host: str = Field(
        "127.0.0.1", description="Interface programs bind their OUTPUT on ('0.0.0.0' for all)."
    )
    advertise_host: str | None = Field(
        None, description="Host name put in stream URLs given to clients (default: stream_host)."
    )
    port_range: tuple[int, int] = Field(
        (11100, 12100), description="Output ports handed to instances, [first, last)."
    )
    status_interval: float = Field(
        1.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds between program status messages (at most 3600).",
    )
    start_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="A program alive this long (s, 0..3600) without Ready counts as running.",
    )
    log_capacity: int = Field(2000, ge=10, description="Log entries kept per instance.")
    log_rate: float = Field(
        5000.0, gt=0, allow_inf_nan=False, description="Log lines per second stored per instance."
    )
    monitor_interval: float = Field(
        1.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds between two samples of the instances' processes and of the node "
        "(CPU, memory, threads, descriptors) and stall checks; 0 turns monitoring off.",
    )

    manager: str | None = Field(
        None,
        description="URL of the cluster manager this node works for: the node registers with "
        "it and runs only what it is told (nothing is restored or started by the node itself, "
        "so a node that comes back never runs what the manager has moved elsewhere).",
    )
    node_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Name of this node in the cluster (default: the host name).",
    )
    node_url: str | None = Field(
        None,
        description="URL the manager reaches this node's API at (default: http://HOST:PORT as "
        "bound).",
    )

    @property
    def managed(self) -> bool:
        """The node works for a cluster manager, which owns its desired state."""
        return self.manager is not None

    @model_validator(mode="after")
    def _ports(self) -> Settings:
        if self.port_range[0] >= self.port_range[1]:
            raise ValueError(f"port_range {self.port_range} is empty")
        return self

    @property
    def public_host(self) -> str:
        """Host name clients use to reach output streams."""
        if self.advertise_host:
            return self.advertise_host
        return "127.0.0.1" if self.stream_host in ("0.0.0.0", "*") else self.stream_host
