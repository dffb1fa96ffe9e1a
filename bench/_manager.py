"""A real ``pipevisor manager`` for the cluster benchmarks, and the registry and rules they use.

The cluster of ``sim_cluster.py`` and ``bench_cluster.py``: 20 nodes, three beamlines (alvra,
bernina, maloja) with two dedicated nodes each, 14 generic nodes, a few pins; 200 cameras
(20 per beamline, 140 generic) as registry entries, and a ``beam`` and a ``profile`` pipeline
entry that the benchmarks create reading them.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from _harness import PYTHON, ROOT, free_port, kill_tree, wait_for

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
class ManagerServer:
    """A real ``pipevisor manager`` on loopback in its own session, with an API client."""

    registry: Path
    state_dir: Path
    config: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self, timeout: float = 30.0) -> ManagerServer:
        self.log_path = self.state_dir.parent / f"manager-{self.port}.log"
        args = [
            PYTHON,
            "-m",
            "supervisor.cli",
            "manager",
            "--registry",
            str(self.registry),
            "--state-dir",
            str(self.state_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-format",
            "json",
        ]
        if self.config is not None:
            args += ["--config", str(self.config)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

        def healthy() -> bool:
            assert self.proc is not None
            assert self.client is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"manager exited {self.proc.returncode}:\n{self.logs()[-3000:]}")
            return self.client.get("/health").status_code == 200

        try:
            wait_for(healthy, timeout=timeout, what="the manager's GET /api/v1/health")
        except RuntimeError as exc:
            raise SystemExit(f"{exc}\nmanager log:\n{self.logs()[-3000:]}") from None
        return self

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.api("GET", "/cluster/nodes").json()}

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the manager stops checking; nodes keep their instances), then SIGKILL."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"warning: manager did not stop within {timeout} s; killing it")
        kill_tree([self.proc])
        self.proc.wait()
