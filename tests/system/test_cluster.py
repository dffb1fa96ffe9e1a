"""The cluster for real: a ``pipevisor manager`` and worker nodes on loopback, real pipelines.

One token-protected cluster of three nodes (two generic, one dedicated to the group ``alvra``,
a pin with a fixed port) is shared by the tests that do not disturb it; each of them removes
what it created. Failover and partition tests get clusters of their own, since they kill or
freeze nodes. Every node has its own registry, state folder, API port and an output port range
of its own: this file uses 13000-13649 and 13990 (the other system tests use 11100-12100,
test_cluster_page 13700-13799, bench_failover 13900-13989).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster_support import (
    POLL,
    Cluster,
    receive_pulse_ids,
    start_cluster,
    wait_gone,
)
from tests.support import wait_for

pytestmark = pytest.mark.system

TOKEN = "cluster-test-token"
PINNED_PORT = 13990
FAILOVER_DEADLINE = 15.0
"""Seconds from a node's SIGKILL (or SIGSTOP) until its permanent instances run elsewhere; the
defaults (a check every 1 s, down after 3 failures) make it about 4 s."""


def camera(**extra: Any) -> str:
    """A small simulated camera entry (64x48 at 10 Hz)."""
    return json.dumps(
        {
            "builtin": "camera_simulation",
            "parameters": {"width": 64, "height": 48, "rate": 10, "noise": 0},
            **extra,
        }
    )


def beam_metrics(source: str, **extra: Any) -> str:
    """A beam_metrics entry reading camera ``source``."""
    return json.dumps({"builtin": "beam_metrics", "input": {"camera": source}, **extra})


# Placement must not depend on how busy this shared machine is at the moment: every node is the
# same machine here, so "too busy to colocate" would be noise, not a decision worth testing.
SHARED_RULES = {
    "nodes": [
        {"name": "n1"},
        {"name": "n2", "pins": [{"instance": "pinned_cam", "port": PINNED_PORT}]},
        {"name": "n3", "groups": ["alvra"]},
    ],
    "groups": {"alvra": {"instances": ["alvra_*"]}},
    "colocate_max_cpu": 100,
}

SHARED_FILES = {
    "cam.json": camera(),
    "beam.json": beam_metrics("cam"),
    "pinned_cam.json": camera(),
    "alvra_cam.json": camera(),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Manager with a token and rules, nodes n1 and n2 (generic) and n3 (group alvra), all up."""
    cluster = start_cluster(
        tmp_path_factory.mktemp("cluster"),
        {"n1": (13000, 13049), "n2": (13050, 13099), "n3": (13100, 13149)},
        files=SHARED_FILES,
        rules=json.dumps(SHARED_RULES),
        token=TOKEN,
    )
    yield cluster
    cluster.stop()


def create(cluster: Cluster, name: str, entry: str, **body: Any) -> dict[str, Any]:
    """Create ``name`` through the manager; its answer."""
    response = cluster.manager.api(
        "POST", "/instances", json={"name": name, "entry": entry, **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


def remove(cluster: Cluster, names: Iterable[str]) -> None:
    """Delete ``names`` through the manager, and wait until no node runs any of them."""
    names = set(names)

    def gone() -> bool:
        for name in names & set(cluster.holders()):
            response = cluster.manager.api("DELETE", f"/instances/{name}")
            # 404: the manager's list (one health check old) does not show it yet.
            assert response.status_code in (204, 404), response.text
        return not names & set(cluster.holders())

    wait_for(gone, timeout=15, interval=POLL, what=f"{sorted(names)} deleted on every node")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def assert_advancing(pulse_ids: list[int]) -> None:
    assert all(b > a for a, b in itertools.pairwise(pulse_ids)), pulse_ids


# -- the shared cluster ---------------------------------------------------------------------


def test_nodes_register_and_get_the_registry(cluster: Cluster) -> None:
    """Started with --manager, each node registers, shows up, and holds the manager's registry."""
    nodes = cluster.manager.nodes()
    assert set(nodes) == {"n1", "n2", "n3"}
    for name, view in nodes.items():
        assert view["status"] == "up", view
        assert view["registered"] is True
        assert view["url"] == cluster.nodes[name].url
    assert nodes["n3"]["groups"] == ["alvra"]
    assert nodes["n3"]["generic"] is False
    assert nodes["n2"]["pins"] == ["pinned_cam"]
    source = cluster.manager.registry
    for name, node in cluster.nodes.items():
        for filename in SHARED_FILES:
            assert (node.registry / filename).read_bytes() == (source / filename).read_bytes(), (
                name,
                filename,
            )
        entries = {e["name"] for e in node.api("GET", "/registry").json()}
        assert set(SHARED_FILES) <= {f"{e}.json" for e in entries}, (name, entries)


def test_pipeline_is_placed_next_to_its_camera(cluster: Cluster) -> None:
    """A pipeline created through the manager runs on the node of the camera it reads."""
    try:
        cam = create(cluster, "cam", "cam")
        assert cam["node"] in ("n1", "n2"), cam  # n3 is alvra's only
        pipeline = create(cluster, "centroid", "beam")
        assert pipeline["node"] == cam["node"]
        placement = cluster.manager.placement("centroid")
        assert placement["rule"] == "colocated"
        assert placement["why"] == f"next to its source 'cam', which runs on {cam['node']}"
        cluster.manager.wait_running("centroid", node=cam["node"])
        listed = cluster.manager.instances()
        assert listed["cam"]["node"] == listed["centroid"]["node"] == cam["node"]
        assert {"cam", "centroid"} <= set(cluster.own_instances(cam["node"]))
        # The pipeline reads the camera on its own node, by its local URL.
        assert listed["centroid"]["data_url"] == listed["cam"]["stream"]
    finally:
        remove(cluster, ["centroid", "cam"])


def test_stream_requested_through_the_manager_flows(cluster: Cluster) -> None:
    """POST /streams/NAME on the manager gives a URL on the node that runs it; data flows."""
    try:
        answer = cluster.manager.ok("POST", "/streams/beam")
        node, stream = answer["node"], answer["stream"]
        assert node in ("n1", "n2"), answer
        assert port_of(stream) in cluster.range_of(node), (stream, cluster.ranges[node])
        assert cluster.own_instances(node)["beam"]["stream"] == stream
        pulse_ids = receive_pulse_ids(stream, 5, timeout=30)
        assert_advancing(pulse_ids)
        # Asking again gives the same instance, not a second one.
        assert cluster.manager.ok("POST", "/streams/beam")["stream"] == stream
        assert cluster.holders()["beam"] == [node]
    finally:
        remove(cluster, ["beam", "cam"])


def test_logs_come_from_the_node_through_the_manager(cluster: Cluster) -> None:
    """GET /instances/NAME/logs on the manager returns the log lines of the node running it."""
    try:
        info = create(cluster, "logcam", "cam")
        running = cluster.manager.wait_running("logcam")
        node = cluster.nodes[info["node"]]

        def tail() -> list[dict[str, Any]]:
            response = cluster.manager.api("GET", "/instances/logcam/logs", params={"tail": 50})
            assert response.status_code == 200, response.text
            return response.json()

        entries = wait_for(
            lambda: (e := tail()) and any(x["source"] != "supervisor" for x in e) and e,
            timeout=20,
            interval=POLL,
            what="the camera's own log lines",
        )
        assert f"run 1 started: pid {running['pid']}" in [e["message"] for e in entries]
        own = node.api("GET", "/instances/logcam/logs", params={"tail": 50}).json()
        assert entries == own[: len(entries)]
        text = cluster.manager.api(
            "GET", "/instances/logcam/logs", params={"tail": 50, "format": "text"}
        )
        assert f"run 1 started: pid {running['pid']}" in text.text
    finally:
        remove(cluster, ["logcam"])


def test_pinned_instance_runs_on_its_node_with_its_port(cluster: Cluster) -> None:
    """An instance pinned by the rules runs on its node with the pin's port, and says why."""
    try:
        info = create(cluster, "pinned_cam", "pinned_cam")
        assert info["node"] == "n2"
        assert info["stream"] == f"tcp://127.0.0.1:{PINNED_PORT}"
        placement = cluster.manager.placement("pinned_cam")
        assert placement["rule"] == "pinned"
        assert placement["why"] == f"pinned to n2 with port {PINNED_PORT} by the rules"
        assert cluster.own_instances("n2")["pinned_cam"]["stream"] == info["stream"]
        assert_advancing(receive_pulse_ids(info["stream"], 3, timeout=30))
    finally:
        remove(cluster, ["pinned_cam"])


def test_group_node_runs_only_its_group(cluster: Cluster) -> None:
    """alvra_* instances run on alvra's node, others never do, though it is the least loaded."""
    others = ["gen1", "gen2", "gen3"]
    try:
        alvra = create(cluster, "alvra_cam", "alvra_cam")
        assert alvra["node"] == "n3"
        why = cluster.manager.placement("alvra_cam")["why"]
        assert why.startswith("least loaded among group 'alvra': n3"), why
        assert "n1: not in group 'alvra'" in why, why
        assert "n2: not in group 'alvra'" in why, why
        for name in others:
            info = create(cluster, name, "cam")
            assert info["node"] in ("n1", "n2"), info
            why = cluster.manager.placement(name)["why"]
            assert why.startswith("least loaded among generic nodes"), why
            assert "n3: dedicated to alvra" in why, why
        assert set(cluster.own_instances("n3")) == {"alvra_cam"}
        explained = cluster.manager.ok("GET", "/cluster/explain/gen4")
        assert explained["node"] != "n3"
        assert "n3" not in explained["scores"]
        explained = cluster.manager.ok("GET", "/cluster/explain/alvra_next")
        assert explained["node"] == "n3"
    finally:
        remove(cluster, ["alvra_cam", *others])


def test_token_guards_the_manager_and_reaches_the_nodes(cluster: Cluster) -> None:
    """With --token, changes without it are refused (401); the manager's calls pass on nodes."""
    bare = {"name": "intruder", "entry": "cam"}
    refused = httpx.post(f"{cluster.manager.url}/api/v1/instances", json=bare)
    assert refused.status_code == 401, refused.text
    for node in cluster.nodes.values():
        refused = httpx.post(f"{node.url}/api/v1/instances", json=bare)
        assert refused.status_code == 401, refused.text
    assert "intruder" not in cluster.holders()
    try:
        info = create(cluster, "tokened", "cam")  # the manager's own token, forwarded
        cluster.manager.wait_running("tokened", node=info["node"])
        assert "tokened" in cluster.own_instances(info["node"])
    finally:
        remove(cluster, ["tokened"])


# -- failover ----------------------------------------------------------------------------------

PERMANENT_FILES = {
    "simcam.json": camera(permanent=True),
    "beam.json": beam_metrics("simcam", permanent=True),
}


@pytest.fixture
def permanent_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three generic nodes and a registry with a permanent camera and a permanent pipeline."""
    cluster = start_cluster(
        tmp_path,
        {"n1": (13200, 13249), "n2": (13250, 13299), "n3": (13300, 13349)},
        files=PERMANENT_FILES,
        rules=json.dumps({"colocate_max_cpu": 100}),
    )
    yield cluster
    cluster.stop()


def running_on(cluster: Cluster, names: Iterable[str], not_on: str) -> dict[str, Any] | None:
    """The manager's list when every one of ``names`` runs on a node other than ``not_on``."""
    listed = cluster.manager.instances()
    for name in names:
        info = listed.get(name)
        if info is None or info["state"] != "running" or info["node"] == not_on:
            return None
    return listed


def assert_each_runs_once(cluster: Cluster, names: Iterable[str], rounds: float = 3.0) -> None:
    """For ``rounds`` health checks, each of ``names`` runs on exactly one node (asked
    directly), the node the manager names."""
    deadline = time.monotonic() + rounds
    while True:
        holders = cluster.holders()
        listed = cluster.manager.instances()
        for name in names:
            assert len(holders.get(name, [])) == 1, holders
            assert holders[name] == [listed[name]["node"]], (holders, listed[name]["node"])
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)  # sampling the state over health rounds, not waiting for it


def test_killed_node_permanent_instances_move_and_never_run_twice(
    permanent_cluster: Cluster,
) -> None:
    """SIGKILL a node: its permanent instances run elsewhere, streams follow; back, no twins."""
    cluster = permanent_cluster
    names = ["simcam", "beam"]
    cluster.manager.wait_running("beam")
    victim = cluster.manager.placement("beam")["node"]
    assert cluster.manager.placement("simcam")["node"] == victim
    port = cluster.nodes[victim].port

    killed = time.monotonic()
    orphans = cluster.kill_node(victim)
    wait_gone(orphans, timeout=5)  # the node's guard kills its instances with it
    listed = wait_for(
        lambda: running_on(cluster, names, not_on=victim),
        timeout=FAILOVER_DEADLINE,
        interval=POLL,
        what=f"{names} running off {victim}",
    )
    took = time.monotonic() - killed
    assert took < 10, f"failover took {took:.1f} s"
    new = listed["beam"]["node"]
    assert listed["simcam"]["node"] == new  # the pipeline followed its camera
    for name in names:
        placement = cluster.manager.placement(name)
        assert placement["node"] == new
        assert placement["moves"] == 1
        assert placement["moved_from"] == victim
    assert cluster.manager.nodes()[victim]["status"] == "down"

    answer = cluster.manager.ok("POST", "/streams/beam")
    assert answer["node"] == new
    assert port_of(answer["stream"]) in cluster.range_of(new), answer["stream"]
    assert_advancing(receive_pulse_ids(answer["stream"], 5, timeout=30))

    cluster.start_node(victim, port=port)
    cluster.wait_up([victim])
    assert_each_runs_once(cluster, names)
    assert not set(cluster.own_instances(victim)) & set(names)


def test_pipeline_on_another_node_follows_its_moved_camera(tmp_path: Path) -> None:
    """A pipeline reading a camera on a node that dies is re-created on the camera's new URL."""
    rules = {
        "nodes": [
            {"name": "n1", "groups": ["cameras"]},
            {"name": "n2", "groups": ["cameras"]},
            {"name": "n3"},
        ],
        "groups": {"cameras": {"instances": ["simcam"]}},
    }
    cluster = start_cluster(
        tmp_path,
        {"n1": (13500, 13549), "n2": (13550, 13599), "n3": (13600, 13649)},
        files=PERMANENT_FILES,
        rules=json.dumps(rules),
    )
    try:
        pipeline = cluster.manager.wait_running("beam", node="n3")
        camera_node = cluster.manager.wait_running("simcam")["node"]
        assert camera_node in ("n1", "n2")
        assert pipeline["data_url"] == cluster.manager.instances()["simcam"]["stream"]
        wait_gone(cluster.kill_node(camera_node), timeout=5)
        other = "n2" if camera_node == "n1" else "n1"
        moved = cluster.manager.wait_running("simcam", node=other, timeout=FAILOVER_DEADLINE)
        assert port_of(moved["stream"]) in cluster.range_of(other)

        def reads_the_new_camera() -> dict[str, Any] | None:
            info = cluster.own_instances("n3").get("beam")
            ok = info and info["state"] == "running" and info["data_url"] == moved["stream"]
            return info if ok else None

        follower = wait_for(
            reads_the_new_camera, timeout=10, interval=POLL, what="beam reading the moved camera"
        )
        assert cluster.holders()["beam"] == ["n3"]
        assert_advancing(receive_pulse_ids(follower["stream"], 5, timeout=30))
    finally:
        cluster.stop()


def test_frozen_node_duplicate_is_removed_when_it_answers_again(tmp_path: Path) -> None:
    """SIGSTOP a node: its permanent camera moves; after SIGCONT its copy there is deleted."""
    cluster = start_cluster(
        tmp_path,
        {"n1": (13400, 13449), "n2": (13450, 13499)},
        files={"simcam.json": camera(permanent=True)},
    )
    try:
        first = cluster.manager.wait_running("simcam")["node"]
        cluster.pause_node(first)
        listed = wait_for(
            lambda: running_on(cluster, ["simcam"], not_on=first),
            timeout=FAILOVER_DEADLINE,
            interval=POLL,
            what=f"simcam running off the frozen {first}",
        )
        second = listed["simcam"]["node"]
        assert cluster.manager.placement("simcam")["moved_from"] == first
        cluster.resume_node(first)
        # Its instance ran on while it was frozen: now it answers, and the manager removes it.
        wait_for(
            lambda: "simcam" not in cluster.own_instances(first),
            timeout=10,
            interval=POLL,
            what=f"the duplicate simcam deleted on {first}",
        )
        cluster.wait_up([first])
        assert_each_runs_once(cluster, ["simcam"])
        assert cluster.holders()["simcam"] == [second]
        assert_advancing(receive_pulse_ids(listed["simcam"]["stream"], 3, timeout=30))
    finally:
        cluster.stop()
