"""The supervisor of one node: the ``NodeAPI`` over this machine's instances.

It composes its collaborators, each a module of its own: the instance table (``table``) and the
operations on it (``operations``), input wiring (``wiring``), output ports (``outputs``),
launching (``launcher``, ``spawner``), the CONFIG channel (``control``), the log hub
(``loghub``), stream taps for previews and backgrounds (``taps``), the monitoring round
(``monitor_loop``) and the locks of the state folder and the registry (``statelock``). A call
walks down from here and never comes back: route -> ``Supervisor`` -> ``InstanceOperations`` ->
``Instance`` -> ``Launcher`` -> ``Spawner``. ``Supervisor.from_settings`` builds the real
collaborators; unit tests hand it fakes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog
import zmq
import zmq.asyncio

from . import __version__
from .backgrounds import BackgroundStore
from .control import ControlServer
from .folders import FolderAPI
from .instance import Instance
from .instance_hooks import InstanceHooks
from .launcher import Launcher
from .loghub import LogHub
from .mergepatch import merge_patch
from .monitor_loop import MonitorLoop
from .nodeapi.errors import InvalidConfigError, StorageError
from .nodeapi.models import (
    BackgroundInfo,
    ConfigResult,
    CreateInstance,
    InstanceInfo,
    InstanceState,
    LogEntry,
    LogStats,
    Preview,
    RegistryChanges,
)
from .operations import InstanceOperations
from .outputs import OutputStreams
from .ports import PortAllocator
from .preview import check_preview
from .registry import Registry
from .settings import Settings
from .spawner import Spawner
from .statelock import REGISTRY_LOCK, StateLock
from .store import StateStore
from .table import InstanceTable, RecordStore
from .taps import StreamTaps
from .wiring import InputWiring

__all__ = ["Supervisor"]

log = structlog.get_logger(__name__)


class Supervisor(FolderAPI):
    """Owns every instance of this node and the sockets they talk to."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry,
        backgrounds: BackgroundStore,
        store: RecordStore,
        loghub: LogHub,
        control: ControlServer,
        spawner: Spawner,
        ctx: zmq.asyncio.Context,
    ) -> None:
        assert settings.state_dir is not None
        assert settings.backgrounds is not None
        self.settings = settings
        self.registry = registry
        self.backgrounds = backgrounds
        self.loghub = loghub
        self._control = control
        self._spawner = spawner
        self._ctx = ctx
        self._lock = StateLock(settings.state_dir)
        # One registry, one supervisor: two would both run its permanent entries.
        self._registry_lock = StateLock(settings.registry, REGISTRY_LOCK, "the registry ")
        self._started_at = time.time()
        self.table = InstanceTable(registry, store)
        self.loghub.on_error = self.table.note_error
        outputs = OutputStreams(
            PortAllocator(*settings.port_range, host=settings.stream_host),
            settings.stream_host,
            settings.public_host,
        )
        self._launcher = launcher = Launcher(
            registry=registry,
            spawner=spawner,
            wiring=InputWiring(self.table, registry, outputs),
            outputs=outputs,
            control=control,
            loghub=loghub,
            status_interval=settings.status_interval,
            backgrounds=settings.backgrounds,
        )
        self.table.hooks = InstanceHooks(
            launch=launcher.launch,
            record=launcher.record,
            changed=self.table.save_instance,
            send_config=control.send_config,
            exited=launcher.exited,
            start_seconds=settings.start_seconds,
            status_interval=settings.status_interval,
        )
        self._taps = StreamTaps(zmq.Context.shadow(ctx.underlying), outputs, backgrounds)
        self.monitor = MonitorLoop(self.table, settings.monitor_interval)
        self._operations = InstanceOperations(self.table, registry, outputs, loghub)
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Supervisor:
        """A node with its real collaborators, as ``pipevisor serve`` runs it."""
        assert settings.state_dir is not None
        assert settings.backgrounds is not None
        ctx = zmq.asyncio.Context()
        loghub = LogHub(capacity=settings.log_capacity, rate=settings.log_rate)
        return cls(
            settings,
            registry=Registry(settings.registry, max_upload_bytes=settings.max_upload_bytes),
            backgrounds=BackgroundStore(settings.backgrounds, settings.max_upload_bytes),
            store=StateStore(settings.state_dir),
            loghub=loghub,
            control=ControlServer(ctx),
            spawner=Spawner(settings, loghub, uuid.uuid4().hex),
            ctx=ctx,
        )

    @property
    def started_at(self) -> float:
        return self._started_at

    @property
    def max_upload_bytes(self) -> int:
        return self.settings.max_upload_bytes

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the channels, start the guard, bring back the desired state, watch the registry."""
        self.settings.registry.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except OSError as exc:  # a read-only or missing state folder: one line, no traceback
            raise StorageError(
                f"the state folder {self.settings.state_dir} is not usable: {exc.strerror or exc}"
            ) from None
        try:
            self._registry_lock.acquire()
        except OSError as exc:  # a read-only registry: nothing to lock it with, still served
            log.warning(
                "registry_not_locked", registry=str(self.settings.registry), reason=str(exc)
            )
        except BaseException:
            self._lock.release()
            raise
        try:
            records = self.table.load()  # StorageError: the state folder is unusable
        except BaseException:
            self._registry_lock.release()
            self._lock.release()
            raise
        self.registry.scan()
        api = self.settings.api_host
        wildcard = api in ("0.0.0.0", "*")
        await self.loghub.start(
            self._ctx,
            self.settings.control_host,
            # The log stream is as reachable as the API that guards the logs, never more: an API
            # on loopback keeps every instance's log off the network, whatever --stream-host says.
            pub_host="0.0.0.0" if wildcard else api,
            advertise=self.settings.public_host if wildcard else api,
        )
        await self._control.start(self.table.on_program_message, self.settings.control_host)
        self._spawner.start()
        with self.table.batch():
            # A cluster worker starts empty: its manager owns the desired state and may have
            # moved this node's instances elsewhere while it was away.
            if self.settings.managed:
                self.table.discard_saved(r.name for r in records)
            for record in [] if self.settings.managed else records:
                self.table.add(record)
            for entry in [] if self.settings.managed else self.registry.entries():
                self.table.add_permanent(entry.name)
            # A copy: starting an instance may create the source it reads.
            for instance in self.table.all():
                if instance.desired == "running" or instance.permanent:
                    instance.start()
        self._watch = asyncio.create_task(self.registry.watch(self._on_registry_change))
        self.monitor.start()
        log.info(
            "supervisor_started",
            registry=str(self.settings.registry),
            instances=len(self.table),
            control=self._control.url,
            logs=self.loghub.log_url,
        )

    async def close(self) -> None:
        """Stop every instance (gracefully, in parallel) and release everything.

        Spawning ends first: no restart, backoff or source started by wiring may spawn while
        the instances stop, or after the guard is gone.
        """
        self._launcher.closing = True
        if self._watch is not None:
            self._watch.cancel()
            try:
                await self._watch
            except asyncio.CancelledError:
                pass
        await self.monitor.close()
        # Shutting down is not an operator's stop: every instance stops (backoff timers too, so
        # nothing starts during the shutdown) but keeps its desired state for the next start.
        instances = self.table.all()
        desired = {i.name: i.desired for i in instances}
        with self.table.batch():
            await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
            for instance in instances:
                instance.desired = desired[instance.name]
        await self._control.close()
        await self.loghub.close()
        self._ctx.term()
        await self._spawner.close()
        self.table.close()
        self._registry_lock.release()
        self._lock.release()
        log.info("supervisor_stopped")

    def kill_all(self) -> None:
        """Second signal: SIGKILL every instance group now (none is restarted)."""
        self._launcher.closing = True
        for instance in self.table.all():
            if instance.process is not None:
                instance.process.kill_group(9)

    def interrupt(self, forced: bool) -> None:
        """A signal: end every log follow (the server waits for open connections); a second
        one SIGKILLs every instance group."""
        if forced:
            self.kill_all()
        self.loghub.end_followers()

    # -- what the instances and the registry tell -------------------------------------------

    async def _on_registry_change(self, changes: RegistryChanges) -> None:
        if self.settings.managed:
            return  # the manager starts permanent entries, on the node it chooses
        for name in changes.added:
            instance = self.table.add_permanent(name)
            if instance is not None:
                log.info("permanent_entry_added", entry=name)
                instance.start()

    # -- instances ---------------------------------------------------------------------------

    def _info(self, instance: Instance) -> InstanceInfo:
        info = instance.info()
        stats = self.loghub.stats(instance.name)
        info.logs = LogStats.model_construct(
            None, **{k: stats.get(k, 0) for k in LogStats.model_fields}
        )
        return info

    async def list_instances(self) -> list[InstanceInfo]:
        return [self._info(i) for i in self.table.sorted()]

    async def list_instances_json(self) -> bytes:
        """``list_instances`` as a JSON array, from per-instance caches."""
        parts = [i.info_json(self.loghub.counters(i.name)) for i in self.table.sorted()]
        return b"[" + b",".join(parts) + b"]"

    async def get_instance(self, name: str) -> InstanceInfo:
        return self._info(self.table.get(name))

    async def create_instance(self, req: CreateInstance) -> InstanceInfo:
        return self._info(await self._operations.create(req))

    async def request_stream(self, name: str) -> InstanceInfo:
        return self._info(await self._operations.request_stream(name))

    async def start_instance(self, name: str) -> InstanceInfo:
        return self._info(await self._operations.start(name))

    async def stop_instance(self, name: str) -> InstanceInfo:
        return self._info(await self._operations.stop(name))

    async def restart_instance(self, name: str) -> InstanceInfo:
        return self._info(await self._operations.restart(name))

    async def delete_instance(self, name: str) -> None:
        await self._operations.delete(name)

    # -- config ------------------------------------------------------------------------------

    async def get_config(self, name: str) -> dict[str, Any]:
        return self.table.get(name).config

    async def update_config(self, name: str, patch: dict[str, Any]) -> ConfigResult:
        if not isinstance(patch, dict):
            raise InvalidConfigError(
                f"a config patch must be a JSON object, not {type(patch).__name__}"
            )
        instance = self.table.get(name)
        return await self._operations.configure(instance, merge_patch(instance.config, patch))

    async def set_config(self, name: str, config: dict[str, Any]) -> ConfigResult:
        if not isinstance(config, dict):
            raise InvalidConfigError(f"a config must be a JSON object, not {type(config).__name__}")
        return await self._operations.configure(self.table.get(name), config)

    # -- logs --------------------------------------------------------------------------------

    async def tail_logs(
        self, name: str, n: int = 100, since_seq: int | None = None
    ) -> list[LogEntry]:
        self.table.get(name)
        return self.loghub.tail(name, n, since_seq)

    async def follow_logs(self, name: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
        self.table.get(name)
        return self.loghub.follow(name, since_seq)

    async def log_stream_url(self) -> str:
        return self.loghub.pub_url

    # -- the node ----------------------------------------------------------------------------

    async def node_health(self) -> dict[str, Any]:
        return {"store": self.table.store_health()}

    async def node_info(self) -> dict[str, Any]:
        states = {str(s): 0 for s in InstanceState}
        for instance in self.table.all():
            states[str(instance.state)] += 1
        resources = self.monitor.node_resources
        return {
            "version": __version__,
            "hostname": socket.gethostname(),
            "node_name": self.settings.node_name or socket.gethostname(),
            "manager": self.settings.manager,
            "pid": os.getpid(),
            "started_at": self._started_at,
            "uptime": time.time() - self._started_at,
            "registry": str(self.settings.registry),
            "instances": len(self.table),
            "states": states,
            "control_url": self._control.url,
            "log_url": self.loghub.log_url,
            "log_stream_url": self.loghub.pub_url,
            "store": self.table.store_health(),
            "stale_messages": self.table.stale_messages,
            "malformed_control_messages": self._control.malformed,
            "guard": self._spawner.guard_info(),
            "monitor_interval": self.settings.monitor_interval,
            "resources": resources.model_dump() if resources is not None else None,
        }

    # -- previews and backgrounds from streams ---------------------------------------------

    async def collect_background(
        self, name: str, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        return await self._taps.collect_background(self.table.get(name), n_images, timeout)

    async def preview(
        self,
        name: str,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview:
        check_preview(colormap, width, vmin, vmax)  # a bad request is told before a 404
        return await self._taps.preview(self.table.get(name), channel, colormap, width, vmin, vmax)
