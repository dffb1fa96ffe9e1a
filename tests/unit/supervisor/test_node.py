"""A real ``Supervisor`` with fake collaborators: no process is spawned, no guard, no state file.

The spawner hands out fake processes that end when told; the control channel records what it
sends; the store keeps records in memory. The registry and the log hub are the real ones (a
folder and loopback sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import zmq.asyncio

from supervisor.backgrounds import BackgroundStore
from supervisor.contract import ConfigUpdate, ContractEnv
from supervisor.contract.messages import ConfigError
from supervisor.instance import Instance
from supervisor.loghub import LogHub
from supervisor.node import Supervisor
from supervisor.nodeapi import (
    ConflictError,
    CreateInstance,
    InstanceNotFoundError,
    InstanceState,
    InvalidConfigError,
    StorageError,
)
from supervisor.process import ExitStatus
from supervisor.registry import Registry
from supervisor.settings import Settings
from supervisor.store import InstanceRecord

_pids = itertools.count(40000)


class FakeProcess:
    """A run that is 'alive' until ``end`` (or a stop) says how it ended."""

    def __init__(self, on_exit: Callable[[FakeProcess, ExitStatus], None]) -> None:
        self.pid = self.pgid = next(_pids)
        self.started = 0.0
        self.runtime = 100.0  # long enough to count as a stable run
        self.exit_status: ExitStatus | None = None
        self.signals: list[int] = []
        self._on_exit = on_exit

    @property
    def alive(self) -> bool:
        return self.exit_status is None

    def end(self, code: int | None = 0, signal: int | None = None) -> None:
        self.exit_status = ExitStatus(code=code, signal=signal)
        asyncio.get_running_loop().call_soon(self._on_exit, self, self.exit_status)

    def kill_group(self, sig: int) -> bool:
        self.signals.append(sig)
        return True

    async def terminate(self, grace: float) -> tuple[ExitStatus, bool]:
        self.signals.append(15)
        self.end(signal=15)
        await asyncio.sleep(0)
        assert self.exit_status is not None
        return self.exit_status, False


class FakeSpawner:
    """Records every spawn: the instance, its command line and its contract."""

    def __init__(self) -> None:
        self.spawned: list[tuple[str, ContractEnv, FakeProcess]] = []
        self.exited_runs: list[tuple[str, int]] = []
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def spawn(
        self, instance: Instance, argv: list[str], contract: ContractEnv, env: Mapping[str, str]
    ) -> FakeProcess:
        process = FakeProcess(instance.handle_exit)
        self.spawned.append((instance.name, contract, process))
        return process

    def exited(self, instance: Instance, process: FakeProcess) -> None:
        self.exited_runs.append((instance.name, instance.run))

    def guard_info(self) -> dict[str, Any]:
        return {"pid": None, "restarts": 0}

    def runs_of(self, name: str) -> list[tuple[ContractEnv, FakeProcess]]:
        return [(c, p) for n, c, p in self.spawned if n == name]


class FakeControl:
    """The CONFIG channel's server end, without a socket."""

    url = "tcp://127.0.0.1:1"
    malformed = 0

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, ConfigUpdate]] = []
        self.handler: Any = None

    async def start(self, handler: Any, host: str = "127.0.0.1") -> None:
        self.handler = handler

    async def close(self) -> None:
        pass

    def send_config(self, routing_id: bytes, update: ConfigUpdate) -> None:
        self.sent.append((routing_id, update))


class MemoryStore:
    """Saved records, in memory, one each; ``fail`` (a reason) makes every write raise
    ``StorageError`` the way a full disk makes the real store raise."""

    def __init__(self, records: list[InstanceRecord] | None = None) -> None:
        self.records = list(records or [])
        self.saves = 0
        self.fail: str | None = None
        self.closed = False

    @property
    def records(self) -> list[InstanceRecord]:
        return list(self._rows.values())

    @records.setter
    def records(self, records: list[InstanceRecord]) -> None:
        self._rows = {r.name: r for r in records}

    def load(self) -> list[InstanceRecord]:
        return self.records

    def _check(self) -> None:
        if self.fail is not None:
            raise StorageError(f"cannot write state.db: {self.fail}")

    def put(self, record: InstanceRecord) -> None:
        self._check()
        self._rows[record.name] = record
        self.saves += 1

    def delete(self, name: str) -> None:
        self._check()
        self._rows.pop(name, None)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._check()
        before = dict(self._rows)
        try:
            yield
        except BaseException:
            self._rows = before
            raise

    def health(self) -> str:
        return "ok" if self.fail is None else f"cannot write state.db: {self.fail}"

    def close(self) -> None:
        self.closed = True


ENTRIES = {
    "cam.json": {"builtin": "camera_simulation", "parameters": {"size_x": 64}},
    "spots.json": {"builtin": "passthrough", "input": {"camera": "cam"}},
    "loop_a.json": {"builtin": "passthrough", "input": {"instance": "loop_b"}},
    "loop_b.json": {"builtin": "passthrough", "input": {"instance": "loop_a"}},
}


@pytest.fixture
def parts(tmp_path: Path) -> dict[str, Any]:
    registry = tmp_path / "registry"
    registry.mkdir()
    for filename, spec in ENTRIES.items():
        (registry / filename).write_text(json.dumps(spec))
    settings = Settings(registry=registry, monitor_interval=0, port_range=(23100, 23200))
    return {
        "settings": settings,
        "spawner": FakeSpawner(),
        "control": FakeControl(),
        "store": MemoryStore(),
    }


def _node(parts: dict[str, Any]) -> Supervisor:
    settings: Settings = parts["settings"]
    assert settings.backgrounds is not None
    return Supervisor(
        settings,
        registry=Registry(settings.registry),
        backgrounds=BackgroundStore(settings.backgrounds),
        store=parts["store"],
        loghub=LogHub(),
        control=parts["control"],
        spawner=parts["spawner"],
        ctx=zmq.asyncio.Context(),
    )


async def _started(parts: dict[str, Any]) -> Supervisor:
    node = _node(parts)
    await node.start()
    return node


def test_create_launches_the_pipeline_and_the_camera_it_reads(parts):
    """A create spawns the pipeline with its source's stream as DATA; the source is created."""

    async def main() -> None:
        node = await _started(parts)
        try:
            info = await node.create_instance(CreateInstance(name="spots", entry="spots"))
            spawner: FakeSpawner = parts["spawner"]
            ((cam_contract, _),) = spawner.runs_of("cam")
            ((spots_contract, _),) = spawner.runs_of("spots")
            assert spots_contract.data_url == cam_contract.output_url.replace("*", "127.0.0.1")
            assert spots_contract.config_url == FakeControl.url
            assert info.state == InstanceState.STARTING
            names = [i.name for i in await node.list_instances()]
            assert names == ["cam", "spots"]
            assert (await node.get_instance("cam")).on_demand
        finally:
            await node.close()

    asyncio.run(main())


def test_stop_and_delete_end_the_run_and_forget_the_instance(parts):
    """A stop SIGTERMs the run and saves 'stopped'; a delete forgets it in the saved state."""

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam"))
            ((_, process),) = parts["spawner"].runs_of("c")
            info = await node.stop_instance("c")
            assert process.signals == [15]
            assert info.state == InstanceState.STOPPED
            assert [r.desired for r in parts["store"].records] == ["stopped"]
            await node.delete_instance("c")
            assert parts["store"].records == []
            with pytest.raises(InstanceNotFoundError):
                await node.get_instance("c")
        finally:
            await node.close()

    asyncio.run(main())


def test_a_crashed_run_is_restarted_by_its_policy(parts):
    """A permanent instance that exits with code 1 is spawned again, run 2."""

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam", permanent=True))
            ((_, first),) = parts["spawner"].runs_of("c")
            first.end(code=1)
            for _ in range(100):
                if len(parts["spawner"].runs_of("c")) == 2:
                    break
                await asyncio.sleep(0.01)
            assert [c.run for c, _ in parts["spawner"].runs_of("c")] == [1, 2]
            assert parts["spawner"].exited_runs == [("c", 1)]
        finally:
            await node.close()

    asyncio.run(main())


def test_an_input_cycle_fails_the_instance_with_the_chain(parts):
    """loop_a reads loop_b which reads loop_a: refused, the chain is in the reason."""

    async def main() -> None:
        node = await _started(parts)
        try:
            info = await node.create_instance(CreateInstance(name="loop_a", entry="loop_a"))
            assert info.state == InstanceState.FAILED
            assert "input cycle: loop_a -> loop_b -> loop_a" in info.reason
            with pytest.raises(ConflictError, match="already exists"):
                await node.create_instance(CreateInstance(name="loop_a", entry="loop_a"))
        finally:
            await node.close()

    asyncio.run(main())


def test_the_desired_state_comes_back_at_start(parts):
    """Saved records are restored, and a 'running' one is launched with the node."""
    parts["store"].records = [
        InstanceRecord(name="c", entry="cam", config={"size_x": 32}, desired="running"),
        InstanceRecord(name="idle", entry="cam", desired="stopped"),
    ]

    async def main() -> None:
        node = await _started(parts)
        try:
            assert [n for n, _, _ in parts["spawner"].spawned] == ["c"]
            assert (await node.get_config("c")) == {"size_x": 32}
            assert (await node.get_instance("idle")).state == InstanceState.STOPPED
        finally:
            await node.close()
        assert parts["spawner"].closed
        # Shutting down is not an operator's stop: 'c' is still wanted running.
        assert {r.name: r.desired for r in parts["store"].records} == {
            "c": "running",
            "idle": "stopped",
        }

    asyncio.run(main())


class SlowProcess(FakeProcess):
    """A run that takes a while to stop after SIGTERM (a grace period)."""

    async def terminate(self, grace: float) -> tuple[ExitStatus, bool]:
        self.signals.append(15)
        await asyncio.sleep(0.05)
        self.end(signal=15)
        await asyncio.sleep(0)
        assert self.exit_status is not None
        return self.exit_status, False


def _slow(parts: dict[str, Any]) -> None:
    spawner: FakeSpawner = parts["spawner"]

    def spawn(instance: Instance, argv: Any, contract: ContractEnv, env: Any) -> FakeProcess:
        process = SlowProcess(instance.handle_exit)
        spawner.spawned.append((instance.name, contract, process))
        return process

    spawner.spawn = spawn  # type: ignore[method-assign]


def _alive(parts: dict[str, Any]) -> list[str]:
    return [name for name, _, process in parts["spawner"].spawned if process.alive]


def test_a_start_racing_a_delete_leaves_no_run_behind(parts):
    """A start sent while a delete waits for its run to stop: the start is refused, no run
    is left (it used to be spawned again and outlive the delete, listed nowhere)."""
    _slow(parts)

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam"))
            delete = asyncio.create_task(node.delete_instance("c"))
            await asyncio.sleep(0)  # the delete holds the instance, SIGTERM sent
            start = asyncio.create_task(node.start_instance("c"))
            restart = asyncio.create_task(node.restart_instance("c"))
            results = await asyncio.gather(delete, start, restart, return_exceptions=True)
            assert results[0] is None
            assert all(isinstance(r, InstanceNotFoundError) for r in results[1:]), results
            await asyncio.sleep(0.01)
            assert _alive(parts) == []
            assert len(parts["spawner"].runs_of("c")) == 1
            assert [i.name for i in await node.list_instances()] == []
        finally:
            await node.close()

    asyncio.run(main())


def test_lifecycle_operations_of_one_instance_run_one_at_a_time(parts):
    """A stop and a start sent together run in order: the start waits for the stop's end."""
    _slow(parts)

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam"))
            stop = asyncio.create_task(node.stop_instance("c"))
            await asyncio.sleep(0)
            start = asyncio.create_task(node.start_instance("c"))
            await asyncio.sleep(0.01)
            assert not start.done(), "the start must wait for the stop"
            stopped, started = await asyncio.gather(stop, start)
            assert stopped.state == InstanceState.STOPPED
            assert started.state == InstanceState.STARTING
            assert [p.alive for _, p in parts["spawner"].runs_of("c")] == [False, True]
        finally:
            await node.close()

    asyncio.run(main())


def test_a_deleted_instance_is_never_spawned_again(parts):
    """A permanent run that crashes after its delete began: no restart, no backoff spawn."""

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam", permanent=True))
            instance = node.table.get("c")
            await node.delete_instance("c")
            instance.desired = "running"  # whatever raced the delete
            instance.start()
            await asyncio.sleep(0.01)
            assert len(parts["spawner"].runs_of("c")) == 1
            assert _alive(parts) == []
        finally:
            await node.close()

    asyncio.run(main())


def test_nothing_is_spawned_once_the_node_is_closing(parts):
    """A crash during shutdown is not restarted, a reader's start does not start its source."""
    _slow(parts)

    async def main() -> None:
        node = await _started(parts)
        await node.create_instance(CreateInstance(name="c", entry="cam", permanent=True))
        ((_, first),) = parts["spawner"].runs_of("c")
        closing = asyncio.create_task(node.close())
        await asyncio.sleep(0)
        first.end(code=1)  # a crash while the node stops: policy 'always' would restart it
        node.table.get("c").start()
        await closing
        assert len(parts["spawner"].runs_of("c")) == 1
        assert _alive(parts) == []
        assert parts["spawner"].closed
        # the saved desired state is kept for the next start
        assert {r.name: r.desired for r in parts["store"].records} == {"c": "running"}

    asyncio.run(main())


FULL = "database or disk is full (SQLITE_FULL)"


def test_a_change_that_cannot_be_saved_is_refused_whole(parts):
    """With the store failing: a create is refused and not listed, a config patch is refused
    with the old config kept and nothing sent to the program, a start is refused."""

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam"))
            instance = node.table.get("c")
            instance.routing_id = b"c1"  # the program speaks CONFIG: a change is sent live
            await node.create_instance(CreateInstance(name="idle", entry="cam", start=False))
            store: MemoryStore = parts["store"]
            store.fail = FULL
            with pytest.raises(StorageError, match="SQLITE_FULL"):
                await node.create_instance(CreateInstance(name="d", entry="cam"))
            assert [i.name for i in await node.list_instances()] == ["c", "idle"]
            assert [n for n, _, _ in parts["spawner"].spawned] == ["c"]
            with pytest.raises(StorageError, match="SQLITE_FULL"):
                await node.update_config("c", {"size_x": 8})
            assert (await node.get_config("c")) == {"size_x": 64}
            assert parts["control"].sent == []
            with pytest.raises(StorageError):
                await node.set_config("c", {"size_x": 8})
            assert (await node.get_config("c")) == {"size_x": 64}
            with pytest.raises(StorageError):
                await node.start_instance("idle")
            assert (await node.get_instance("idle")).state == InstanceState.STOPPED
            with pytest.raises(StorageError):
                await node.delete_instance("idle")
            assert "idle" in [i.name for i in await node.list_instances()]
            assert {r.name: r.config for r in store.records} == {
                "c": {"size_x": 64},
                "idle": {"size_x": 64},
            }
        finally:
            await node.close()

    asyncio.run(main())


def test_a_stop_stops_even_when_it_cannot_be_saved_and_health_says_so(parts):
    """A failing store never keeps a process running: the stop ends the run, the node's health
    names the error and the record not saved, and the next write that succeeds saves it."""

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam"))
            ((_, process),) = parts["spawner"].runs_of("c")
            assert await node.node_health() == {"store": "ok"}
            store: MemoryStore = parts["store"]
            store.fail = FULL
            info = await node.stop_instance("c")
            assert process.signals == [15]
            assert info.state == InstanceState.STOPPED
            health = (await node.node_health())["store"]
            assert "SQLITE_FULL" in health
            assert "not saved: c" in health
            assert (await node.node_info())["store"] == health
            assert [r.desired for r in store.records] == ["running"]
            store.fail = None
            await node.create_instance(CreateInstance(name="d", entry="cam", start=False))
            assert {r.name: r.desired for r in store.records} == {"c": "stopped", "d": "stopped"}
            assert await node.node_health() == {"store": "ok"}
        finally:
            await node.close()
        assert store.closed

    asyncio.run(main())


def test_a_config_the_program_refuses_leaves_the_saved_config_alone(parts):
    """The new config is saved before it is sent; when the program refuses it, the old one is
    saved again."""

    async def main() -> None:
        node = await _started(parts)
        try:
            await node.create_instance(CreateInstance(name="c", entry="cam"))
            instance = node.table.get("c")
            instance.routing_id = b"c1"
            change = asyncio.create_task(node.update_config("c", {"size_x": 8}))
            for _ in range(100):
                if parts["control"].sent:
                    break
                await asyncio.sleep(0.01)
            ((_, update),) = parts["control"].sent
            assert parts["store"].records[0].config == {"size_x": 8}  # saved before it is sent
            refusal = ConfigError(instance="c", run=instance.run, seq=update.seq, message="small")
            node.table.on_program_message(b"c1", refusal)  # as the CONFIG channel hands it over
            with pytest.raises(InvalidConfigError):
                await change
            assert parts["store"].records[0].config == {"size_x": 64}
        finally:
            await node.close()

    asyncio.run(main())
