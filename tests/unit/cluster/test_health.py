"""Health checks: a node is down after ``down_after`` failed checks, and up again, with the
cluster's registry, as soon as it answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from structlog.testing import capture_logs

Run = Callable[..., None]


def test_checked_nodes_are_up_with_their_figures(in_cluster: Run) -> None:
    """A node that answers is up, with its load and last sample shown in the cluster views."""

    async def scenario(c: Any) -> None:
        nodes = (await c.api.get("/api/v1/cluster/nodes")).json()
        assert [(n["name"], n["status"], n["reason"]) for n in nodes] == [
            ("a", "up", "answers"),
            ("b", "up", "answers"),
        ]
        assert nodes[0]["resources"]["cpu_percent"] == 5.0
        assert nodes[0]["score"] == 0.1
        assert nodes[0]["last_seen"] is not None

    in_cluster(scenario)


def test_a_node_coming_up_gets_the_clusters_registry_first(in_cluster: Run) -> None:
    """Before a node takes instances, every registry file of the manager is on it."""

    async def scenario(c: Any) -> None:
        assert sorted(c.node("a").registry.files) == [
            "cam1.json",
            "cam2.json",
            "keeper.json",
            "spots.json",
        ]

    in_cluster(scenario)


def test_a_node_is_down_after_down_after_failed_checks(in_cluster: Run) -> None:
    """One failed check is not enough; ``down_after`` in a row mark it down, with the reason."""

    async def scenario(c: Any) -> None:
        c.network.unreachable.add("a")
        await c.check("a")
        node = c.manager.nodes["a"]
        assert (node.status, node.failures) == ("up", 1)
        assert node.reason.startswith("node 'a' (http://a) does not answer")
        with capture_logs() as logs:
            await c.check("a")
        assert node.status == "down"
        assert node.reason.startswith("2 checks failed: node 'a' (http://a) does not answer")
        assert [e["node"] for e in logs if e["event"] == "node_down"] == ["a"]
        view = (await c.api.get("/api/v1/cluster/nodes/a")).json()
        assert (view["status"], view["failures"], view["score"]) == ("down", 2, None)

    in_cluster(scenario)


def test_one_answer_between_failures_starts_the_count_again(in_cluster: Run) -> None:
    """Failures must be consecutive: an answer in between resets the count."""

    async def scenario(c: Any) -> None:
        c.network.unreachable.add("a")
        await c.check("a")
        c.network.unreachable.clear()
        await c.check("a")
        c.network.unreachable.add("a")
        await c.check("a")
        assert c.manager.nodes["a"].status == "up"
        assert c.manager.nodes["a"].failures == 1

    in_cluster(scenario)


def test_a_node_that_answers_again_is_up(in_cluster: Run) -> None:
    """A down node that answers again is up at its next check, failures cleared."""

    async def scenario(c: Any) -> None:
        c.network.unreachable.add("a")
        await c.check("a")
        await c.check("a")
        c.network.unreachable.clear()
        await c.check("a")
        node = c.manager.nodes["a"]
        assert (node.status, node.failures, node.reason) == ("up", 0, "answers")

    in_cluster(scenario)


def test_a_node_that_answers_with_an_error_counts_as_failed(in_cluster: Run) -> None:
    """A node whose API fails (500) is as good as silent."""

    async def scenario(c: Any) -> None:
        c.node("a").fail_node_info = True  # GET /node raises inside the node: a 500
        await c.check("a")
        await c.check("a")
        assert c.manager.nodes["a"].status == "down"
        assert "node 'a' failed (500)" in c.manager.nodes["a"].reason

    in_cluster(scenario)
