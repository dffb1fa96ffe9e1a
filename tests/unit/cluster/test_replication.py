"""The manager's registry and backgrounds reach every node that is up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from supervisor.backgrounds import background_id

Run = Callable[..., None]


def test_a_registry_file_added_or_deleted_on_the_manager_reaches_the_nodes(
    in_cluster: Run,
) -> None:
    """A file written to the manager's registry is written on every up node; deleted, deleted."""

    async def scenario(c: Any) -> None:
        replicator = c.manager.replicator
        await replicator.sync_changes()  # the folder as it is: already on the nodes
        (c.manager.settings.registry / "cam3.json").write_text('{"builtin": "camera_simulation"}')
        c.network.unreachable.add("b")
        await c.check("b")
        await c.check("b")
        await replicator.sync_changes()
        assert "cam3.json" in c.node("a").registry.files
        assert "cam3.json" not in c.node("b").registry.files  # down: it gets it when back
        (c.manager.settings.registry / "cam2.json").unlink()
        await replicator.sync_changes()
        assert "cam2.json" not in c.node("a").registry.files
        c.manager.registry.scan()  # what the manager's registry watch does
        made = await c.api.post("/api/v1/instances", json={"name": "x", "entry": "cam3"})
        assert made.status_code == 201, made.text
        c.network.unreachable.clear()
        await c.check("b")
        assert "cam3.json" in c.node("b").registry.files

    in_cluster(scenario)


def test_backgrounds_reach_the_nodes_and_a_node_coming_up(in_cluster: Run) -> None:
    """A background kept by the manager is copied to up nodes, and to a node as it comes up."""

    async def scenario(c: Any) -> None:
        replicator = c.manager.replicator
        await replicator.sync_changes()
        first = background_id("cam1")
        c.manager.backgrounds.save(first, np.arange(16, dtype=np.uint16).reshape(4, 4))
        await replicator.sync_changes()
        assert c.node("a").backgrounds.ids() == [first]
        assert np.array_equal(c.node("a").backgrounds.load(first), np.arange(16).reshape(4, 4))
        late = c.start_node("c")
        await c.api.post("/api/v1/cluster/nodes", json={"name": "c", "url": "http://c"})
        await c.check("c")
        assert late.backgrounds.ids() == [first]

    in_cluster(scenario)


def test_a_node_coming_back_gets_only_the_registry_files_it_lacks_or_has_otherwise(
    in_cluster: Run,
) -> None:
    """Files compared by SHA-256 and execute bit: a node that kept its registry gets only
    the one that changed meanwhile, not the whole registry again."""

    async def scenario(c: Any) -> None:
        registry = c.manager.settings.registry
        await c.check()
        before = dict(c.node("a").registry.files)
        assert set(before) == {p.name for p in registry.iterdir() if p.is_file()}
        back = c.restart("a")
        written: list[str] = []
        write = back.registry.write_file

        def counting(filename: str, data: bytes, *, executable: bool = False) -> Any:
            written.append(filename)
            return write(filename, data, executable=executable)

        back.registry.write_file = counting  # type: ignore[method-assign]
        (registry / "cam2.json").write_text('{"builtin": "camera_simulation", "args": ["-v"]}')
        c.network.unreachable.add("a")
        for _ in range(c.manager.rules.health.down_after):
            await c.check("a")
        c.network.unreachable.clear()
        await c.check("a")
        assert c.manager.nodes["a"].status == "up"
        assert written == ["cam2.json"]
        assert back.registry.files["cam2.json"] == (registry / "cam2.json").read_bytes()

    in_cluster(scenario)
