"""The supervisor of one node: registry, instances, control and log channels, desired state."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import structlog
import zmq
import zmq.asyncio

from . import __version__
from .backgrounds import BackgroundInfo, BackgroundStore, background_id
from .contract import ContractEnv, ExtraInput, SocketMode
from .contract.messages import ConfigAck, ConfigError, Hello, Ready, Report, Status
from .control import ControlServer
from .errors import (
    ConflictError,
    InstanceNotFoundError,
    InvalidConfigError,
    InvalidEntryError,
    NotFoundError,
)
from .instance import Instance, InstanceHooks
from .loghub import LogEntry, LogHub
from .mergepatch import merge_patch
from .monitor import NodeSampler, TreeSampler
from .ports import PortAllocator
from .preview import Preview, PreviewCache, check_preview
from .process import ProgramProcess
from .registry import Registry, RegistryChanges
from .settings import Settings
from .spawner import Spawner
from .specs import EntrySpec, InputSpec, RestartMode
from .store import InstanceRecord, StateStore
from .streamtap import average_images, latest_image
from .views import (
    ConfigResult,
    CreateInstance,
    InstanceInfo,
    InstanceState,
    LogStats,
    NodeResources,
    ResourceStats,
)

__all__ = ["Supervisor"]

log = structlog.get_logger(__name__)

PREVIEW_TIMEOUT = 5.0
"""Seconds a preview waits for an image of the stream."""


class Supervisor:
    """Owns every instance of this node and the sockets they talk to."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry, max_upload_bytes=settings.max_upload_bytes)
        self.loghub = LogHub(capacity=settings.log_capacity, rate=settings.log_rate)
        self.loghub.on_error = self._on_program_error
        assert settings.backgrounds is not None
        self.backgrounds = BackgroundStore(settings.backgrounds, settings.max_upload_bytes)
        self.started_at = time.time()
        self.session = uuid.uuid4().hex
        self._ctx = zmq.asyncio.Context()
        self._sync_ctx = zmq.Context.shadow(self._ctx.underlying)  # for worker threads
        self._control = ControlServer(self._ctx, self._on_program_message)
        self._ports = PortAllocator(*settings.port_range, host=settings.stream_host)
        assert settings.state_dir is not None
        self._store = StateStore(settings.state_dir / "instances.json")
        self._instances: dict[str, Instance] = {}
        self._records: dict[str, InstanceRecord] = {}  # what each instance was created with
        self._spawner = Spawner(settings, self.loghub, self.session)
        self._watch: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._trees = TreeSampler()
        self._node_sampler = NodeSampler()
        self.node_resources: NodeResources | None = None  # the last sample
        self._lock_fd: int | None = None
        self._batch = False  # True while many changes are made: save once at the end
        self._launching: list[str] = []  # instances being launched: finds input cycles
        self.stale_messages = 0
        self._previews = PreviewCache()

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the channels, start the guard, bring back the desired state, watch the registry."""
        self.settings.registry.mkdir(parents=True, exist_ok=True)
        self._lock_state_dir()
        self.registry.scan()
        await self.loghub.start(
            self._ctx,
            self.settings.control_host,
            pub_host=self.settings.stream_host,
            advertise=self.settings.public_host,
        )
        await self._control.start(self.settings.control_host)
        self._spawner.start()
        self._batch = True
        try:
            # A cluster worker starts empty: its manager owns the desired state and may have
            # moved this node's instances elsewhere while it was away.
            for record in [] if self.settings.managed else self._store.load():
                self._add(record)
            for entry in [] if self.settings.managed else self.registry.entries():
                self._add_permanent(entry.name)
            # A copy: starting an instance may create the source it reads.
            for instance in list(self._instances.values()):
                if instance.desired == "running" or instance.permanent:
                    instance.start()
        finally:
            self._batch = False
        self._save()
        self._watch = asyncio.create_task(self.registry.watch(self._on_registry_change))
        if self.settings.monitor_interval > 0:
            self._monitor = asyncio.create_task(self._monitor_loop(self.settings.monitor_interval))
        log.info(
            "supervisor_started",
            registry=str(self.settings.registry),
            instances=len(self._instances),
            control=self._control.url,
            logs=self.loghub.log_url,
        )

    def _lock_state_dir(self) -> None:
        """Refuse to share a state folder with a running supervisor: nothing may run twice."""
        assert self.settings.state_dir is not None
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.settings.state_dir / "supervisor.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConflictError(
                f"another supervisor (pid {holder}) is using {self.settings.state_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    async def close(self) -> None:
        """Stop every instance (gracefully, in parallel) and release everything."""
        for task in (self._watch, self._monitor):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        # Shutting down is not an operator's stop: every instance stops (backoff timers too, so
        # nothing starts during the shutdown) but keeps its desired state for the next start.
        instances = list(self._instances.values())
        desired = {i.name: i.desired for i in instances}
        self._batch = True
        try:
            await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
            for instance in instances:
                instance.desired = desired[instance.name]
        finally:
            self._batch = False
        self._save()
        await self._control.close()
        await self.loghub.close()
        self._ctx.term()
        await self._spawner.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
        log.info("supervisor_stopped")

    def kill_all(self) -> None:
        """Second signal: SIGKILL every instance group now."""
        for instance in self._instances.values():
            if instance.process is not None:
                instance.process.kill_group(9)

    # -- hooks of the instances --------------------------------------------------------------

    def _hooks(self) -> InstanceHooks:
        return InstanceHooks(
            launch=self._launch,
            record=self._record,
            changed=lambda _i: self._save(),
            send_config=self._control.send_config,
            exited=self._spawner.exited,
            start_seconds=self.settings.start_seconds,
        )

    def _launch(self, instance: Instance) -> ProgramProcess:
        entry = self.registry.get(instance.entry)
        if not entry.valid or entry.argv is None:
            raise ConflictError(f"entry '{entry.name}' is invalid: {entry.error}")
        spec = instance.spec
        output_url = None
        if self._assign_stream(instance):
            host = self.settings.stream_host
            bind_host = "*" if host in ("*", "0.0.0.0") else host
            output_url = f"tcp://{bind_host}:{instance.output_port}"
        instance.output_url = output_url
        self._launching.append(instance.name)
        try:
            if spec.merge and isinstance(spec.input, list):  # before any source is started
                raise ConflictError(
                    f"instance '{instance.name}' cannot both gather (a list as input) and merge"
                )
            data_url, data_mode, gather = self._resolve_input(instance)
            if spec.merge and data_url is None:
                raise ConflictError(
                    f"instance '{instance.name}' merges streams but has no input to merge them with"
                )
            merge = [ExtraInput(url=url, mode=mode) for url, mode in map(self._resolve, spec.merge)]
        finally:
            self._launching.pop()
        instance.data_url = data_url
        instance.merge_urls = [m.url for m in merge]
        instance.gather_urls = [g.url for g in gather]
        contract = ContractEnv(
            instance=instance.name,
            run=instance.run,
            config=instance.config,
            data_url=data_url,
            data_mode=data_mode,
            merge=merge,
            gather=gather,
            output_url=output_url,
            output_mode=spec.output.mode,
            config_url=self._control.url,
            log_url=self.loghub.log_url,
            status_interval=self.settings.status_interval,
            backgrounds=str(self.settings.backgrounds),
        )
        process = self._spawner.spawn(instance, entry.argv, contract, spec.env)
        log.info(
            "instance_launched",
            instance=instance.name,
            pid=process.pid,
            run=instance.run,
            argv=entry.argv[-1],
            output=output_url,
            data=data_url,
        )
        return process

    def _resolve_input(self, instance: Instance) -> tuple[str | None, SocketMode, list[ExtraInput]]:
        """DATA's URL and mode, and the other inputs of a fan-in (a list as input)."""
        spec = instance.spec.input
        camera = instance.config.get("camera_name")
        if spec is None and isinstance(camera, str) and camera:
            spec = InputSpec(camera=camera)  # a CamServer pipeline config names its camera
        if spec is None:
            return None, SocketMode.SUB, []
        if isinstance(spec, list):
            (url, mode), *rest = map(self._resolve, spec)
            return url, mode, [ExtraInput(url=u, mode=m) for u, m in rest]
        return *self._resolve(spec), []

    def _resolve(self, spec: InputSpec) -> tuple[str, SocketMode]:
        """The URL and socket mode of one input, its source created and started if needed."""
        if spec.url is not None:
            return spec.url, spec.mode or SocketMode.SUB
        source = self._source(spec.source or "")
        if not self._assign_stream(source):
            raise ConflictError(f"input '{source.name}' has no output stream to read")
        default = SocketMode.SUB if source.spec.output.mode == SocketMode.PUB else SocketMode.PULL
        return source.stream_url, spec.mode or default

    def _source(self, name: str) -> Instance:
        """The instance an input names, created from its registry entry and started if needed."""
        if name in self._launching:
            cycle = " -> ".join([*self._launching[self._launching.index(name) :], name])
            raise ConflictError(f"input cycle: {cycle}")
        source = self._instances.get(name)
        if source is None:
            try:
                entry = self.registry.get(name)
            except NotFoundError:
                raise ConflictError(
                    f"input '{name}' is neither an instance nor a registry entry"
                ) from None
            if not entry.valid or entry.spec is None:
                raise ConflictError(f"input '{name}': entry '{name}' is invalid: {entry.error}")
            source = self._add_on_demand(name, entry.spec)  # stops when no reader is left
            log.info("source_created", instance=name)
        if source.desired != "running":
            log.info("source_started", instance=name, reader=self._launching[-1])
            source.spec = self._spec_for(self._records[name])
            source.start()  # its own input is resolved here, with the cycle check
            if source.state == InstanceState.FAILED:
                raise ConflictError(f"input '{name}' did not start: {source.reason}")
        return source

    def _assign_stream(self, instance: Instance) -> bool:
        """Give ``instance`` its output port and stream URL (kept across restarts, so clients
        reconnect to the same address); False when it has no output."""
        if not instance.spec.output.enabled:
            return False
        if instance.output_port is None:
            instance.output_port = self._ports.acquire(instance.name, instance.spec.output.port)
            instance.stream_url = f"tcp://{self.settings.public_host}:{instance.output_port}"
        return True

    async def _monitor_loop(self, interval: float) -> None:
        """Sample the instances' process trees and the node, and look for stalls, forever.

        The sampling (psutil: /proc reads) runs in a worker thread, off the event loop."""
        while True:
            await asyncio.sleep(interval)
            roots = {i.name: i.process.pid for i in self._instances.values() if i.process}
            try:
                trees, node = await asyncio.to_thread(self._sample, roots)
            except Exception:  # a monitoring hiccup must never stop the supervisor
                log.exception("monitor_sample_failed")
                continue
            self.node_resources = node
            now = time.time()
            for instance in list(self._instances.values()):
                sampled = trees.get(instance.name)
                if sampled is not None and instance.process is not None:
                    instance.resources = sampled
                instance.check_stall(now)
                instance.check_idle(now)

    def _sample(self, roots: dict[str, int]) -> tuple[dict[str, ResourceStats], NodeResources]:
        return self._trees.sample(roots), self._node_sampler.sample()

    def _on_program_error(self, name: str, run: int, message: str) -> None:
        instance = self._instances.get(name)
        if instance is not None:
            instance.note_error(run, message)

    def _record(self, instance: Instance, level: str, message: str) -> None:
        self.loghub.add(instance.name, instance.run, "supervisor", message, level=level)

    def _on_program_message(
        self, routing_id: bytes, message: Hello | Ready | Status | ConfigAck | ConfigError | Report
    ) -> None:
        instance = self._instances.get(message.instance)
        if instance is None or message.run != instance.run:
            self.stale_messages += 1
            return
        instance.on_message(routing_id, message)

    async def _on_registry_change(self, changes: RegistryChanges) -> None:
        if self.settings.managed:
            return  # the manager starts permanent entries, on the node it chooses
        for name in changes.added:
            instance = self._add_permanent(name)
            if instance is not None:
                log.info("permanent_entry_added", entry=name)
                instance.start()

    def _add_on_demand(self, name: str, spec: EntrySpec) -> Instance:
        """A stopped on-demand instance of the entry ``name``, with its default parameters."""
        record = InstanceRecord(
            name=name, entry=name, config=dict(spec.parameters), desired="stopped", on_demand=True
        )
        return self._add(record)

    def _add_permanent(self, name: str) -> Instance | None:
        """An instance for a permanent entry that has none yet (it starts with the node)."""
        entry = self.registry.get(name)
        if not entry.valid or entry.spec is None or not entry.spec.permanent:
            return None
        if name in self._instances:
            return None
        record = InstanceRecord(
            name=name,
            entry=name,
            config=dict(entry.spec.parameters),
            desired="running",
            permanent=True,
        )
        return self._add(record)

    # -- the instance table ------------------------------------------------------------------

    def _spec_for(self, record: InstanceRecord) -> EntrySpec:
        entry = self.registry.get(record.entry)
        base = entry.spec or EntrySpec(program=entry.filename)
        update: dict[str, Any] = {}
        if record.input is not None:
            update["input"] = record.input
        if record.merge is not None:
            update["merge"] = record.merge
        if record.output is not None:
            update["output"] = record.output
        if record.restart is not None:
            update["restart"] = record.restart
        elif record.permanent:  # always runs: restarted whatever the exit
            update["restart"] = base.restart.model_copy(update={"mode": RestartMode.ALWAYS})
        return base.model_copy(update=update)

    def _add(self, record: InstanceRecord) -> Instance:
        try:
            spec = self._spec_for(record)
        except Exception as exc:  # entry gone since it was saved: keep the instance, show why
            spec = EntrySpec(program=record.entry)
            reason = f"entry '{record.entry}' is not available: {getattr(exc, 'message', exc)}"
        else:
            reason = "created"
        instance = Instance(record.name, record.entry, spec, dict(record.config), self._hooks())
        instance.reason = reason
        instance.desired = record.desired
        instance.on_demand = record.on_demand and not record.permanent
        instance.permanent = record.permanent
        self._records[record.name] = record
        self._instances[record.name] = instance
        return instance

    def _save(self) -> None:
        if self._batch:
            return
        self._store.save(
            [
                self._records[name].model_copy(update={"config": i.config, "desired": i.desired})
                for name, i in self._instances.items()
            ]
        )

    def _get(self, name: str) -> Instance:
        try:
            return self._instances[name]
        except KeyError:
            raise InstanceNotFoundError(f"no instance named '{name}'") from None

    # -- the API of the node -----------------------------------------------------------------

    def list_instances(self) -> list[InstanceInfo]:
        return [self._info(i) for i in sorted(self._instances.values(), key=lambda i: i.name)]

    def get_instance(self, name: str) -> InstanceInfo:
        return self._info(self._get(name))

    def list_instances_json(self) -> bytes:
        """``list_instances`` as a JSON array, from per-instance caches."""
        parts = [
            self._instances[name].info_json(self.loghub.counters(name))
            for name in sorted(self._instances)
        ]
        return b"[" + b",".join(parts) + b"]"

    def _log_stats(self, name: str) -> LogStats:
        stats = self.loghub.stats(name)
        return LogStats.model_construct(**{k: stats.get(k, 0) for k in LogStats.model_fields})

    def _info(self, instance: Instance) -> InstanceInfo:
        info = instance.info()
        info.logs = self._log_stats(instance.name)
        return info

    async def create_instance(self, req: CreateInstance) -> InstanceInfo:
        if req.name in self._instances:
            raise ConflictError(f"an instance named '{req.name}' already exists")
        entry = self.registry.get(req.entry)
        if not entry.valid:
            raise InvalidEntryError(f"entry '{req.entry}' is invalid: {entry.error}")
        base = entry.spec.parameters if entry.spec is not None else {}
        record = InstanceRecord(
            name=req.name,
            entry=req.entry,
            config=merge_patch(base, req.config),
            input=req.input,
            merge=req.merge,
            output=req.output,
            restart=req.restart,
            desired="running" if req.start or req.permanent else "stopped",
            permanent=req.permanent,
        )
        instance = self._add(record)
        self._save()
        if req.start or req.permanent:
            instance.start()
        return self._info(instance)

    async def request_stream(self, name: str) -> InstanceInfo:
        """The instance ``name`` with its stream, started if needed: an instance of that name,
        else a new on-demand instance of the registry entry of that name (CamServer's
        ``GET /pipeline/instance/<name>``)."""
        instance = self._instances.get(name)
        if instance is None:
            entry = self.registry.get(name)  # NotFoundError: neither an instance nor an entry
            if not entry.valid or entry.spec is None:
                raise InvalidEntryError(f"entry '{name}' is invalid: {entry.error}")
            if not entry.spec.output.enabled:
                raise ConflictError(f"entry '{name}' has no output stream")
            instance = self._add_on_demand(name, entry.spec)
            log.info("on_demand_created", instance=name)
        elif not instance.spec.output.enabled:
            raise ConflictError(f"instance '{name}' has no output stream")
        if instance.desired != "running" or instance.state in (
            InstanceState.STOPPED,
            InstanceState.FAILED,
        ):
            await self.start_instance(name)  # saves the new desired state
        return self._info(instance)

    async def start_instance(self, name: str) -> InstanceInfo:
        instance = self._get(name)
        entry = self.registry.get(instance.entry)
        if not entry.valid:
            raise ConflictError(
                f"cannot start '{name}': entry '{entry.name}' is invalid: {entry.error}"
            )
        instance.spec = self._spec_for(self._records[name])
        instance.start()
        return self._info(instance)

    async def stop_instance(self, name: str) -> InstanceInfo:
        instance = self._get(name)
        await instance.stop()
        return self._info(instance)

    async def restart_instance(self, name: str) -> InstanceInfo:
        instance = self._get(name)
        await instance.stop()
        return await self.start_instance(name)

    async def delete_instance(self, name: str) -> None:
        instance = self._get(name)
        await instance.stop()
        del self._instances[name]
        del self._records[name]
        self._ports.release(instance.output_port)
        self.loghub.forget(name)
        self._save()
        log.info("instance_deleted", instance=name)

    def get_config(self, name: str) -> dict[str, Any]:
        return self._get(name).config

    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        """Average the next ``n_images`` images of camera instance ``name`` into a background.

        Raises:
            InstanceNotFoundError: no such instance.
            ConflictError: it is not running, has no PUB output, or sent too few images in time.
        """
        url = self._tap_url(name, "collect from")
        wait = timeout if timeout is not None else 10.0 + n_images
        loop = asyncio.get_running_loop()
        image, pulse_id = await loop.run_in_executor(
            None, average_images, self._sync_ctx, url, SocketMode.SUB, n_images, wait
        )
        info = await loop.run_in_executor(None, self.backgrounds.save, background_id(name), image)
        log.info(
            "background_collected",
            instance=name,
            background=info.id,
            n_images=n_images,
            first_pulse_id=pulse_id,
            shape=info.shape,
        )
        return info

    async def preview(
        self,
        name: str,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview:
        """A PNG of the latest ``channel`` image of instance ``name``, colour-mapped.

        Reads one frame of the instance's PUB output (viewers asking within 0.15 s share it)
        and renders it in a worker thread. See :func:`supervisor.preview.render_preview`.

        Raises:
            InstanceNotFoundError: no such instance.
            InvalidConfigError: an unknown colormap or a bad width or range.
            ConflictError: it is not running, has no PUB output, or sent no such image in time.
        """
        check_preview(colormap, width, vmin, vmax)
        url = self._tap_url(name, "preview")
        loop = asyncio.get_running_loop()

        async def grab() -> tuple[np.ndarray, int]:
            return await loop.run_in_executor(
                None, latest_image, self._sync_ctx, url, PREVIEW_TIMEOUT, channel
            )

        return await self._previews.get(
            name, channel, grab, colormap=colormap, width=width, vmin=vmin, vmax=vmax
        )

    def _tap_url(self, name: str, purpose: str) -> str:
        """Where the supervisor itself reads the output of ``name`` (to ``purpose`` it).

        Raises:
            InstanceNotFoundError: no such instance.
            ConflictError: it is not running or starting, or has no PUB output.
        """
        instance = self._get(name)
        if instance.state not in (InstanceState.RUNNING, InstanceState.STARTING):
            raise ConflictError(f"instance '{name}' is {instance.state}; start it first")
        if not self._assign_stream(instance) or instance.spec.output.mode != SocketMode.PUB:
            raise ConflictError(
                f"instance '{name}' has no PUB output to {purpose} (reading a PUSH stream "
                "would take its frames from the pipelines)"
            )
        host = self.settings.stream_host
        return f"tcp://{'127.0.0.1' if host in ('*', '0.0.0.0') else host}:{instance.output_port}"

    async def update_config(self, name: str, patch: dict[str, Any]) -> ConfigResult:
        if not isinstance(patch, dict):
            raise InvalidConfigError(
                f"a config patch must be a JSON object, not {type(patch).__name__}"
            )
        instance = self._get(name)
        return await instance.apply_config(merge_patch(instance.config, patch))

    async def set_config(self, name: str, config: dict[str, Any]) -> ConfigResult:
        if not isinstance(config, dict):
            raise InvalidConfigError(f"a config must be a JSON object, not {type(config).__name__}")
        return await self._get(name).apply_config(config)

    def tail_logs(self, name: str, n: int = 100, since_seq: int | None = None) -> list[LogEntry]:
        self._get(name)
        return self.loghub.tail(name, n, since_seq)

    def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
        self._get(name)
        return self.loghub.follow(name, since_seq)

    def log_stream_url(self) -> str:
        return self.loghub.pub_url

    def node_info(self) -> dict[str, Any]:
        states = {str(s): 0 for s in InstanceState}
        for instance in self._instances.values():
            states[str(instance.state)] += 1
        return {
            "version": __version__,
            "hostname": socket.gethostname(),
            "node_name": self.settings.node_name or socket.gethostname(),
            "manager": self.settings.manager,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "uptime": time.time() - self.started_at,
            "registry": str(self.settings.registry),
            "instances": len(self._instances),
            "states": states,
            "control_url": self._control.url,
            "log_url": self.loghub.log_url,
            "log_stream_url": self.loghub.pub_url,
            "stale_messages": self.stale_messages,
            "malformed_control_messages": self._control.malformed,
            "monitor_interval": self.settings.monitor_interval,
            "resources": (
                self.node_resources.model_dump() if self.node_resources is not None else None
            ),
        }
