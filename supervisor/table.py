"""The instance table of a node: every instance, what it was created with, and its persistence."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import structlog

from .control import ProgramMessage
from .instance import Instance
from .instance_hooks import InstanceHooks
from .nodeapi.errors import InstanceNotFoundError, StorageError
from .nodeapi.specs import EntrySpec, RestartMode
from .registry import Registry
from .store import InstanceRecord

__all__ = ["InstanceTable", "RecordStore"]

log = structlog.get_logger(__name__)


class RecordStore(Protocol):
    """Where the records are saved, one each (``supervisor.store.StateStore``; tests fake it).
    Every write raises ``StorageError`` when it cannot be saved."""

    def load(self) -> list[InstanceRecord]: ...
    def put(self, record: InstanceRecord) -> None: ...
    def delete(self, name: str) -> None: ...
    def transaction(self) -> contextlib.AbstractContextManager[None]: ...
    def health(self) -> str: ...
    def close(self) -> None: ...


class InstanceTable:
    """Instances by name, with the record each was created with, saved at every change.

    A change a client asks for is saved first (``create``, ``persist``, ``forget``: they raise
    ``StorageError`` and change nothing); what an instance does by itself (a stop, an exit) is
    saved afterwards by ``save_instance``, which never raises: a record it cannot save is kept
    in ``unsaved``, shown by ``store_health`` and saved again at the next write that succeeds.

    ``hooks`` is what the instances get to launch their runs and report back: it is given once
    the launcher exists, which in turn reads this table (a reader's source is created here while
    the reader launches).
    """

    def __init__(self, registry: Registry, store: RecordStore) -> None:
        self.registry = registry
        self._store = store
        self._instances: dict[str, Instance] = {}
        self._records: dict[str, InstanceRecord] = {}
        self._batch: set[str] | None = None  # names changed in a batch: saved at its end
        self.unsaved: set[str] = set()  # names whose record could not be saved
        self.hooks: InstanceHooks | None = None
        self.stale_messages = 0  # of runs that ended, or of instances that are gone

    def __contains__(self, name: str) -> bool:
        return name in self._instances

    def __len__(self) -> int:
        return len(self._instances)

    def get(self, name: str) -> Instance:
        """The instance ``name``. Raises ``InstanceNotFoundError``."""
        try:
            return self._instances[name]
        except KeyError:
            raise InstanceNotFoundError(f"no instance named '{name}'") from None

    def find(self, name: str) -> Instance | None:
        return self._instances.get(name)

    def all(self) -> list[Instance]:
        """Every instance (a copy: callers may add or remove while they iterate)."""
        return list(self._instances.values())

    def names(self) -> list[str]:
        return sorted(self._instances)

    def sorted(self) -> list[Instance]:
        return [self._instances[name] for name in sorted(self._instances)]

    # -- what programs tell ------------------------------------------------------------------

    def on_program_message(self, routing_id: bytes, message: ProgramMessage) -> None:
        """A message of the CONFIG channel, for the current run of its instance."""
        instance = self._instances.get(message.instance)
        if instance is None or message.run != instance.run:
            self.stale_messages += 1
            return
        instance.on_message(routing_id, message)

    def note_error(self, name: str, run: int, message: str) -> None:
        """An error record of a program's log: a failed run's reason shows the last one."""
        instance = self._instances.get(name)
        if instance is not None:
            instance.note_error(run, message)

    # -- adding and removing -----------------------------------------------------------------

    def spec_for(self, name: str) -> EntrySpec:
        """The spec instance ``name`` runs with: its entry's, with its record's overrides."""
        return self._spec(self._records[name])

    def _spec(self, record: InstanceRecord) -> EntrySpec:
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

    def create(self, record: InstanceRecord) -> Instance:
        """Save ``record``, then add its instance. Raises ``StorageError`` (nothing added)."""
        self._store.put(record)
        self._saved()
        return self.add(record)

    def add(self, record: InstanceRecord) -> Instance:
        """A new instance from ``record`` (stopped, whatever its desired state), not saved."""
        assert self.hooks is not None, "the table's hooks are set before any instance is added"
        try:
            spec = self._spec(record)
        except Exception as exc:  # entry gone since it was saved: keep the instance, show why
            spec = EntrySpec(program=record.entry)
            reason = f"entry '{record.entry}' is not available: {getattr(exc, 'message', exc)}"
        else:
            reason = "created"
        instance = Instance(record.name, record.entry, spec, dict(record.config), self.hooks)
        instance.reason = reason
        instance.desired = record.desired
        instance.on_demand = record.on_demand and not record.permanent
        instance.permanent = record.permanent
        self._records[record.name] = record
        self._instances[record.name] = instance
        return instance

    def add_on_demand(self, name: str, spec: EntrySpec, *, strict: bool = False) -> Instance:
        """A stopped on-demand instance of the entry ``name``, with its default parameters;
        ``strict``: saved first (``StorageError``: not added), as a client's request is."""
        record = InstanceRecord(
            name=name, entry=name, config=dict(spec.parameters), desired="stopped", on_demand=True
        )
        if strict:
            return self.create(record)
        instance = self.add(record)
        self.save_instance(instance)
        return instance

    def add_permanent(self, name: str) -> Instance | None:
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
        instance = self.add(record)
        self.save_instance(instance)
        return instance

    def forget(self, name: str) -> None:
        """Delete the saved record of ``name`` (before a delete). Raises ``StorageError``."""
        self._store.delete(name)
        self.unsaved.discard(name)
        self._saved()

    def remove(self, name: str) -> Instance:
        """Drop instance ``name`` (already stopped, its record forgotten) from the table."""
        instance = self._instances.pop(name)
        del self._records[name]
        return instance

    # -- persistence -------------------------------------------------------------------------

    def load(self) -> list[InstanceRecord]:
        """The records saved by the last run of this node. Raises ``StorageError`` when the
        state folder is unusable."""
        return self._store.load()

    def close(self) -> None:
        self._store.close()

    def _current(self, name: str, **update: Any) -> InstanceRecord:
        instance = self._instances[name]
        fields = {"config": instance.config, "desired": instance.desired, **update}
        return self._records[name].model_copy(update=fields)

    def persist(self, instance: Instance, **update: Any) -> None:
        """Save ``instance``'s record with ``update`` (e.g. a new config) before it is applied.
        Raises ``StorageError``: the change is then refused and nothing of it is kept."""
        self._store.put(self._current(instance.name, **update))
        self.unsaved.discard(instance.name)
        self._saved()

    def save_instance(self, instance: Instance) -> None:
        """Save ``instance``'s current record (its desired state, config); never raises."""
        name = instance.name
        if instance.deleted or self._instances.get(name) is not instance:
            return  # a deleted instance's record is already forgotten
        if self._batch is not None:
            self._batch.add(name)
            return
        try:
            self._store.put(self._current(name))
        except StorageError as exc:
            self.unsaved.add(name)
            log.error("state_save_failed", instance=name, reason=exc.message)
            return
        self.unsaved.discard(name)
        self._saved()

    def _saved(self) -> None:
        """A write succeeded: save again what could not be saved before."""
        if self.unsaved and self._batch is None:
            self._save_many(set(self.unsaved))

    def _save_many(self, names: Iterable[str]) -> None:
        names = set(names)
        try:
            with self._store.transaction():
                for name in names:
                    if name in self._instances:
                        self._store.put(self._current(name))
                    else:
                        self._store.delete(name)
        except StorageError as exc:
            self.unsaved |= names
            log.error("state_save_failed", instances=len(names), reason=exc.message)
        else:
            self.unsaved -= names

    def discard_saved(self, names: Iterable[str]) -> None:
        """Forget saved records without their instances (a managed worker starts empty)."""
        for name in names:
            if self._batch is not None:
                self._batch.add(name)
            else:
                self._save_many([name])

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make many changes and save them in one transaction, at the end (never raises: what
        cannot be saved is kept in ``unsaved``)."""
        if self._batch is not None:
            yield
            return
        self._batch = set()
        try:
            yield
        finally:
            names, self._batch = self._batch, None
            self._save_many(names | self.unsaved)

    def store_health(self) -> str:
        """'ok', or why the state is not saved (and which records are not)."""
        state = self._store.health()
        if not self.unsaved:
            return state
        names = ", ".join(sorted(self.unsaved)[:5]) + (", ..." if len(self.unsaved) > 5 else "")
        return f"{state}; not saved: {names}" if state != "ok" else f"not saved: {names}"
