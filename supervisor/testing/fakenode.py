"""An in-memory node: ``FakeNode`` implements ``NodeAPI`` over dicts, for unit tests of clients.

Serve it with the real REST app (``supervisor.api.create_app(FakeNode(tmp_path))``) to test
anything that talks to a node (a CLI, a viewer, a manager) without starting processes: the app
cannot tell it from a node. The real node has system tests with real processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter

from ..backgrounds import BackgroundStore, background_id
from ..mergepatch import merge_patch
from ..nodeapi.errors import (
    ConflictError,
    InstanceNotFoundError,
    InvalidConfigError,
    InvalidEntryError,
)
from ..nodeapi.models import (
    BackgroundInfo,
    ConfigResult,
    CreateInstance,
    Entry,
    InstanceInfo,
    InstanceState,
    LogEntry,
    Preview,
    RegistryFile,
)
from ..nodeapi.specs import RestartPolicy
from ..preview import check_preview, render_preview
from .fakeregistry import FakeRegistry

if TYPE_CHECKING:
    from ..nodeapi import NodeAPI

__all__ = ["FakeNode"]

_INSTANCES = TypeAdapter(list[InstanceInfo])


class FakeNode:
    """``NodeAPI`` over dicts: nothing runs, every call answers at once.

    What a test sets up or looks at: ``registry`` (a ``FakeRegistry``: ``files``,
    ``executables``), ``instances`` (``InstanceInfo`` by name, changed in place),
    ``logs`` (``add_log``), ``camera_images`` (the images a camera instance "sends", for
    ``collect_background`` and ``preview``) and ``backgrounds`` (a real ``BackgroundStore`` in
    ``root / "backgrounds"``).

    Behaviours to test a client against: a config with a negative ``exposure`` is refused the
    way a program refuses it (``InvalidConfigError``); an instance in state ``stopping``
    refuses config changes (``ConflictError``); ``follow_logs`` yields the stored entries and
    ends, or with ``follow_forever`` waits for more until it is closed (``follow_closed``
    counts the closed followers); ``fail_node_info`` makes ``node_info`` raise a
    ``RuntimeError`` (an internal error); ``store_error`` is what ``health`` reports of the store.
    """

    def __init__(self, root: Path, *, max_upload_bytes: int = 64 * 2**20) -> None:
        self.root = root
        self.registry = FakeRegistry(max_upload_bytes)
        self.backgrounds = BackgroundStore(root / "backgrounds", max_upload_bytes)
        self.camera_images: dict[str, list[np.ndarray]] = {}
        self.started_at = time.time() - 5.0
        self.instances: dict[str, InstanceInfo] = {}
        self.logs: dict[str, list[LogEntry]] = {}
        self.follow_forever = False
        self.follow_closed = 0
        self.fail_node_info = False
        self.store_error: str | None = None
        self._max_upload_bytes = max_upload_bytes
        self._next_port = 11100

    @property
    def max_upload_bytes(self) -> int:
        return self._max_upload_bytes

    # -- setting up --------------------------------------------------------------------------

    def add_entry(self, name: str, spec: dict[str, Any]) -> Entry:
        """Registry entry ``name`` from ``spec`` (an ``EntrySpec`` as JSON), as if uploaded."""
        entry = self.registry.write_file(f"{name}.json", json.dumps(spec).encode())
        assert entry is not None
        return entry

    def add_log(
        self, name: str, message: str, *, level: str = "info", source: str = "stdout"
    ) -> LogEntry:
        """Store one log entry of instance ``name``."""
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

    def _get(self, name: str) -> InstanceInfo:
        try:
            return self.instances[name]
        except KeyError:
            raise InstanceNotFoundError(f"no instance named {name!r}") from None

    # -- instances ---------------------------------------------------------------------------

    async def list_instances(self) -> list[InstanceInfo]:
        return [self.instances[n] for n in sorted(self.instances)]

    async def list_instances_json(self) -> bytes:
        return _INSTANCES.dump_json(await self.list_instances())

    async def get_instance(self, name: str) -> InstanceInfo:
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

    # -- config ------------------------------------------------------------------------------

    async def get_config(self, name: str) -> dict[str, Any]:
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

    # -- logs --------------------------------------------------------------------------------

    async def tail_logs(
        self, name: str, n: int = 100, since_seq: int | None = None
    ) -> list[LogEntry]:
        self._get(name)
        ring = self.logs.get(name, [])
        if since_seq is None:
            return ring[-n:]
        return [e for e in ring if e.seq > since_seq][:n]

    async def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
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

    async def log_stream_url(self) -> str:
        return "tcp://127.0.0.1:11099"

    # -- the node ----------------------------------------------------------------------------

    async def node_health(self) -> dict[str, Any]:
        return {"store": self.store_error or "ok"}

    async def node_info(self) -> dict[str, Any]:
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

    # -- the registry ------------------------------------------------------------------------

    async def list_entries(self) -> list[Entry]:
        return self.registry.entries()

    async def get_entry(self, name: str) -> Entry:
        return self.registry.get(name)

    async def list_files(self) -> list[RegistryFile]:
        return self.registry.file_list()

    async def read_file(self, filename: str) -> bytes:
        return self.registry.read_file(filename)

    async def write_file(
        self, filename: str, data: bytes, *, executable: bool = False
    ) -> Entry | None:
        return self.registry.write_file(filename, data, executable=executable)

    async def delete_file(self, filename: str) -> None:
        self.registry.delete_file(filename)

    # -- backgrounds -------------------------------------------------------------------------

    async def list_backgrounds(self, camera: str | None = None) -> list[BackgroundInfo]:
        return self.backgrounds.infos(camera)

    async def get_background(self, background: str) -> BackgroundInfo:
        return self.backgrounds.info(background)

    async def latest_background(self, camera: str) -> BackgroundInfo:
        return self.backgrounds.latest(camera)

    async def read_background(self, background: str) -> bytes:
        return self.backgrounds.read(background)

    async def write_background(self, background: str, data: bytes) -> BackgroundInfo:
        return self.backgrounds.write(background, data)

    async def delete_background(self, background: str) -> None:
        self.backgrounds.delete(background)

    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        """The mean of the first ``n_images`` of ``camera_images[name]`` (integer images in
        64 bits, truncated to their dtype, as the node does)."""
        info = self._get(name)
        images = self.camera_images.get(name, [])
        if info.state != InstanceState.RUNNING or len(images) < n_images:
            raise ConflictError(f"only {len(images)} of {n_images} images arrived from {name!r}")
        total = np.sum(images[:n_images], axis=0, dtype=np.int64)
        mean = (total // n_images).astype(images[0].dtype)
        return self.backgrounds.save(background_id(name), mean)

    # -- previews ----------------------------------------------------------------------------

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
        check_preview(colormap, width, vmin, vmax)
        info = self._get(name)
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


if TYPE_CHECKING:

    def _is_a_node(fake: FakeNode) -> NodeAPI:
        return fake  # mypy checks here that FakeNode implements the whole Protocol
