"""Operations on the instances of a node: create, start, stop, restart, delete, request a
stream, change the config; one at a time per instance, and none on an instance a delete has
removed. A change is saved before it is made (refused whole with ``StorageError`` when it cannot
be); a stop is saved after the process stopped, so a full disk never keeps a process running."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from .instance import Instance
from .loghub import LogHub
from .mergepatch import merge_patch
from .nodeapi.errors import ConflictError, InstanceNotFoundError, InvalidEntryError
from .nodeapi.models import ConfigResult, CreateInstance, InstanceState
from .outputs import OutputStreams
from .registry import Registry
from .store import InstanceRecord
from .table import InstanceTable

__all__ = ["InstanceOperations"]

log = structlog.get_logger(__name__)


class InstanceOperations:
    """What a client asks of an instance, carried out on the table's instances."""

    def __init__(
        self, table: InstanceTable, registry: Registry, outputs: OutputStreams, loghub: LogHub
    ) -> None:
        self._table = table
        self._registry = registry
        self._outputs = outputs
        self._loghub = loghub

    async def create(self, req: CreateInstance) -> Instance:
        """A new instance of a registry entry, started unless ``req.start`` is false."""
        if req.name in self._table:
            raise ConflictError(f"an instance named '{req.name}' already exists")
        entry = self._registry.get(req.entry)
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
        instance = self._table.create(record)  # StorageError: not added
        if req.start or req.permanent:
            instance.start()
        return instance

    async def request_stream(self, name: str) -> Instance:
        """The instance ``name`` with its stream, started if needed, else a new on-demand
        instance of the registry entry of that name."""
        instance = self._table.find(name)
        if instance is None:
            entry = self._registry.get(name)  # NotFoundError: neither an instance nor an entry
            if not entry.valid or entry.spec is None:
                raise InvalidEntryError(f"entry '{name}' is invalid: {entry.error}")
            if not entry.spec.output.enabled:
                raise ConflictError(f"entry '{name}' has no output stream")
            instance = self._table.add_on_demand(name, entry.spec, strict=True)
            log.info("on_demand_created", instance=name)
        elif not instance.spec.output.enabled:
            raise ConflictError(f"instance '{name}' has no output stream")
        async with self._serialized(instance):
            if instance.desired != "running" or instance.state in (
                InstanceState.STOPPED,
                InstanceState.FAILED,
            ):
                self._start(instance)  # saves the new desired state
        return instance

    @contextlib.asynccontextmanager
    async def _serialized(self, instance: Instance) -> AsyncIterator[None]:
        """One start, stop, restart or delete of ``instance`` at a time; raises
        ``InstanceNotFoundError`` when a delete that came first removed it meanwhile."""
        async with instance.lifecycle:
            if instance.deleted:
                raise InstanceNotFoundError(f"no instance named '{instance.name}'")
            yield

    def _start(self, instance: Instance) -> None:
        entry = self._registry.get(instance.entry)
        if not entry.valid:
            raise ConflictError(
                f"cannot start '{instance.name}': entry '{entry.name}' is invalid: {entry.error}"
            )
        instance.spec = self._table.spec_for(instance.name)
        self._table.persist(instance, desired="running")  # StorageError: not started
        instance.start()

    async def start(self, name: str) -> Instance:
        instance = self._table.get(name)
        async with self._serialized(instance):
            self._start(instance)
        return instance

    async def stop(self, name: str) -> Instance:
        instance = self._table.get(name)
        async with self._serialized(instance):
            await instance.stop()
        return instance

    async def restart(self, name: str) -> Instance:
        instance = self._table.get(name)
        async with self._serialized(instance):
            self._table.persist(instance, desired="running")  # StorageError: not stopped
            await instance.stop()
            self._start(instance)
        return instance

    async def delete(self, name: str) -> None:
        instance = self._table.get(name)
        async with self._serialized(instance):
            # First: from here no exit, backoff or start spawns it again, whatever its desired
            # state (a start that raced this delete would otherwise leave a run nobody lists).
            self._table.forget(name)  # StorageError: nothing deleted
            instance.deleted = True
            await instance.stop()
            self._table.remove(name)
            self._outputs.release(instance)
            self._loghub.forget(name)
        log.info("instance_deleted", instance=name)

    async def configure(self, instance: Instance, config: dict[str, Any]) -> ConfigResult:
        """Make ``config`` current: saved first (``StorageError``: the program is not sent it),
        and the saved record put back when the program refuses it."""
        self._table.persist(instance, config=config)
        try:
            return await instance.apply_config(config)
        except BaseException:
            self._table.save_instance(instance)  # the config that stays
            raise
