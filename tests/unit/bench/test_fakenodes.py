"""The fake nodes of the cluster benchmarks answer the node API the manager uses."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from supervisor.nodeapi.models import InstanceInfo, NodeResources

_PATH = Path(__file__).resolve().parents[3] / "bench" / "_fakenodes.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("_fakenodes", _PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fake() -> Iterator[Any]:
    nodes = _load().FakeNodes(2, log_pub=False)
    try:
        yield nodes
    finally:
        nodes.close()


def _api(fake: Any, node: str, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=fake.url(node) + "/api/v1", timeout=timeout)


def test_created_instance_is_listed_as_valid_instance_info(fake: Any) -> None:
    """POST /instances adds an instance the list and GET show as InstanceInfo."""
    with _api(fake, "node01") as api:
        body = {"name": "beam1", "entry": "beam", "input": {"camera": "cam1"}, "permanent": True}
        created = api.post("/instances", json=body)
        assert created.status_code == 201
        listed = [InstanceInfo.model_validate(i) for i in api.get("/instances").json()]
        by_name = {i.name: i for i in listed}
        assert by_name["beam1"].permanent
        assert by_name["cam1"].on_demand  # the source a node creates for its reader
        assert by_name["beam1"].data_url == by_name["cam1"].stream
        assert InstanceInfo.model_validate(api.get("/instances/beam1").json()).name == "beam1"
        assert api.post("/instances", json=body).status_code == 409
        assert api.delete("/instances/beam1").status_code == 204
        assert api.get("/instances/beam1").status_code == 404


def test_node_figures_grow_with_instances(fake: Any) -> None:
    """GET /node carries NodeResources whose CPU rises with what the node runs."""
    with _api(fake, "node02") as api:
        before = NodeResources.model_validate(api.get("/node").json()["resources"])
        fake.fill("node02", 20, "x")
        after = NodeResources.model_validate(api.get("/node").json()["resources"])
        assert after.cpu_percent > before.cpu_percent + 10
        assert api.put("/registry/files/a.json", content=b"{}").status_code == 200
        assert api.get("/backgrounds").json() == []
    counted = next(n for n in fake.nodes() if n["name"] == "node02")
    assert counted["registry_files"] == 1
    assert counted["requests"]["GET /node"] == 2


def test_killed_node_refuses_then_answers_again_empty_when_fresh(fake: Any) -> None:
    """A node killed 'refuse' resets connections; revived fresh it is empty."""
    fake.fill("node01", 3, "k")
    fake.kill("node01", "refuse")
    with _api(fake, "node01") as api:
        with pytest.raises(httpx.ConnectError):
            api.get("/health")
        fake.revive("node01", fresh=True)
        answer = None
        for _ in range(100):
            try:
                answer = api.get("/instances")
                break
            except httpx.ConnectError:  # it listens again on the next loop turn
                continue
        assert answer is not None
        assert answer.json() == []
    kinds = [e["kind"] for e in fake.events() if e["node"] == "node01"]
    assert kinds[-2:] == ["killed", "revived"]


def test_hung_node_accepts_but_never_answers(fake: Any) -> None:
    """A node killed 'hang' leaves its client waiting until its timeout; revived it answers."""
    fake.fill("node02", 2, "h")
    held = next(n["instances"] for n in fake.nodes() if n["name"] == "node02")
    fake.kill("node02", "hang")
    with _api(fake, "node02", timeout=0.3) as api, pytest.raises(httpx.ReadTimeout):
        api.get("/health")
    fake.revive("node02")
    with _api(fake, "node02") as api:
        assert api.get("/health").json()["status"] == "ok"
        assert len(api.get("/instances").json()) == held  # not fresh: it kept its instances
