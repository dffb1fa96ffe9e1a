"""The cluster views: nodes and their registration, placements, explain, rules over REST."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig, GroupConfig, HealthConfig, NodeConfig

Run = Callable[..., None]


def test_registration_of_an_unknown_node_adds_a_generic_node(in_cluster: Run) -> None:
    """A node that registers unannounced joins as a generic node, up at its first check."""

    async def scenario(c: Any) -> None:
        answer = await c.api.post(
            "/api/v1/cluster/nodes", json={"name": "c", "url": "http://c/", "version": "1.0"}
        )
        assert answer.status_code == 200, answer.text
        view = answer.json()
        assert (view["name"], view["url"], view["status"]) == ("c", "http://c", "unknown")
        assert (view["generic"], view["registered"]) == (True, True)
        assert view["reason"] == "not checked yet"
        c.start_node("c")
        c.node("a").cpu_percent = c.node("b").cpu_percent = 50.0
        await c.check()
        assert (await c.api.get("/api/v1/cluster/nodes/c")).json()["status"] == "up"
        created = await c.api.post("/api/v1/instances", json={"name": "cam1", "entry": "cam1"})
        assert created.json()["node"] == "c"

    in_cluster(scenario)


def test_a_listed_node_without_url_is_reached_once_it_registers(in_cluster: Run) -> None:
    """A node listed by name only waits for its registration; then its rules apply."""
    rules = ClusterConfig(
        nodes=[NodeConfig(name="a", groups=["alvra"]), NodeConfig(name="b", url="http://b")],
        groups={"alvra": GroupConfig(instances=["alvra_*"])},
    )

    async def scenario(c: Any) -> None:
        view = (await c.api.get("/api/v1/cluster/nodes/a")).json()
        assert (view["status"], view["reason"], view["url"]) == (
            "unknown",
            "waits for its registration",
            None,
        )
        answer = await c.api.post("/api/v1/cluster/nodes", json={"name": "a", "url": "http://a"})
        assert answer.json()["generic"] is False
        assert answer.json()["groups"] == ["alvra"]
        await c.check("a")
        assert c.manager.nodes["a"].status == "up"
        made = await c.api.post("/api/v1/instances", json={"name": "alvra_cam", "entry": "cam1"})
        assert made.json()["node"] == "a"

    in_cluster(scenario, "a", "b", rules=rules, check=False)


def test_a_registration_with_a_bad_url_is_refused(in_cluster: Run) -> None:
    """A registration whose URL is not http(s) is a 422."""

    async def scenario(c: Any) -> None:
        answer = await c.api.post("/api/v1/cluster/nodes", json={"name": "c", "url": "tcp://c:1"})
        assert answer.status_code == 422
        assert "c" not in c.manager.nodes

    in_cluster(scenario)


def test_an_unknown_node_is_a_404_naming_it(in_cluster: Run) -> None:
    """Asking for a node the cluster does not know is a 404 quoting the name."""

    async def scenario(c: Any) -> None:
        answer = await c.api.get("/api/v1/cluster/nodes/zz")
        assert answer.status_code == 404
        assert answer.json()["detail"] == "no node named 'zz' in the cluster"

    in_cluster(scenario)


def test_a_listed_node_cannot_be_forgotten_but_a_registered_one_can(in_cluster: Run) -> None:
    """DELETE of a node in the rules is a 409; a registered node that is not up goes away."""

    async def scenario(c: Any) -> None:
        answer = await c.api.delete("/api/v1/cluster/nodes/a")
        assert answer.status_code == 409
        assert "listed in the rules" in answer.json()["detail"]
        await c.api.post("/api/v1/cluster/nodes", json={"name": "c", "url": "http://c"})
        assert (await c.api.delete("/api/v1/cluster/nodes/c")).status_code == 204
        names = [n["name"] for n in (await c.api.get("/api/v1/cluster/nodes")).json()]
        assert names == ["a", "b"]

    in_cluster(scenario)


def test_new_rules_apply_at_once(in_cluster: Run, tmp_path: Path) -> None:
    """PUT /cluster/rules takes effect for the next placement and is written to the file."""
    config = tmp_path / "cluster.json"

    async def scenario(c: Any) -> None:
        rules = {
            "nodes": [
                {"name": "a", "url": "http://a"},
                {"name": "b", "url": "http://b", "pins": [{"instance": "cam1", "port": 9000}]},
            ],
            "health": {"down_after": 2},
        }
        answer = await c.api.put("/api/v1/cluster/rules", json=rules)
        assert answer.status_code == 200, answer.text
        assert c.manager.rules.pin_of("cam1") is not None
        explained = (await c.api.get("/api/v1/cluster/explain/cam1")).json()
        assert (explained["node"], explained["port"], explained["rule"]) == ("b", 9000, "pinned")
        made = await c.api.post("/api/v1/instances", json={"name": "cam1", "entry": "cam1"})
        assert made.json()["stream"] == "tcp://b:9000"
        written = json.loads(config.read_text())
        assert written["nodes"][1]["pins"] == [{"instance": "cam1", "port": 9000}]
        assert (await c.api.get("/api/v1/cluster/rules")).json() == written

    in_cluster(scenario, config_file=config)


def test_rules_that_drop_a_node_forget_it_and_disable_takes_it_out(in_cluster: Run) -> None:
    """A node no longer listed is forgotten; a disabled one takes nothing."""

    async def scenario(c: Any) -> None:
        rules = {
            "nodes": [
                {"name": "a", "url": "http://a", "enabled": False},
                {"name": "c", "url": "http://c"},
            ]
        }
        assert (await c.api.put("/api/v1/cluster/rules", json=rules)).status_code == 200
        nodes = (await c.api.get("/api/v1/cluster/nodes")).json()
        assert [(n["name"], n["status"]) for n in nodes] == [("a", "disabled"), ("c", "unknown")]
        answer = await c.api.get("/api/v1/cluster/explain/cam1")
        assert answer.status_code == 503
        assert "a: disabled; c: unknown" in answer.json()["detail"]

    in_cluster(scenario)


def test_invalid_rules_are_refused_and_the_old_ones_stay(in_cluster: Run) -> None:
    """Rules that do not validate are a 422 quoting the problem; nothing changes."""

    async def scenario(c: Any) -> None:
        rules = {"nodes": [{"name": "a", "groups": ["alvra"]}]}
        answer = await c.api.put("/api/v1/cluster/rules", json=rules)
        assert answer.status_code == 422
        assert "node 'a' names unknown groups ['alvra']" in answer.text
        assert [n.name for n in c.manager.rules.nodes] == ["a", "b"]

    in_cluster(scenario)


def test_explain_says_where_and_why_without_creating(in_cluster: Run) -> None:
    """GET /cluster/explain/NAME?source=CAM gives node, rule, why and scores; creates nothing."""

    async def scenario(c: Any) -> None:
        c.node("b").cpu_percent = 80.0
        await c.check("b")
        await c.api.post("/api/v1/instances", json={"name": "cam1", "entry": "cam1"})
        c.node("a").cpu_percent = 60.0
        await c.check("a")
        near = (await c.api.get("/api/v1/cluster/explain/p1", params={"source": "cam1"})).json()
        assert near == {
            "instance": "p1",
            "node": "a",
            "port": None,
            "rule": "colocated",
            "why": "next to its source 'cam1', which runs on a",
            "scores": {"a": 0.602},
        }
        alone = (await c.api.get("/api/v1/cluster/explain/p2")).json()
        assert (alone["node"], alone["rule"]) == ("a", "least_loaded")
        assert set(alone["scores"]) == {"a", "b"}
        assert "least loaded among generic nodes: a 0.602" in alone["why"]
        assert c.manager.ledger.get("p1") is None
        assert len(c.node("a").created) == 1

    in_cluster(scenario)


def test_placements_list_each_instance_with_its_reason(in_cluster: Run) -> None:
    """GET /cluster/placements lists every placement, sorted, each with rule and why."""
    rules = ClusterConfig(
        nodes=[NodeConfig(name="a", url="http://a"), NodeConfig(name="b", url="http://b")],
        health=HealthConfig(down_after=2),
    )

    async def scenario(c: Any) -> None:
        for name in ("cam2", "cam1"):
            await c.api.post("/api/v1/instances", json={"name": name, "entry": name})
        placements = (await c.api.get("/api/v1/cluster/placements")).json()
        assert [(p["instance"], p["rule"]) for p in placements] == [
            ("cam1", "least_loaded"),
            ("cam2", "least_loaded"),
        ]
        assert {p["node"] for p in placements} == {"a", "b"}  # the burst spread
        missing = await c.api.get("/api/v1/cluster/placements/nope")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "instance 'nope' was not placed by this manager"

    in_cluster(scenario, rules=rules)


def test_a_node_registering_at_a_listed_url_is_that_node(in_cluster: Run) -> None:
    """A node that registers under its host name at the URL of a node listed under another
    name (servers.json names nodes host-port) is that node, not a second one: nothing it runs
    is taken for a duplicate."""
    rules = ClusterConfig.from_servers_json(
        {"http://a:8881": {"instances": ["cam1:9000"]}, "http://b:8881": {}}
    )

    async def scenario(c: Any) -> None:
        answer = await c.api.post(
            "/api/v1/cluster/nodes", json={"name": "a", "url": "http://a:8881"}
        )
        await c.check()
        made = await c.api.post(
            "/api/v1/instances", json={"name": "cam1", "entry": "cam1", "permanent": True}
        )
        assert made.json()["node"] == "a-8881"
        await c.check()
        assert c.node("a").deleted == []
        assert "cam1" in c.node("a").instances
        assert answer.json()["name"] == "a-8881"
        assert sorted(c.manager.nodes) == ["a-8881", "b-8881"]

    in_cluster(scenario, rules=rules, check=False)
