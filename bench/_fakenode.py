"""One fake cluster node: its instances as InstanceInfo JSON, machine figures, what it was asked.

Used by ``_fakenodes.FakeServer``, which serves many of them in one process. Nothing is
spawned: an instance is the dict ``InstanceInfo(...).model_dump(mode="json")`` gives, whose
counters and rates move every second (:meth:`FakeNode.tick`), as on a real node. The machine
figures (``GET /node``) grow with what the node runs, so the manager's least-loaded placement
sees its own decisions: a camera instance costs ``CAMERA_CPU`` % of the node's CPU, a pipeline
``PIPELINE_CPU``, on top of a base load drawn per node.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from typing import Any

from _minihttp import HOST, HttpError, HttpServer, json_body
from pydantic import ValidationError

from supervisor import __version__
from supervisor.nodeapi.models import (
    CreateInstance,
    InstanceInfo,
    InstanceStats,
    NodeResources,
    ResourceStats,
)
from supervisor.nodeapi.specs import RestartPolicy

__all__ = ["FakeNode"]

API = "/api/v1"
GiB = 2**30
CAMERA_CPU = 1.2  # % of the node's 48 cores one camera instance costs
PIPELINE_CPU = 0.8
INSTANCE_MEMORY = 0.2  # % of the node's memory per instance
CAMERA_LINK_RX = 8e6  # bytes/s a camera brings in over the link
PIPELINE_LINK_TX = 0.5e6


class FakeNode:
    """One fake node: its instances as InstanceInfo JSON, figures, and what it was asked."""

    def __init__(self, name: str, seed: int, port_base: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.base_cpu = self.rng.uniform(3.0, 30.0)
        self.base_memory = self.rng.uniform(10.0, 35.0)
        self.port_base = port_base
        self.server = HttpServer(self.handle)
        self.state = "up"  # up, refusing, hanging
        self.started_at = time.time()
        self.instances: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.bytes_out = 0  # bytes of answers' bodies
        # filename -> (sha256, executable), as GET /registry/files lists them
        self.registry_files: dict[str, tuple[str, bool]] = {}
        self.backgrounds: set[str] = set()
        self.events: list[dict[str, Any]] | None = None  # the server's shared event list
        self.log_stream_url: str | None = None
        self._list: bytes | None = None
        self._next_port = port_base
        self._pid = 10_000

    # -- life -------------------------------------------------------------------------------

    def kill(self, mode: str) -> None:
        if mode == "refuse":
            self.server.close()
            self.state = "refusing"
        elif mode == "hang":
            self.server.hang()
            self.state = "hanging"
        else:
            raise HttpError(422, f"kill mode {mode!r} is not 'refuse' or 'hang'")
        self._event("killed", None, mode=mode)

    async def revive(self, fresh: bool) -> None:
        if fresh:  # a worker that restarted: empty (its manager owns the desired state)
            self.instances.clear()
            self.started_at = time.time()
            self._list = None
        if self.state == "hanging":
            self.server.resume()
        if not self.server.listening:
            await self.server.listen()
        self.state = "up"
        self._event("revived", None, fresh=fresh)

    def _event(self, kind: str, instance: str | None, **extra: Any) -> None:
        if self.events is not None:
            event = {"seq": len(self.events), "t": time.time(), "node": self.name, "kind": kind}
            self.events.append({**event, "instance": instance, **extra})

    # -- figures ----------------------------------------------------------------------------

    def tick(self) -> None:
        """One second of life: running instances' counters and rates move, as on a node."""
        now = time.time()
        for info in self.instances.values():
            if info["state"] != "running":
                continue
            stats, res = info["stats"], info["resources"]
            rate = 10.0 if info["input"] is None else 9.9
            stats["messages_in"] += 0 if info["input"] is None else 10
            stats["messages_out"] += 10
            stats["bytes_out"] += 10 * 1_310_720
            stats["rate_in"] = 0.0 if info["input"] is None else rate
            stats["rate_out"] = rate
            stats["byte_rate_out"] = rate * 1_310_720
            stats["last_pulse_id"] = (stats["last_pulse_id"] or 0) + 10
            stats["updated"] = stats["last_output_at"] = now
            stats["processing_time_avg"] = 0.004 + self.rng.random() * 0.001
            res["sampled_at"] = now
            res["cpu_percent"] = round(self.rng.uniform(20, 60), 1)
        self._list = None

    def resources(self) -> dict[str, Any]:
        cameras = sum(1 for i in self.instances.values() if i["input"] is None)
        pipelines = len(self.instances) - cameras
        cpu = self.base_cpu + CAMERA_CPU * cameras + PIPELINE_CPU * pipelines
        cpu = min(100.0, max(0.0, cpu + self.rng.uniform(-1.5, 1.5)))
        memory = min(100.0, self.base_memory + INSTANCE_MEMORY * len(self.instances))
        total = 512 * GiB
        rx, tx = CAMERA_LINK_RX * cameras, PIPELINE_LINK_TX * pipelines
        return NodeResources(
            sampled_at=time.time(),
            cpu_percent=cpu,
            cpu_count=48,
            load=[cpu * 0.48, cpu * 0.47, cpu * 0.45],
            memory_total=total,
            memory_available=int(total * (1 - memory / 100)),
            memory_percent=memory,
            net_rx_bytes_per_s=rx * 1.5,
            net_tx_bytes_per_s=tx * 1.5,
            link_rx_bytes_per_s=rx,
            link_tx_bytes_per_s=tx,
            net_rx_bytes=int(rx * 1e5),
            net_tx_bytes=int(tx * 1e5),
        ).model_dump()

    def node_info(self) -> dict[str, Any]:
        states: Counter[str] = Counter(i["state"] for i in self.instances.values())
        return {
            "version": __version__,
            "hostname": f"fake-{self.name}",
            "node_name": self.name,
            "manager": None,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "uptime": time.time() - self.started_at,
            "registry": f"/fake/{self.name}/registry",
            "instances": len(self.instances),
            "states": {
                s: states.get(s, 0)
                for s in ("starting", "running", "stopping", "stopped", "backoff", "failed")
            },
            "control_url": None,
            "log_url": None,
            "log_stream_url": self.log_stream_url,
            "stale_messages": 0,
            "malformed_control_messages": 0,
            "monitor_interval": 1.0,
            "resources": self.resources(),
        }

    # -- instances --------------------------------------------------------------------------

    def create(self, req: CreateInstance, *, on_demand: bool = False) -> dict[str, Any]:
        if req.name in self.instances:
            raise HttpError(409, f"an instance named {req.name!r} already exists")
        spec = req.input[0] if isinstance(req.input, list) else req.input
        data_url = None
        if spec is not None:
            if spec.url is not None:
                data_url = spec.url
            else:
                source = spec.source or ""
                if source not in self.instances:  # a node creates the source it needs
                    self.create(CreateInstance(name=source, entry=source), on_demand=True)
                data_url = self.instances[source]["stream"]
        if req.output is not None and req.output.port is not None:
            port = req.output.port
        else:
            port, self._next_port = self._next_port, self._next_port + 1
        now = time.time()
        restart = req.restart or RestartPolicy(mode="always" if req.permanent else "on-failure")
        running = req.start
        self._pid += 1
        info = InstanceInfo(
            name=req.name,
            entry=req.entry,
            state="running" if running else "stopped",
            desired="running" if running else "stopped",
            reason=f"started pid {self._pid}" if running else "created, not started",
            pid=self._pid if running else None,
            run=1 if running else 0,
            started_at=now if running else None,
            ready=running,
            speaks_contract=running,
            stream=f"tcp://{HOST}:{port}",
            output_mode=str(req.output.mode) if req.output is not None else "PUB",
            input=req.input,
            data_url=data_url,
            config={"camera_name": spec.source} if spec is not None and spec.source else {},
            restart_policy=restart,
            stats=InstanceStats(clients=1, updated=now if running else None),
            resources=ResourceStats(processes=1 if running else 0, rss_bytes=48 * 2**20),
            permanent=req.permanent,
            on_demand=on_demand,
        ).model_dump(mode="json")
        info["config"].update(req.config)
        self.instances[req.name] = info
        self._list = None
        self._event("created", req.name, permanent=req.permanent)
        return info

    def delete(self, name: str) -> None:
        self._get(name)
        del self.instances[name]
        self._list = None
        self._event("deleted", name)

    def _get(self, name: str) -> dict[str, Any]:
        try:
            return self.instances[name]
        except KeyError:
            raise HttpError(404, f"no instance named {name!r}") from None

    def _set_running(self, name: str, running: bool) -> dict[str, Any]:
        info = self._get(name)
        info["state"] = info["desired"] = "running" if running else "stopped"
        info["pid"] = self._pid + 1 if running else None
        self._pid += 1
        self._list = None
        return info

    def list_json(self) -> bytes:
        if self._list is None:
            self._list = json_body([self.instances[n] for n in sorted(self.instances)])
        return self._list

    # -- the API ------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, bytes]:
        if not path.startswith(API):
            return 404, b'{"detail":"Not Found"}'
        parts = path[len(API) :].strip("/").split("/")
        route = "/".join(p if i == 0 or p in _FIXED else "*" for i, p in enumerate(parts))
        self.requests[f"{method} /{route}"] += 1
        try:
            status, value = self._route(method, parts, query, body)
        except HttpError as exc:
            status, value = exc.status, {"detail": exc.detail}
        except (ValidationError, ValueError) as exc:
            status, value = 422, {"detail": str(exc)[:500]}
        if not isinstance(value, bytes):
            value = b"" if value is None else json_body(value)
        self.bytes_out += len(value)
        return status, value

    def _route(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        head, n = parts[0], len(parts)
        if head == "health" and method == "GET":
            return 200, {
                "status": "ok",
                "version": __version__,
                "uptime": time.time() - self.started_at,
            }
        if head == "node" and method == "GET":
            return 200, self.node_info()
        if head == "instances":
            if n == 1 and method == "GET":
                return 200, self.list_json()
            if n == 1 and method == "POST":
                return 201, self.create(CreateInstance.model_validate_json(body))
            name = parts[1]
            if n == 2 and method == "GET":
                return 200, self._get(name)
            if n == 2 and method == "DELETE":
                self.delete(name)
                return 204, None
            if n == 3 and method == "POST" and parts[2] in ("start", "restart"):
                return 200, self._set_running(name, True)
            if n == 3 and method == "POST" and parts[2] == "stop":
                return 200, self._set_running(name, False)
            if n == 3 and parts[2] == "config":
                return self._config(method, name, body)
            if n == 3 and parts[2] == "logs" and method == "GET":
                return 200, []
        if head == "streams" and n == 2 and method == "POST":
            name = parts[1]
            if name in self.instances:
                return 200, self._set_running(name, True)
            if f"{name}.json" not in self.registry_files:
                raise HttpError(404, f"no instance or registry entry named {name!r}")
            return 200, self.create(CreateInstance(name=name, entry=name), on_demand=True)
        if head == "registry" and n == 2 and parts[1] == "files" and method == "GET":
            return 200, [
                {"filename": f, "size": 0, "sha256": digest, "executable": executable}
                for f, (digest, executable) in sorted(self.registry_files.items())
            ]
        if head == "registry" and n == 3 and parts[1] == "files":
            if method == "PUT":
                executable = query.get("executable", ["false"])[0] == "true"
                self.registry_files[parts[2]] = (hashlib.sha256(body).hexdigest(), executable)
                return 200, {"filename": parts[2], "size": len(body), "entry": None}
            if method == "DELETE":
                self.registry_files.pop(parts[2], None)
                return 204, None
        if head == "backgrounds":
            if n == 1 and method == "GET":
                return 200, []
            if n == 3 and parts[2] == "data" and method == "PUT":
                self.backgrounds.add(parts[1])
                return 200, {"id": parts[1], "bytes": len(body)}
            if n == 2 and method == "DELETE":
                self.backgrounds.discard(parts[1])
                return 204, None
        raise HttpError(404, f"{method} {API}/{'/'.join(parts)} is not served by a fake node")

    def _config(self, method: str, name: str, body: bytes) -> tuple[int, Any]:
        info = self._get(name)
        if method == "GET":
            return 200, info["config"]
        change = json.loads(body)
        if method == "PATCH":
            info["config"] = {**info["config"], **change}
            info["config"] = {k: v for k, v in info["config"].items() if v is not None}
        elif method == "PUT":
            info["config"] = change
        else:
            raise HttpError(404, f"{method} config is not served")
        info["config_seq"] += 1
        self._list = None
        return 200, {
            "name": name,
            "config": info["config"],
            "seq": info["config_seq"],
            "applied": "live",
        }

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.server.port,
            "url": f"http://{HOST}:{self.server.port}",
            "state": self.state,
            "instances": len(self.instances),
            "permanent": sum(1 for i in self.instances.values() if i["permanent"]),
            "requests": dict(self.requests),
            "bytes_out": self.bytes_out,
            "registry_files": len(self.registry_files),
            "backgrounds": len(self.backgrounds),
        }


_FIXED = {"start", "stop", "restart", "config", "logs", "files", "data"}
