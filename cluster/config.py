"""The cluster's rules: its nodes, node groups, pinned instances, health checks.

Loaded from a JSON file (``pipevisor manager --config cluster.json``), shown and replaced over
REST (``/api/v1/cluster/rules``). CamServer's ``servers.json`` is read too, so a facility can
bring its placement rules along (see ``from_servers_json``).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from supervisor.contract import StrictModel
from supervisor.nodeapi.errors import InvalidConfigError

__all__ = ["ClusterConfig", "GroupConfig", "HealthConfig", "NodeConfig", "Pin", "load_config"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Pin(StrictModel):
    """An instance fixed to a node, optionally with a fixed output port."""

    instance: str = Field(description="Instance name.")
    port: int | None = Field(None, ge=1, le=65535, description="Fixed output port.")


class NodeConfig(StrictModel):
    """One node of the cluster and the rules that concern it."""

    name: str = Field(pattern=_NAME, description="Node name (what the node registers as).")
    url: str | None = Field(
        None, description="Base URL of the node's API; None: learnt when the node registers."
    )
    enabled: bool = Field(True, description="False: the node takes no instance at all.")
    generic: bool = Field(
        True,
        description="Takes instances that no group claims (CamServer's 'expanding'). A node "
        "of a group is dedicated to it unless this is set explicitly.",
    )
    groups: list[str] = Field(
        default_factory=list, description="Groups (e.g. beamlines) whose instances run here."
    )
    cameras: list[str] = Field(
        default_factory=list, description="Cameras whose pipelines prefer this node."
    )
    pins: list[Pin] = Field(
        default_factory=list, description="Instances that run on this node only."
    )
    token: str | None = Field(
        None, description="Bearer token of the node's API (default: the manager's own token)."
    )
    net_capacity: float = Field(
        1.25e9, gt=0, description="Network bytes/s that count as a full link (default 10 GbE)."
    )

    @model_validator(mode="before")
    @classmethod
    def _dedicated_by_default(cls, value: Any) -> Any:
        """A node listed with groups is dedicated to them unless 'generic' says otherwise."""
        if isinstance(value, dict) and value.get("groups") and "generic" not in value:
            return {**value, "generic": False}
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"node url {url!r} is not an http(s) URL")
        return url.rstrip("/")


class GroupConfig(StrictModel):
    """A group of instances (e.g. a beamline's) that only the group's nodes run."""

    instances: list[str] = Field(
        default_factory=list, description="Instance names or shell patterns ('alvra_*')."
    )
    cameras: list[str] = Field(
        default_factory=list, description="Cameras: an instance reading one belongs to the group."
    )


class HealthConfig(StrictModel):
    """How the manager decides that a node is down."""

    interval: float = Field(1.0, gt=0, description="Seconds between two checks of a node.")
    timeout: float = Field(1.0, gt=0, description="Seconds a check may take.")
    down_after: int = Field(
        3, ge=1, description="Consecutive failed checks after which a node is down."
    )


class ClusterConfig(StrictModel):
    """Everything the manager is told about its cluster."""

    nodes: list[NodeConfig] = Field(default_factory=list, description="Known nodes.")
    groups: dict[str, GroupConfig] = Field(default_factory=dict, description="Instance groups.")
    colocate: bool = Field(
        True, description="Place a pipeline on the node of the camera or instance it reads."
    )
    colocate_max_cpu: float = Field(
        90.0,
        gt=0,
        le=100,
        description="...unless that node's CPU is above this %: then the least loaded.",
    )
    health: HealthConfig = Field(default_factory=HealthConfig, description="Health checks.")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        names = [n.name for n in self.nodes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"node names listed twice: {twice}")
        pinned: dict[str, str] = {}
        for node in self.nodes:
            for pin in node.pins:
                if pin.instance in pinned:
                    raise ValueError(
                        f"instance {pin.instance!r} is pinned to both "
                        f"{pinned[pin.instance]!r} and {node.name!r}"
                    )
                pinned[pin.instance] = node.name
            unknown = [g for g in node.groups if g not in self.groups]
            if unknown:
                raise ValueError(f"node {node.name!r} names unknown groups {unknown}")
        return self

    def node(self, name: str) -> NodeConfig | None:
        """The rules of node ``name``, if it is listed."""
        return next((n for n in self.nodes if n.name == name), None)

    def pin_of(self, instance: str) -> tuple[str, Pin] | None:
        """The node ``instance`` is pinned to, and the pin."""
        for node in self.nodes:
            for pin in node.pins:
                if pin.instance == instance:
                    return node.name, pin
        return None

    def group_of(self, instance: str, source: str | None) -> str | None:
        """The group ``instance`` belongs to, by its name or by the camera it reads."""
        for group, members in self.groups.items():
            if any(fnmatch.fnmatchcase(instance, p) for p in members.instances):
                return group
            if source is not None and source in members.cameras:
                return group
        return None

    @classmethod
    def from_servers_json(cls, servers: dict[str, Any]) -> ClusterConfig:
        """CamServer's ``servers.json``: ``{url: {cameras, instances, expanding, enabled}}``.

        Each URL becomes a node named after its host and port; ``instances`` entries
        ``name[:port]`` become pins (those starting with '#' are disabled, as in CamServer).
        """
        nodes = []
        for url, rules in servers.items():
            rules = rules or {}
            parts = urlsplit(url)
            name = f"{parts.hostname}-{parts.port}" if parts.port else str(parts.hostname)
            pins = []
            for item in rules.get("instances", []):
                if item.startswith("#"):
                    continue
                instance, _, port = item.partition(":")
                if port and not port.isdigit():
                    raise ValueError(f"{url}: instance {item!r} has a port that is not a number")
                pins.append(Pin(instance=instance, port=int(port) if port else None))
            nodes.append(
                NodeConfig(
                    name=name,
                    url=url,
                    enabled=rules.get("enabled", True),
                    generic=rules.get("expanding", True),
                    cameras=rules.get("cameras", []),
                    pins=pins,
                )
            )
        return cls(nodes=nodes)


def load_config(path: Path) -> ClusterConfig:
    """The rules in ``path``: ours, or CamServer's ``servers.json`` (keyed by node URLs)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidConfigError(f"cluster config {str(path)!r} cannot be read: {exc}") from None
    try:
        if isinstance(data, dict) and data and all("://" in key for key in data):
            return ClusterConfig.from_servers_json(data)
        return ClusterConfig.model_validate(data)
    except (ValidationError, ValueError, AttributeError, TypeError) as exc:
        raise InvalidConfigError(f"cluster config {str(path)!r} is invalid: {exc}") from None
