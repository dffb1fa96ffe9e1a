"""The instance table of a node: every instance, what it was created with, and its persistence."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .control import ProgramMessage
from .instance import Instance, InstanceHooks
from .nodeapi.errors import InstanceNotFoundError
from .nodeapi.specs import EntrySpec, RestartMode
from .registry import Registry
from .store import InstanceRecord, StateStore

__all__ = ["InstanceTable"]


class InstanceTable:
    """Instances by name, with the record each was created with, saved at every change.

    ``hooks`` is what the instances get to launch their runs and report back: it is given once
    the launcher exists, which in turn reads this table (a reader's source is created here while
    the reader launches).
    """

    def __init__(self, registry: Registry, store: StateStore) -> None:
        self.registry = registry
        self._store = store
        self._instances: dict[str, Instance] = {}
        self._records: dict[str, InstanceRecord] = {}
        self._batch = 0  # > 0 while many changes are made: save once at the end
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

    def add(self, record: InstanceRecord) -> Instance:
        """A new instance from ``record`` (stopped, whatever its desired state)."""
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

    def add_on_demand(self, name: str, spec: EntrySpec) -> Instance:
        """A stopped on-demand instance of the entry ``name``, with its default parameters."""
        record = InstanceRecord(
            name=name, entry=name, config=dict(spec.parameters), desired="stopped", on_demand=True
        )
        return self.add(record)

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
        return self.add(record)

    def remove(self, name: str) -> Instance:
        """Forget instance ``name`` (already stopped) and save."""
        instance = self._instances.pop(name)
        del self._records[name]
        self.save()
        return instance

    # -- persistence -------------------------------------------------------------------------

    def load(self) -> list[InstanceRecord]:
        """The records saved by the last run of this node."""
        return self._store.load()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make many changes and save once, at the end."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
        self.save()

    def save(self) -> None:
        """Write every instance's record with its current config and desired state."""
        if self._batch:
            return
        self._store.save(
            [
                self._records[name].model_copy(update={"config": i.config, "desired": i.desired})
                for name, i in self._instances.items()
            ]
        )
