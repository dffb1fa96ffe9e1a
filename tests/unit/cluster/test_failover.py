"""Failover: a dead node's permanent instances start elsewhere, the rest are gone; a node that
returns runs nothing twice; a restarted node gets its permanent instances back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cluster import failover
from cluster.config import ClusterConfig, HealthConfig, NodeConfig, Pin

Run = Callable[..., None]


async def busy(c: Any, name: str, cpu: float = 80.0) -> None:
    """Node ``name`` reports ``cpu`` % CPU, and the manager has seen it."""
    c.node(name).cpu_percent = cpu
    await c.check(name)


async def create(c: Any, name: str, entry: str | None = None, **body: Any) -> dict[str, Any]:
    """An instance created through the manager; its InstanceInfo."""
    answer = await c.api.post(
        "/api/v1/instances", json={"name": name, "entry": entry or name, **body}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def kill(c: Any, name: str) -> None:
    """Node ``name`` stops answering, and is checked until the manager marks it down."""
    c.network.unreachable.add(name)
    for _ in range(c.manager.rules.health.down_after):
        await c.check(name)
    assert c.manager.nodes[name].status == "down"


def test_a_dead_nodes_permanent_instances_start_on_another_node(in_cluster: Run) -> None:
    """Down: permanent instances are created elsewhere (moves=1, moved_from), others forgotten."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1", permanent=True)
        await create(c, "keeper", permanent=True)
        await create(c, "cam2")
        await kill(c, "a")
        for name in ("cam1", "keeper"):
            placement = c.manager.ledger.get(name)
            assert (placement.node, placement.moves, placement.moved_from) == ("b", 1, "a")
            assert placement.permanent is True
        assert c.node("b").instances["cam1"].permanent is True
        assert c.manager.ledger.get("cam2") is None
        assert "cam2" not in c.node("b").instances
        listed = (await c.api.get("/api/v1/instances")).json()
        assert [(i["name"], i["node"]) for i in listed] == [("cam1", "b"), ("keeper", "b")]
        assert (await c.api.get("/api/v1/instances/cam2")).status_code == 404
        info = (await c.api.get("/api/v1/node")).json()
        assert info["cluster"]["failovers"] == 2
        stream = (await c.api.post("/api/v1/streams/cam1")).json()
        assert stream["stream"].startswith("tcp://b:")  # a client asking now gets the new URL

    in_cluster(scenario)


def test_a_moved_instance_keeps_its_config(in_cluster: Run) -> None:
    """An instance moved off a dead node starts with the config it had, changes included."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1", permanent=True, config={"exposure": 2, "roi": [0, 10]})
        await c.api.patch("/api/v1/instances/cam1/config", json={"exposure": 7})
        await kill(c, "a")
        assert c.node("b").instances["cam1"].config == {"exposure": 7, "roi": [0, 10]}

    in_cluster(scenario)


def test_a_returning_node_stops_what_now_runs_elsewhere(in_cluster: Run) -> None:
    """A node that comes back still running a moved instance is told to delete it."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1", permanent=True)
        await kill(c, "a")
        assert "cam1" in c.node("a").instances  # partitioned, not dead: it still runs there
        c.network.unreachable.clear()
        await c.check("a")
        assert c.manager.nodes["a"].status == "up"
        assert c.node("a").deleted == ["cam1"]
        assert "cam1" not in c.node("a").instances
        assert "cam1" in c.node("b").instances
        listed = (await c.api.get("/api/v1/instances")).json()
        assert [(i["name"], i["node"]) for i in listed] == [("cam1", "b")]
        assert c.manager.ledger.get("cam1").node == "b"

    in_cluster(scenario)


def test_a_restarted_node_gets_its_permanent_instances_again(in_cluster: Run) -> None:
    """A node that restarted between two checks (running nothing) gets its permanent instances
    created again; its other instances are forgotten."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1", permanent=True)
        await create(c, "cam2")
        for name in ("cam1", "cam2"):  # placed a while ago, not in the grace of a new placement
            old = c.manager.ledger.get(name)
            c.manager.ledger.put(old.model_copy(update={"placed_at": old.placed_at - 60}))
        after = c.restart("a")
        await c.check("a")
        assert [r.name for r in after.created] == ["cam1"]
        assert after.created[0].permanent is True
        assert c.manager.ledger.get("cam1").node == "a"
        assert c.manager.ledger.get("cam2") is None
        listed = (await c.api.get("/api/v1/instances")).json()
        assert [(i["name"], i["node"]) for i in listed] == [("cam1", "a")]

    in_cluster(scenario)


def test_a_pinned_instance_waits_for_its_node_and_starts_there(in_cluster: Run) -> None:
    """A permanent pinned instance of a dead node is not moved; it is created again, with its
    port, when its node is back."""
    rules = ClusterConfig(
        nodes=[
            NodeConfig(name="a", url="http://a", pins=[Pin(instance="cam1", port=9000)]),
            NodeConfig(name="b", url="http://b"),
        ],
        health=HealthConfig(down_after=2),
    )

    async def scenario(c: Any) -> None:
        await create(c, "cam1", permanent=True)
        await kill(c, "a")
        placement = c.manager.ledger.get("cam1")
        assert (placement.node, placement.rule) == (None, "waiting")
        assert "pinned to node 'a', which is down: it waits" in placement.why
        assert c.node("b").created == []
        answer = await c.api.get("/api/v1/instances/cam1")
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("instance 'cam1' waits for a node")

        c.restart("a", keep_registry=False)  # back, a new machine
        c.network.unreachable.clear()
        await c.check("a")
        await failover.place_waiting(c.manager)
        assert c.manager.ledger.get("cam1").node == "a"
        assert c.node("a").instances["cam1"].stream == "tcp://a:9000"

    in_cluster(scenario, rules=rules)


def test_a_waiting_instance_found_running_on_its_returning_node_is_adopted(
    in_cluster: Run,
) -> None:
    """A node back from a partition that runs a waiting instance keeps it: nothing restarts."""
    rules = ClusterConfig(
        nodes=[
            NodeConfig(name="a", url="http://a", pins=[Pin(instance="cam1")]),
            NodeConfig(name="b", url="http://b"),
        ],
        health=HealthConfig(down_after=2),
    )

    async def scenario(c: Any) -> None:
        await create(c, "cam1", permanent=True)
        await kill(c, "a")
        c.network.unreachable.clear()
        await c.check("a")
        placement = c.manager.ledger.get("cam1")
        assert (placement.node, placement.rule) == ("a", "adopted")
        await failover.place_waiting(c.manager)
        assert len(c.node("a").created) == 1
        assert c.node("a").deleted == []

    in_cluster(scenario, rules=rules)


def test_a_permanent_instance_with_no_node_left_waits_then_starts(in_cluster: Run) -> None:
    """With no other eligible node, a moved instance waits, and starts once a node is up."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1", permanent=True)
        await kill(c, "a")
        placement = c.manager.ledger.get("cam1")
        assert placement.node is None
        assert "a: excluded" in placement.why
        c.network.unreachable.clear()
        c.restart("a")
        await c.check("a")
        await failover.place_waiting(c.manager)
        assert c.manager.ledger.get("cam1").node == "a"
        assert "cam1" in c.node("a").instances

    in_cluster(scenario, "a")


def test_the_registrys_permanent_entries_start_once_a_node_is_up(in_cluster: Run) -> None:
    """Permanent registry entries wait for a node, then start once, on the least loaded one."""

    async def scenario(c: Any) -> None:
        c.manager.new_permanents = {e.name for e in c.manager.registry.entries()}
        await failover.place_waiting(c.manager)  # no node up yet
        assert c.manager.ledger.all() == []
        c.node("a").cpu_percent = 80.0
        await c.check()
        await failover.place_waiting(c.manager)
        await failover.place_waiting(c.manager)
        assert [p.instance for p in c.manager.ledger.all()] == ["keeper"]
        assert c.manager.ledger.get("keeper").permanent is True
        assert [r.name for r in c.node("b").created] == ["keeper"]

    in_cluster(scenario, check=False)


def test_a_pipeline_reading_a_moved_source_follows_it(in_cluster: Run) -> None:
    """A pipeline that read a moved source by its old URL is created again next to it: it
    never keeps reading a dead node's stream."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        cam = await create(c, "cam1", permanent=True)
        await busy(c, "a", 95.0)
        await busy(c, "b", 5.0)
        await create(c, "spots", permanent=True)
        assert c.node("b").instances["spots"].input.url == cam["stream"]  # type: ignore[union-attr]
        await kill(c, "a")
        assert c.manager.ledger.get("cam1").node == "b"
        assert c.node("b").deleted == ["spots"]
        assert c.node("b").instances["spots"].input is None  # next to it now: read by name
        assert c.manager.ledger.get("spots").rule == "colocated"

    in_cluster(scenario)


def test_a_pipeline_reading_a_moved_source_from_a_third_node_gets_its_new_url(
    in_cluster: Run,
) -> None:
    """A pipeline on a third node is created again with the moved source's new stream URL."""
    rules = ClusterConfig(
        nodes=[
            NodeConfig(name="a", url="http://a"),
            NodeConfig(name="b", url="http://b", pins=[Pin(instance="spots")]),
            NodeConfig(name="c", url="http://c"),
        ],
        health=HealthConfig(down_after=2),
    )

    async def scenario(c: Any) -> None:
        await busy(c, "b", 90.0)
        await busy(c, "c", 50.0)
        old = await create(c, "cam1", permanent=True)
        assert old["node"] == "a"
        await create(c, "spots")
        assert c.node("b").instances["spots"].input.url == old["stream"]  # type: ignore[union-attr]
        await kill(c, "a")
        new = c.node("c").instances["cam1"]
        assert c.node("b").deleted == ["spots"]
        assert c.node("b").instances["spots"].input.url == new.stream  # type: ignore[union-attr]
        assert new.stream != old["stream"]

    in_cluster(scenario, "a", "b", "c", rules=rules)


def test_a_pipeline_moved_with_its_source_is_created_once(in_cluster: Run) -> None:
    """A source and its pipeline on a dead node move together, each created once."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1", permanent=True)
        await create(c, "spots", permanent=True)
        assert c.manager.ledger.get("spots").node == "a"
        await kill(c, "a")
        assert [r.name for r in c.node("b").created] == ["cam1", "spots"]
        assert c.node("b").created[1].input is None  # next to its source again: by name
        assert c.node("b").deleted == []

    in_cluster(scenario)


def test_an_on_demand_stream_of_a_dead_node_is_gone(in_cluster: Run) -> None:
    """A stream started on request is not moved: it is gone until asked for again."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        assert (await c.api.post("/api/v1/streams/cam2")).json()["node"] == "a"
        await kill(c, "a")
        assert c.manager.ledger.get("cam2") is None
        assert c.node("b").created == []
        again = await c.api.post("/api/v1/streams/cam2")
        assert again.json()["node"] == "b"

    in_cluster(scenario)


def test_after_a_partition_a_pipeline_beside_the_deleted_copy_follows_its_source(
    in_cluster: Run,
) -> None:
    """A returning node's pipeline read its local camera, deleted as a duplicate: it is
    created again next to the camera that stays, not left reading a released port."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1", permanent=True)
        await create(c, "spots")  # not permanent: forgotten while its node is away
        assert c.manager.ledger.get("spots").node == "a"
        await kill(c, "a")
        assert c.manager.ledger.get("spots") is None
        c.network.unreachable.clear()
        await c.check("a")  # partitioned, not dead: it still runs both
        assert c.node("a").deleted == ["cam1", "spots"]
        assert "spots" in c.node("b").instances
        placement = c.manager.ledger.get("spots")
        assert (placement.node, placement.rule) == ("b", "colocated")
        listed = (await c.api.get("/api/v1/instances")).json()
        assert sorted((i["name"], i["node"]) for i in listed) == [("cam1", "b"), ("spots", "b")]

    in_cluster(scenario)
