"""An in-memory fake of the Supervisor the API serves, for unit tests of the API and the CLI.

The real Supervisor has system tests with real processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from supervisor.backgrounds import BackgroundInfo, BackgroundStore, background_id
from supervisor.errors import (
    ConflictError,
    EntryNotFoundError,
    InstanceNotFoundError,
    InvalidConfigError,
    InvalidEntryError,
    InvalidNameError,
    PayloadTooLargeError,
)
from supervisor.logring import LogEntry
from supervisor.mergepatch import merge_patch
from supervisor.preview import Preview, check_preview, render_preview
from supervisor.registry import Entry, EntryKind
from supervisor.registry_files import RegistryFile
from supervisor.settings import Settings
from supervisor.specs import EntrySpec, RestartPolicy
from supervisor.views import ConfigResult, CreateInstance, InstanceInfo, InstanceState

TOKEN = "s3cret-token"
UPLOAD_LIMIT = 4096


class FakeRegistry:
    """Files in a dict; names judged like the real registry (traversal -> InvalidNameError)."""

    def __init__(self, max_upload_bytes: int) -> None:
        self.max_upload_bytes = max_upload_bytes
        self.files: dict[str, bytes] = {}
        self.executables: set[str] = set()

    @staticmethod
    def _check(filename: str) -> None:
        if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
            raise InvalidNameError(f"invalid file name {filename!r}: it must be a single file name")

    def _entry(self, filename: str) -> Entry | None:
        stem = filename.rsplit(".", 1)[0] if "." in filename else filename
        fields: dict[str, Any] = {"name": stem, "filename": filename, "modified": 1.0e9}
        if filename.endswith(".json"):
            try:
                spec = EntrySpec.model_validate_json(self.files[filename])
            except ValueError as exc:
                return Entry(**fields, kind=EntryKind.CONFIG, valid=False, error=str(exc)[:200])
            return Entry(**fields, kind=EntryKind.CONFIG, valid=True, spec=spec, argv=["run"])
        if filename.endswith(".py"):
            spec = EntrySpec(program=filename)
            return Entry(**fields, kind=EntryKind.SCRIPT, valid=True, spec=spec, argv=["py"])
        if filename in self.executables:
            spec = EntrySpec(program=filename)
            return Entry(**fields, kind=EntryKind.EXECUTABLE, valid=True, spec=spec, argv=["x"])
        return None

    def entries(self) -> list[Entry]:
        found = (self._entry(f) for f in sorted(self.files))
        return [e for e in found if e is not None]

    def get(self, name: str) -> Entry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise EntryNotFoundError(f"no registry entry named {name!r}")

    def file_list(self) -> list[RegistryFile]:
        return [
            RegistryFile(
                filename=name,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                executable=name in self.executables,
            )
            for name, data in sorted(self.files.items())
        ]

    def read_file(self, filename: str) -> bytes:
        self._check(filename)
        try:
            return self.files[filename]
        except KeyError:
            raise EntryNotFoundError(f"no registry file named {filename!r}") from None

    def write_file(self, filename: str, data: bytes, *, executable: bool = False) -> Entry | None:
        self._check(filename)
        if len(data) > self.max_upload_bytes:
            raise PayloadTooLargeError(f"{filename!r} is {len(data)} bytes, over the limit")
        if filename.endswith(".json"):
            try:
                json.loads(data)
            except ValueError as exc:
                raise InvalidEntryError(f"{filename}: not valid JSON: {exc}") from exc
        self.files[filename] = data
        if executable:
            self.executables.add(filename)
        return self._entry(filename)

    def delete_file(self, filename: str) -> None:
        self._check(filename)
        if self.files.pop(filename, None) is None:
            raise EntryNotFoundError(f"no registry file named {filename!r}")
        self.executables.discard(filename)


class FakeSupervisor:
    """The interface of ``supervisor.node.Supervisor`` over dicts.

    A config patch with a negative ``exposure`` is refused the way a program refuses it; an
    instance in state ``stopping`` refuses config changes with a conflict. ``follow_logs``
    yields the stored entries, then ends, or with ``follow_forever`` waits for more until it is
    closed (``follow_closed`` counts the closed followers).
    """

    def __init__(self, registry_dir: Path) -> None:
        self.settings = Settings(registry=registry_dir, max_upload_bytes=UPLOAD_LIMIT)
        self.registry = FakeRegistry(UPLOAD_LIMIT)
        self.backgrounds = BackgroundStore(registry_dir / "backgrounds", UPLOAD_LIMIT)
        self.camera_images: dict[str, list[np.ndarray]] = {}  # backgrounds and previews read
        self.started_at = time.time() - 5.0
        self.instances: dict[str, InstanceInfo] = {}
        self.logs: dict[str, list[LogEntry]] = {}
        self.follow_forever = False
        self.follow_closed = 0
        self.fail_node_info = False
        self._next_port = 11100

    def _get(self, name: str) -> InstanceInfo:
        try:
            return self.instances[name]
        except KeyError:
            raise InstanceNotFoundError(f"no instance named {name!r}") from None

    def add_log(
        self, name: str, message: str, *, level: str = "info", source: str = "stdout"
    ) -> LogEntry:
        """Store one log entry of ``name``."""
        ring = self.logs.setdefault(name, [])
        entry = LogEntry(
            seq=len(ring) + 1,
            time=1.7e9 + len(ring),
            instance=name,
            run=1,
            source=source,
            level=level,
            message=message,
        )
        ring.append(entry)
        return entry

    def list_instances(self) -> list[InstanceInfo]:
        return [self.instances[n] for n in sorted(self.instances)]

    def list_instances_json(self) -> bytes:
        return TypeAdapter(list[InstanceInfo]).dump_json(self.list_instances())

    def get_instance(self, name: str) -> InstanceInfo:
        return self._get(name)

    async def create_instance(self, req: CreateInstance) -> InstanceInfo:
        if req.name in self.instances:
            raise ConflictError(f"an instance named {req.name!r} already exists")
        entry = self.registry.get(req.entry)
        if not entry.valid:
            raise InvalidEntryError(f"entry {req.entry!r} is invalid: {entry.error}")
        base = entry.spec.parameters if entry.spec is not None else {}
        self._next_port += 1
        info = InstanceInfo(
            name=req.name,
            entry=req.entry,
            state=InstanceState.RUNNING if req.start else InstanceState.STOPPED,
            desired="running" if req.start else "stopped",
            pid=4242 if req.start else None,
            stream=f"tcp://127.0.0.1:{self._next_port}",
            config=merge_patch(base, req.config),
            restart_policy=req.restart or RestartPolicy(),
        )
        self.instances[req.name] = info
        self.logs.setdefault(req.name, [])
        return info

    async def request_stream(self, name: str) -> InstanceInfo:
        if name not in self.instances:
            await self.create_instance(CreateInstance(name=name, entry=name, start=False))
            self.instances[name].on_demand = True
        return await self.start_instance(name)

    async def start_instance(self, name: str) -> InstanceInfo:
        info = self._get(name)
        entry = self.registry.get(info.entry)
        if not entry.valid:
            raise ConflictError(f"cannot start {name!r}: entry {entry.name!r} is invalid")
        info.state, info.desired, info.pid = InstanceState.RUNNING, "running", 4242
        return info

    async def stop_instance(self, name: str) -> InstanceInfo:
        info = self._get(name)
        info.state, info.desired, info.pid = InstanceState.STOPPED, "stopped", None
        info.reason = "stopped by request"
        return info

    async def restart_instance(self, name: str) -> InstanceInfo:
        await self.stop_instance(name)
        info = await self.start_instance(name)
        info.restarts += 1
        return info

    async def delete_instance(self, name: str) -> None:
        await self.stop_instance(name)
        del self.instances[name]
        self.logs.pop(name, None)

    def get_config(self, name: str) -> dict[str, Any]:
        return self._get(name).config

    async def _apply(self, name: str, config: dict[str, Any]) -> ConfigResult:
        info = self._get(name)
        if info.state is InstanceState.STOPPING:
            raise ConflictError(f"instance {name!r} is stopping")
        exposure = config.get("exposure")
        if isinstance(exposure, int | float) and exposure < 0:
            raise InvalidConfigError(f"{name!r} refused the config: exposure {exposure} < 0")
        info.config = config
        info.config_seq += 1
        applied = "live" if info.state is InstanceState.RUNNING else "next_start"
        return ConfigResult(name=name, config=config, seq=info.config_seq, applied=applied)

    async def update_config(self, name: str, patch: dict[str, Any]) -> ConfigResult:
        return await self._apply(name, merge_patch(self._get(name).config, patch))

    async def set_config(self, name: str, config: dict[str, Any]) -> ConfigResult:
        return await self._apply(name, config)

    def tail_logs(self, name: str, n: int = 100, since_seq: int | None = None) -> list[LogEntry]:
        self._get(name)
        ring = self.logs.get(name, [])
        if since_seq is None:
            return ring[-n:]
        return [e for e in ring if e.seq > since_seq][:n]

    def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
        self._get(name)
        return self._follow(name, since_seq)

    async def _follow(self, name: str, since_seq: int | None) -> AsyncIterator[LogEntry]:
        try:
            for entry in list(self.logs.get(name, [])):
                if since_seq is None or entry.seq > since_seq:
                    yield entry
                    await asyncio.sleep(0)
            if self.follow_forever:
                await asyncio.Event().wait()
        finally:
            self.follow_closed += 1

    def log_stream_url(self) -> str:
        return "tcp://127.0.0.1:11099"

    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        info = self._get(name)
        images = self.camera_images.get(name, [])
        if info.state != InstanceState.RUNNING or len(images) < n_images:
            raise ConflictError(f"only {len(images)} of {n_images} images arrived from {name!r}")
        total = np.sum(images[:n_images], axis=0, dtype=np.int64)
        mean = (total // n_images).astype(images[0].dtype)
        return self.backgrounds.save(background_id(name), mean)

    async def preview(
        self,
        name: str,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview:
        """The last of ``camera_images[name]``, as pulse id 1000 + its index."""
        info = self._get(name)
        check_preview(colormap, width, vmin, vmax)
        if info.state != InstanceState.RUNNING:
            raise ConflictError(f"instance {name!r} is {info.state}; start it first")
        images = self.camera_images.get(name, []) if channel == "image" else []
        if not images:
            raise ConflictError(f"no message arrived from {name!r} in 5 s")
        return render_preview(
            images[-1],
            colormap=colormap,
            width=width,
            vmin=vmin,
            vmax=vmax,
            pulse_id=1000 + len(images) - 1,
        )

    def node_info(self) -> dict[str, Any]:
        if self.fail_node_info:
            raise RuntimeError("secret internal detail")
        states: dict[str, int] = {}
        for info in self.instances.values():
            states[str(info.state)] = states.get(str(info.state), 0) + 1
        return {
            "version": "0.1.0",
            "hostname": "fakehost",
            "uptime": time.time() - self.started_at,
            "instances": len(self.instances),
            "states": states,
        }


def add_camera_entry(fake: FakeSupervisor, name: str = "camera") -> None:
    """A valid JSON entry ``name`` with parameters, as if uploaded."""
    spec = {"builtin": "camera_simulation", "parameters": {"exposure": 1, "roi": {"x": 0}}}
    fake.registry.write_file(f"{name}.json", json.dumps(spec).encode())
