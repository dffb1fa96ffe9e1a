"""What the manager holds of a node, and how placement sees it."""

from __future__ import annotations

import asyncio

from cluster.config import NodeConfig, Pin
from cluster.nodes import NodeState, NodeStatus


def test_placement_sees_the_link_traffic_not_the_loopback() -> None:
    """A node's network load is its link rx + tx (loopback excluded), against its capacity."""
    node = NodeState(NodeConfig(name="a", net_capacity=1e9), None)
    node.status = NodeStatus.UP
    node.info = {
        "resources": {
            "cpu_percent": 12.0,
            "memory_percent": 30.0,
            "net_rx_bytes_per_s": 9e9,  # mostly loopback between pipelines
            "net_tx_bytes_per_s": 9e9,
            "link_rx_bytes_per_s": 3e8,
            "link_tx_bytes_per_s": 2e8,
        }
    }
    node.instances = {"x": {}, "y": {}}
    node.pending = 1
    candidate = node.candidate()
    assert candidate.net_bytes_per_s == 5e8
    assert (candidate.cpu_percent, candidate.memory_percent) == (12.0, 30.0)
    assert (candidate.instances, candidate.pending, candidate.up) == (2, 1, True)
    assert candidate.score == 0.5 + 0.05 + 2 * 0.002


def test_a_node_never_sampled_counts_as_idle() -> None:
    """A node up without a resource sample yet competes with a load of zero."""
    node = NodeState(NodeConfig(name="a"), None)
    assert node.candidate().score == 0.0
    assert node.candidate().up is False


def test_a_disabled_node_is_shown_disabled_and_comes_back_unknown() -> None:
    """A node the rules disable is disabled; enabled again, it waits for its next check."""

    async def scenario() -> None:
        node = NodeState(NodeConfig(name="a", url="http://a:1", enabled=False), "tok")
        assert node.status is NodeStatus.DISABLED
        assert node.candidate().enabled is False
        await node.reconfigure(NodeConfig(name="a", url="http://a:2"), "tok")
        assert (node.status, node.reason, node.url) == (
            NodeStatus.UNKNOWN,
            "enabled by the rules",
            "http://a:2",
        )
        await node.close()

    asyncio.run(scenario())


def test_a_node_without_url_waits_for_its_registration() -> None:
    """A listed node with no URL has no client and says it waits for its registration."""
    node = NodeState(NodeConfig(name="a", pins=[Pin(instance="cam1")]), None)
    view = node.view()
    assert (view.status, view.reason, view.url) == ("unknown", "waits for its registration", None)
    assert view.pins == ["cam1"]
    assert node.client is None
