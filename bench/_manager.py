"""A real ``pipevisor manager`` for the cluster benchmarks, and the registry and rules they use.

The cluster of ``sim_cluster.py`` and ``bench_cluster.py``: 20 nodes, three beamlines (alvra,
bernina, maloja) with two dedicated nodes each, 14 generic nodes, a few pins; 200 cameras
(20 per beamline, 140 generic) as registry entries, and a ``beam`` and a ``profile`` pipeline
entry that the benchmarks create reading them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil
from _harness import SupervisorServer

__all__ = [
    "BEAMLINES",
    "ManagerServer",
    "cameras",
    "cluster_rules",
    "pipelines",
    "write_registry",
]

BEAMLINES = {"alvra": ("node01", "node02"), "bernina": ("node03", "node04")}
BEAMLINES |= {"maloja": ("node05", "node06")}
HOT_NODE = "node19"  # a generic node whose CPU is above colocate_max_cpu (90 %)
PINS = {  # instance -> (node, port)
    "cam007": ("node10", 19001),  # a generic camera on a fixed node and port
    "cam013": (HOT_NODE, 19002),  # a camera pinned to the busy node: its pipelines go elsewhere
    "p0001-beam": ("node02", None),  # an alvra pipeline fixed to one of alvra's nodes
}
PREFERRED = {"node08": ["cam020", "cam021"], "node09": ["cam030"]}  # nodes' "cameras" lists


def cameras(count: int = 200) -> list[str]:
    """Camera names: a tenth per beamline (``alvra-cam01``...), the rest generic (``cam001``...)."""
    names = [f"{bl}-cam{i:02d}" for bl in BEAMLINES for i in range(1, count // 10 + 1)]
    return names + [f"cam{i:03d}" for i in range(1, count - len(names) + 1)]


def pipelines(cams: list[str], count: int = 300) -> list[dict[str, Any]]:
    """``count`` pipeline create requests: a permanent ``beam`` per camera, then a
    non-permanent ``profile`` on the first cameras. Names do not carry the beamline: a
    pipeline belongs to a group by the camera it reads."""
    out: list[dict[str, Any]] = []
    for kind, permanent in (("beam", True), ("profile", False)):
        for cam in cams:
            if len(out) == count:
                return out
            out.append(
                {
                    "name": f"p{len(out):04d}-{kind}",
                    "entry": kind,
                    "input": {"camera": cam},
                    "permanent": permanent,
                }
            )
    return out


def write_registry(registry: Path, cams: list[str]) -> None:
    """One camera_simulation entry per camera, and the two pipeline entries."""
    registry.mkdir(parents=True, exist_ok=True)
    for cam in cams:
        (registry / f"{cam}.json").write_text(
            json.dumps(
                {
                    "description": f"camera {cam}",
                    "builtin": "camera_simulation",
                    "parameters": {"width": 1280, "height": 1024, "rate": 10},
                }
            )
        )
    for kind in ("beam", "profile"):
        (registry / f"{kind}.json").write_text(
            json.dumps(
                {
                    "description": f"{kind} of a camera",
                    "builtin": "beam_metrics",
                    "parameters": {"image_good_region": {"threshold": 0.3}},
                }
            )
        )


def cluster_rules(urls: dict[str, str], cams: list[str]) -> dict[str, Any]:
    """The rules file: beamline nodes dedicated to their group, generic nodes, pins."""
    dedicated = {node: bl for bl, nodes in BEAMLINES.items() for node in nodes}
    nodes = []
    for name, url in sorted(urls.items()):
        node: dict[str, Any] = {"name": name, "url": url}
        if name in dedicated:
            node["groups"] = [dedicated[name]]
        pins = [
            {"instance": inst, **({"port": port} if port else {})}
            for inst, (where, port) in PINS.items()
            if where == name
        ]
        if pins:
            node["pins"] = pins
        if name in PREFERRED:
            node["cameras"] = PREFERRED[name]
        nodes.append(node)
    groups = {
        bl: {"instances": [f"{bl}-*"], "cameras": [c for c in cams if c.startswith(f"{bl}-")]}
        for bl in BEAMLINES
    }
    return {"nodes": nodes, "groups": groups}


@dataclass
class ManagerServer(SupervisorServer):
    """A real ``pipevisor manager`` on loopback in its own session, with an API client."""

    command: ClassVar[str] = "manager"
    log_name: ClassVar[str] = "manager"
    config: Path | None = None

    def start(self, timeout: float = 30.0) -> ManagerServer:
        if self.config is not None and "--config" not in self.extra_args:
            self.extra_args = [*self.extra_args, "--config", str(self.config)]
        super().start(timeout)
        return self

    @property
    def base(self) -> str:
        """The URL nodes register with (``--manager``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.api("GET", "/cluster/nodes").json()}
