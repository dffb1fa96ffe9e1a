"""The manager serves a node's REST API over many nodes: calls land where the instance runs,
and a node's answer, refusal or silence comes back as the client would get it from the node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cluster.config import ClusterConfig, NodeConfig, Pin
from supervisor.nodeapi.models import CreateInstance
from supervisor.nodeapi.specs import InputSpec

Run = Callable[..., None]


async def busy(c: Any, name: str, cpu: float = 80.0) -> None:
    """Node ``name`` reports ``cpu`` % CPU, and the manager has seen it."""
    c.node(name).cpu_percent = cpu
    await c.check(name)


async def create(c: Any, name: str, entry: str | None = None, **body: Any) -> Any:
    """POST /api/v1/instances through the manager."""
    return await c.api.post(
        "/api/v1/instances", json={"name": name, "entry": entry or name, **body}
    )


def test_create_lands_on_the_chosen_node_and_the_list_shows_the_node(in_cluster: Run) -> None:
    """An instance created through the manager runs on the least loaded node; lists say where."""

    async def scenario(c: Any) -> None:
        await busy(c, "a")
        answer = await create(c, "cam1")
        assert answer.status_code == 201, answer.text
        assert answer.json()["node"] == "b"
        assert answer.json()["stream"].startswith("tcp://b:")
        assert [r.name for r in c.node("b").created] == ["cam1"]
        assert c.node("a").created == []
        listed = (await c.api.get("/api/v1/instances")).json()
        assert [(i["name"], i["node"]) for i in listed] == [("cam1", "b")]
        one = (await c.api.get("/api/v1/instances/cam1")).json()
        assert one["node"] == "b"
        placement = (await c.api.get("/api/v1/cluster/placements/cam1")).json()
        assert placement["node"] == "b"
        assert placement["rule"] == "least_loaded"
        assert "b 0.100 (cpu 5 %" in placement["why"]
        assert "a 0.800 (cpu 80 %" in placement["why"]

    in_cluster(scenario)


def test_a_name_running_anywhere_is_a_conflict_naming_its_node(in_cluster: Run) -> None:
    """Creating a name that runs on some node is a 409 that says which node."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1")
        answer = await create(c, "cam1", "cam2")
        assert answer.status_code == 409
        assert answer.json()["detail"] == "an instance named 'cam1' already runs on node 'a'"

    in_cluster(scenario)


def test_an_unknown_entry_is_a_404_as_on_a_node(in_cluster: Run) -> None:
    """An entry the cluster's registry lacks is refused before any node is asked."""

    async def scenario(c: Any) -> None:
        answer = await create(c, "x", "nope")
        assert answer.status_code == 404
        assert "'nope'" in answer.json()["detail"]
        assert c.node("a").created == []
        assert c.node("b").created == []

    in_cluster(scenario)


def test_a_nodes_conflict_comes_back_as_409_with_its_detail(in_cluster: Run) -> None:
    """A node refusing a create with 409 gives the client the same status and detail."""

    async def scenario(c: Any) -> None:
        await c.node("a").create_instance(CreateInstance(name="cam1", entry="cam1"))
        answer = await create(c, "cam1")  # the manager has not seen it yet
        assert answer.status_code == 409
        assert answer.json()["detail"] == "an instance named 'cam1' already exists"
        assert c.manager.ledger.get("cam1") is None

    in_cluster(scenario, "a")


def test_a_nodes_not_found_comes_back_as_404_with_its_detail(in_cluster: Run) -> None:
    """An instance gone from its node (not yet noticed) is the node's 404 and detail."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1")
        del c.node("a").instances["cam1"]
        answer = await c.api.get("/api/v1/instances/cam1")
        assert answer.status_code == 404
        assert answer.json()["detail"] == "no instance named 'cam1'"

    in_cluster(scenario, "a")


def test_a_nodes_refused_config_comes_back_as_422_with_its_detail(in_cluster: Run) -> None:
    """A config the node's program refuses is the node's 422 and detail, unchanged."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1")
        answer = await c.api.patch("/api/v1/instances/cam1/config", json={"exposure": -1})
        assert answer.status_code == 422
        assert answer.json()["detail"] == "'cam1' refused the config: exposure -1 < 0"

    in_cluster(scenario, "a")


def test_a_config_change_is_kept_for_the_next_move(in_cluster: Run) -> None:
    """A config changed through the manager is what the instance is created with elsewhere."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1", permanent=True)
        answer = await c.api.patch("/api/v1/instances/cam1/config", json={"exposure": 5})
        assert answer.status_code == 200, answer.text
        assert c.node("a").instances["cam1"].config == {"exposure": 5}
        assert c.manager.ledger.get("cam1").request.config == {"exposure": 5}

    in_cluster(scenario, "a")


def test_an_unreachable_node_is_a_503_naming_it(in_cluster: Run) -> None:
    """A node that does not answer makes the call a 503 whose message names the node."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1")
        c.network.unreachable.add("a")
        answer = await c.api.get("/api/v1/instances/cam1")
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("node 'a' (http://a) does not answer")
        answer = await create(c, "cam2")
        assert answer.status_code == 503
        assert "node 'a' (http://a) does not answer" in answer.json()["detail"]

    in_cluster(scenario, "a")


def test_no_node_up_is_a_503_with_each_nodes_reason(in_cluster: Run) -> None:
    """With no node up, a create is a 503 that gives each node's state."""

    async def scenario(c: Any) -> None:
        answer = await create(c, "cam1")
        assert answer.status_code == 503
        detail = answer.json()["detail"]
        assert "no node may run 'cam1'" in detail
        assert "a: unknown" in detail
        assert "b: unknown" in detail

    in_cluster(scenario, check=False)


def test_a_pipeline_goes_next_to_its_camera_and_reads_it_by_name(in_cluster: Run) -> None:
    """A pipeline lands on its camera's node, where the node resolves the camera by name."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        await create(c, "cam1")
        await busy(c, "a", 50.0)
        await busy(c, "b", 5.0)
        answer = await create(c, "spots")
        assert answer.json()["node"] == "a"
        assert c.node("a").created[-1].input is None  # the entry's {"camera": "cam1"} applies
        assert c.manager.ledger.get("spots").rule == "colocated"

    in_cluster(scenario)


def test_a_pipeline_on_another_node_reads_its_source_by_url(in_cluster: Run) -> None:
    """A pipeline placed away from its source is given the source's stream URL as input."""

    async def scenario(c: Any) -> None:
        await busy(c, "b")
        cam = (await create(c, "cam1")).json()
        assert cam["node"] == "a"
        await busy(c, "a", 95.0)  # above colocate_max_cpu
        await busy(c, "b", 5.0)
        answer = await create(c, "spots")
        assert answer.json()["node"] == "b"
        assert c.node("b").created[-1].input == InputSpec(url=cam["stream"], mode="SUB")
        assert answer.json()["input"]["url"] == cam["stream"]
        placement = c.manager.ledger.get("spots")
        assert placement.request.input is None  # the ledger keeps the request, not the URL
        assert "its source runs on a, which is not eligible or too busy" in placement.why

    in_cluster(scenario)


def test_a_pinned_port_reaches_the_node(in_cluster: Run) -> None:
    """An instance pinned with a port is created on its node with that output port."""
    rules = ClusterConfig(
        nodes=[
            NodeConfig(name="a", url="http://a"),
            NodeConfig(name="b", url="http://b", pins=[Pin(instance="cam1", port=9000)]),
        ]
    )

    async def scenario(c: Any) -> None:
        await busy(c, "b", 99.0)
        answer = await create(c, "cam1")
        assert answer.json()["node"] == "b"
        assert answer.json()["stream"] == "tcp://b:9000"
        assert c.node("b").created[-1].output.port == 9000
        assert c.manager.ledger.get("cam1").why == "pinned to b with port 9000 by the rules"

    in_cluster(scenario, rules=rules)


def test_delete_goes_to_the_node_and_forgets_the_placement(in_cluster: Run) -> None:
    """A delete through the manager deletes on the node and drops the placement and listing."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1")
        answer = await c.api.delete("/api/v1/instances/cam1")
        assert answer.status_code == 204
        assert c.node("a").deleted == ["cam1"]
        assert c.manager.ledger.get("cam1") is None
        assert (await c.api.get("/api/v1/instances")).json() == []
        assert (await c.api.get("/api/v1/instances/cam1")).status_code == 404

    in_cluster(scenario, "a")


def test_stop_and_start_go_to_the_node_that_runs_it(in_cluster: Run) -> None:
    """Actions on an instance reach its node, and the list follows at once."""

    async def scenario(c: Any) -> None:
        await busy(c, "a")
        await create(c, "cam1")
        answer = await c.api.post("/api/v1/instances/cam1/stop")
        assert answer.json()["state"] == "stopped"
        assert c.node("b").instances["cam1"].state == "stopped"
        listed = (await c.api.get("/api/v1/instances")).json()
        assert listed[0]["state"] == "stopped"
        assert (await c.api.post("/api/v1/instances/cam1/start")).json()["state"] == "running"

    in_cluster(scenario)


def test_a_requested_stream_is_placed_and_recorded(in_cluster: Run) -> None:
    """A stream asked for by name starts on the least loaded node and is placed there."""

    async def scenario(c: Any) -> None:
        await busy(c, "a")
        answer = await c.api.post("/api/v1/streams/cam2")
        assert answer.status_code == 200, answer.text
        assert answer.json()["node"] == "b"
        assert answer.json()["on_demand"] is True
        assert c.manager.ledger.get("cam2").node == "b"
        again = await c.api.post("/api/v1/streams/cam2")
        assert again.json()["node"] == "b"
        assert len(c.node("b").instances) == 1

    in_cluster(scenario)


def test_node_info_adds_up_the_cluster(in_cluster: Run) -> None:
    """GET /node of the manager sums the nodes' instances and machines, and counts nodes."""

    async def scenario(c: Any) -> None:
        await create(c, "cam1")
        await create(c, "cam2")
        c.network.unreachable.add("b")
        await c.check("b")
        await c.check("b")
        info = (await c.api.get("/api/v1/node")).json()
        assert info["cluster"]["nodes"]["up"] == 2
        assert info["cluster"]["nodes"]["down"] == 1
        assert info["resources"]["cpu_count"] == 16  # two up nodes of 8
        assert info["instances"] == len(c.node("a").instances) + len(c.node("c").instances)

    in_cluster(scenario, "a", "b", "c")


def test_a_refused_stream_request_leaves_no_placement(in_cluster: Run) -> None:
    """A stream request its node cannot take is a 503, and the name stays free for a create."""

    async def scenario(c: Any) -> None:
        c.network.unreachable.add("a")
        answer = await c.api.post("/api/v1/streams/cam2")
        assert answer.status_code == 503
        assert c.manager.ledger.get("cam2") is None
        c.network.unreachable.clear()
        created = await create(c, "cam2")
        assert created.status_code == 201, created.text

    in_cluster(scenario, "a")
