"""Placement: pins, groups, next to the source, camera preference, least loaded; and why."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.config import ClusterConfig, GroupConfig, NodeConfig, Pin
from cluster.placement import Candidate, NoNodeError, PlacementRequest, place

GENERIC = ClusterConfig()

ALVRA = ClusterConfig(
    nodes=[NodeConfig(name="alvra1", groups=["alvra"]), NodeConfig(name="gen")],
    groups={"alvra": GroupConfig(instances=["alvra_*"], cameras=["SARES11-CAM"])},
)


def up(name: str, **fields: object) -> Candidate:
    """A node that is up, generic unless told otherwise."""
    return Candidate(name=name, up=True, **fields)  # type: ignore[arg-type]


def test_a_pinned_instance_goes_to_its_node_with_the_port() -> None:
    """A pin decides over load: the pinned node, the pin's port, and a why saying so."""
    rules = ClusterConfig(nodes=[NodeConfig(name="a", pins=[Pin(instance="cam1", port=9000)])])
    nodes = [up("a", cpu_percent=95.0), up("b")]
    decision = place(PlacementRequest("cam1"), nodes, rules, {})
    assert (decision.node, decision.port, decision.rule) == ("a", 9000, "pinned")
    assert decision.why == "pinned to a with port 9000 by the rules"


def test_a_pinned_instance_waits_for_its_node_when_it_is_down() -> None:
    """A pinned instance never runs elsewhere: its node down is a NoNodeError saying it waits."""
    rules = ClusterConfig(nodes=[NodeConfig(name="a", pins=[Pin(instance="cam1")])])
    nodes = [Candidate(name="a", up=False, status="down"), up("b")]
    with pytest.raises(NoNodeError, match="pinned to node 'a', which is down: it waits"):
        place(PlacementRequest("cam1"), nodes, rules, {})


def test_a_pinned_instance_whose_node_is_not_known_waits() -> None:
    """A pin to a node that never registered says the node is unknown."""
    rules = ClusterConfig(nodes=[NodeConfig(name="a", pins=[Pin(instance="cam1")])])
    with pytest.raises(NoNodeError, match="pinned to node 'a', which is unknown"):
        place(PlacementRequest("cam1"), [up("b")], rules, {})


def test_a_pinned_instance_is_not_moved_off_its_excluded_node() -> None:
    """Excluding the pinned node (it just died) does not send the instance elsewhere."""
    rules = ClusterConfig(nodes=[NodeConfig(name="a", pins=[Pin(instance="cam1")])])
    request = PlacementRequest("cam1", exclude=frozenset({"a"}))
    with pytest.raises(NoNodeError, match="pinned to node 'a', which is excluded"):
        place(request, [up("a"), up("b")], rules, {})


def test_an_instance_of_a_group_runs_only_on_its_nodes() -> None:
    """A group's instance goes to the group's node even when a generic node is idler."""
    nodes = [up("alvra1", cpu_percent=70.0, groups=("alvra",), generic=False), up("gen")]
    decision = place(PlacementRequest("alvra_spots"), nodes, ALVRA, {})
    assert decision.node == "alvra1"
    assert "group 'alvra'" in decision.why
    assert "gen: not in group 'alvra'" in decision.why


def test_an_instance_reading_a_group_camera_belongs_to_the_group() -> None:
    """Reading one of the group's cameras makes an instance the group's."""
    nodes = [up("alvra1", cpu_percent=70.0, groups=("alvra",), generic=False), up("gen")]
    decision = place(PlacementRequest("spots", source="SARES11-CAM"), nodes, ALVRA, {})
    assert decision.node == "alvra1"


def test_other_instances_never_run_on_a_dedicated_node() -> None:
    """An instance of no group goes to a generic node, however busy, not a dedicated one."""
    nodes = [up("alvra1", groups=("alvra",), generic=False), up("gen", cpu_percent=80.0)]
    decision = place(PlacementRequest("spots"), nodes, ALVRA, {})
    assert decision.node == "gen"
    assert "alvra1: dedicated to alvra" in decision.why


def test_a_group_instance_with_its_nodes_down_names_each_nodes_reason() -> None:
    """When no node of the group is up, the error lists every node with its reason."""
    nodes = [
        Candidate(name="alvra1", up=False, status="down", groups=("alvra",), generic=False),
        up("gen"),
    ]
    with pytest.raises(NoNodeError) as caught:
        place(PlacementRequest("alvra_spots"), nodes, ALVRA, {})
    message = caught.value.message
    assert "no node may run 'alvra_spots' (among group 'alvra')" in message
    assert "alvra1: down" in message
    assert "gen: not in group 'alvra'" in message


def test_a_pipeline_goes_next_to_its_source() -> None:
    """A pipeline runs on the node of the camera it reads, though another node is idler."""
    nodes = [up("a"), up("b", cpu_percent=60.0)]
    decision = place(PlacementRequest("spots", source="cam1"), nodes, GENERIC, {"cam1": "b"})
    assert (decision.node, decision.rule) == ("b", "colocated")
    assert decision.why == "next to its source 'cam1', which runs on b"


def test_a_pipeline_avoids_its_sources_node_above_colocate_max_cpu() -> None:
    """A source node above colocate_max_cpu is passed over, and the why says so."""
    nodes = [up("a", cpu_percent=20.0), up("b", cpu_percent=95.0)]
    decision = place(PlacementRequest("spots", source="cam1"), nodes, GENERIC, {"cam1": "b"})
    assert (decision.node, decision.rule) == ("a", "least_loaded")
    assert "its source runs on b, which is not eligible or too busy" in decision.why


def test_colocation_turned_off_places_by_load() -> None:
    """With colocate off, a pipeline goes to the least loaded node, not to its source."""
    rules = ClusterConfig(colocate=False)
    nodes = [up("a"), up("b", cpu_percent=60.0)]
    decision = place(PlacementRequest("spots", source="cam1"), nodes, rules, {"cam1": "b"})
    assert (decision.node, decision.rule) == ("a", "least_loaded")


def test_a_pipeline_does_not_follow_its_source_onto_a_dedicated_node() -> None:
    """A source on a dedicated node does not draw an ungrouped pipeline there."""
    nodes = [up("alvra1", groups=("alvra",), generic=False), up("gen", cpu_percent=50.0)]
    decision = place(PlacementRequest("spots", source="cam1"), nodes, ALVRA, {"cam1": "alvra1"})
    assert decision.node == "gen"


def test_a_node_listing_the_camera_is_preferred() -> None:
    """With the camera not running, a node listing it in ``cameras`` is chosen over idler ones."""
    nodes = [up("a"), up("b", cpu_percent=60.0, cameras=("cam7",)), up("c", cpu_percent=70.0)]
    decision = place(PlacementRequest("spots", source="cam7"), nodes, GENERIC, {})
    assert (decision.node, decision.rule) == ("b", "camera")
    assert decision.why.startswith("a node for camera 'cam7', the least loaded of: b ")


def test_measured_cpu_beats_instance_count() -> None:
    """A node with fewer instances at 90 % CPU loses to an idle node with more instances.

    CamServer counted instances only, and would choose the busy node.
    """
    nodes = [up("busy", cpu_percent=90.0, instances=1), up("idle", cpu_percent=5.0, instances=10)]
    decision = place(PlacementRequest("spots"), nodes, GENERIC, {})
    assert decision.node == "idle"
    assert decision.scores["idle"] < decision.scores["busy"]


def test_memory_counts_as_load() -> None:
    """A node short of memory loses to one with more CPU in use but memory free."""
    nodes = [up("full", cpu_percent=10.0, memory_percent=85.0), up("cpu", cpu_percent=40.0)]
    assert place(PlacementRequest("x"), nodes, GENERIC, {}).node == "cpu"


def test_network_counts_as_load_against_the_link_capacity() -> None:
    """A node whose link carries 80 % of its capacity loses to one with 40 % CPU."""
    nodes = [up("net", net_bytes_per_s=1.0e9, net_capacity=1.25e9), up("cpu", cpu_percent=40.0)]
    assert place(PlacementRequest("x"), nodes, GENERIC, {}).node == "cpu"
    faster = [replace(nodes[0], net_capacity=12.5e9), nodes[1]]  # the same bytes on 100 GbE
    assert place(PlacementRequest("x"), faster, GENERIC, {}).node == "net"


def test_pending_placements_spread_a_burst() -> None:
    """Instances placed before the next sample spread over equal nodes instead of piling up."""
    nodes = {n: up(n) for n in ("a", "b", "c")}
    chosen = []
    for i in range(6):
        decision = place(PlacementRequest(f"p{i}"), nodes.values(), GENERIC, {})
        chosen.append(decision.node)
        node = nodes[decision.node]
        nodes[decision.node] = replace(node, pending=node.pending + 1)
    assert sorted(chosen) == ["a", "a", "b", "b", "c", "c"]


def test_an_excluded_node_is_not_chosen() -> None:
    """An excluded node is passed over however idle, and the why lists it as excluded."""
    nodes = [up("a"), up("b", cpu_percent=50.0)]
    decision = place(PlacementRequest("x", exclude=frozenset({"a"})), nodes, GENERIC, {})
    assert decision.node == "b"
    assert "a: excluded" in decision.why


def test_the_why_names_the_rule_and_the_compared_nodes() -> None:
    """A least-loaded decision names the rule, every compared node and its figures."""
    nodes = [up("a", cpu_percent=30.0, instances=2), up("b", cpu_percent=10.0, pending=1)]
    decision = place(PlacementRequest("x"), nodes, GENERIC, {})
    assert decision.rule == "least_loaded"
    assert decision.why.startswith("least loaded among generic nodes: b 0.150 (cpu 10 %")
    assert "1 just placed" in decision.why
    assert "a 0.304 (cpu 30 %, mem 0 %, net 0.0 MB/s, 2 instances)" in decision.why
    assert decision.scores == {"b": 0.15, "a": 0.304}


def test_no_node_error_lists_each_nodes_reason() -> None:
    """With no eligible node, the error gives each node's reason."""
    nodes = [
        Candidate(name="a", up=True, enabled=False, status="disabled"),
        Candidate(name="b", up=False, status="down"),
        up("c", groups=("alvra",), generic=False),
        Candidate(name="d", up=False, status="unknown"),
    ]
    with pytest.raises(NoNodeError) as caught:
        place(PlacementRequest("x"), nodes, GENERIC, {})
    assert caught.value.message == (
        "no node may run 'x' (among generic nodes): a: disabled; b: down; "
        "c: dedicated to alvra; d: unknown"
    )


def test_no_node_at_all_says_so() -> None:
    """An empty cluster is a NoNodeError saying no node is known."""
    with pytest.raises(NoNodeError, match="no node is known"):
        place(PlacementRequest("x"), [], GENERIC, {})


candidates = st.builds(
    Candidate,
    name=st.sampled_from(["a", "b", "c", "d", "e"]),
    up=st.booleans(),
    enabled=st.booleans(),
    generic=st.booleans(),
    cpu_percent=st.floats(0, 100),
    memory_percent=st.floats(0, 100),
    net_bytes_per_s=st.floats(0, 2e9),
    instances=st.integers(0, 50),
    pending=st.integers(0, 5),
)


@given(
    nodes=st.lists(candidates, max_size=5, unique_by=lambda c: c.name),
    exclude=st.frozensets(st.sampled_from(["a", "b", "c", "d", "e"])),
    source_node=st.none() | st.sampled_from(["a", "b", "c", "d", "e"]),
)
def test_the_decision_is_always_an_eligible_up_node(
    nodes: list[Candidate], exclude: frozenset[str], source_node: str | None
) -> None:
    """Whatever the nodes, the choice is up, enabled, generic and not excluded; or none is."""
    eligible = [n for n in nodes if n.up and n.enabled and n.generic and n.name not in exclude]
    locations = {"cam1": source_node} if source_node else {}
    request = PlacementRequest("spots", source="cam1", exclude=exclude)
    if not eligible:
        with pytest.raises(NoNodeError) as caught:
            place(request, nodes, GENERIC, locations)
        for node in nodes:
            assert f"{node.name}: " in caught.value.message
        return
    decision = place(request, nodes, GENERIC, locations)
    assert decision.node in {n.name for n in eligible}
    if decision.rule == "least_loaded":
        assert decision.scores[decision.node] == min(decision.scores.values())
        chosen = next(n for n in eligible if n.name == decision.node)
        assert all(chosen.score <= n.score for n in eligible)
    else:
        assert decision.rule == "colocated"
        assert decision.node == source_node


def test_a_camserver_node_that_does_not_expand_takes_its_cameras_pipelines() -> None:
    """servers.json's ``{"cameras": [...], "expanding": false}`` node runs those cameras'
    pipelines (CamServer's rule), though no other instance goes there."""
    rules = ClusterConfig.from_servers_json(
        {"http://n1:1": {"cameras": ["CAM1"], "expanding": False}, "http://n2:1": {}}
    )
    nodes = [
        up("n1-1", generic=False, cameras=("CAM1",), cpu_percent=50.0),
        up("n2-1", cpu_percent=10.0),
    ]
    decision = place(PlacementRequest("spots", source="CAM1"), nodes, rules, {})
    assert (decision.node, decision.rule) == ("n1-1", "camera")
    assert place(PlacementRequest("other", source="CAM2"), nodes, rules, {}).node == "n2-1"
    assert place(PlacementRequest("other"), nodes, rules, {}).node == "n2-1"


def test_a_node_without_a_load_sample_is_not_taken_for_the_idlest() -> None:
    """A node just up has no sample (it would score 0): the measured ones are ranked."""
    busy = up("busy", cpu_percent=95.0)
    fresh = up("fresh", sampled=False)
    decision = place(PlacementRequest("cam"), [busy, fresh], ClusterConfig(), {})
    assert decision.node == "busy"
    assert "fresh: no load sample yet" in decision.why
    # With no sample anywhere, placement still decides.
    only = place(PlacementRequest("cam"), [fresh], ClusterConfig(), {})
    assert only.node == "fresh"
