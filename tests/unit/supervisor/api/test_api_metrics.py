"""GET /metrics: the node and its instances in Prometheus' text format."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from supervisor import __version__
from supervisor.nodeapi.models import ResourceStats
from supervisor.testing import FakeNode


def samples(client: TestClient) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by (name, sorted labels); the text must parse."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = list(text_string_to_metric_families(response.text))
    untyped = [f.name for f in families if f.type == "unknown"]
    assert untyped == [], f"series without their family's TYPE: {untyped}"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_instances_are_labelled_with_their_state_counters_and_resources(
    client: TestClient, fake: FakeNode, running: dict[str, Any]
) -> None:
    """cam1: up, its state, the program's counters and the sampled process tree."""
    info = fake.instances["cam1"]
    fake.instances["cam1"] = info.model_copy(
        update={
            "stats": info.stats.model_copy(
                update={"messages_in": 120, "drops": 3, "rate_out": 9.5, "clients": 2}
            ),
            "resources": ResourceStats(
                sampled_at=1.0,
                processes=2,
                cpu_percent=12.5,
                rss_bytes=50_000_000,
                threads=7,
                fds=21,
            ),
        }
    )
    got = samples(client)
    cam1 = (("instance", "cam1"),)
    assert got[("pipevisor_instance_info", (("entry", "camera"), ("instance", "cam1")))] == 1
    assert got[("pipevisor_instance_up", cam1)] == 1
    assert got[("pipevisor_instance_state", (*cam1, ("state", "running")))] == 1
    assert got[("pipevisor_instance_messages_in_total", cam1)] == 120
    assert got[("pipevisor_instance_input_drops_total", cam1)] == 3
    assert got[("pipevisor_instance_rate_out", cam1)] == 9.5
    assert got[("pipevisor_instance_clients", cam1)] == 2
    assert got[("pipevisor_instance_memory_rss_bytes", cam1)] == 50_000_000
    assert got[("pipevisor_instance_cpu_percent", cam1)] == 12.5
    assert got[("pipevisor_instance_stalled", cam1)] == 0
    assert got[("pipevisor_instance_restarts_total", cam1)] == 0
    assert got[("pipevisor_build_info", (("version", __version__),))] == 1
    assert got[("pipevisor_node_instances", (("state", "running"),))] == 1


def test_an_instance_never_sampled_has_no_resource_series(
    client: TestClient, running: dict[str, Any]
) -> None:
    """No zeros pretending to be measurements: unsampled resources are simply absent."""
    names = {name for name, _ in samples(client)}
    assert "pipevisor_instance_up" in names
    assert "pipevisor_instance_memory_rss_bytes" not in names


def test_scraping_needs_no_token_and_an_empty_node_has_node_series_only(
    secured: TestClient,
) -> None:
    """Scraping is read-only: no token needed; with no instance only node series remain."""
    got = samples(secured)
    assert not any(name.startswith("pipevisor_instance_") for name, _ in got)
    assert ("pipevisor_uptime_seconds", ()) in got


def test_label_values_are_escaped(client: TestClient, fake: FakeNode, running) -> None:
    """An entry name with a quote, a backslash and a newline parses back as it was."""
    fake.instances["cam1"] = fake.instances["cam1"].model_copy(update={"entry": 'cam "a"\\b\nc'})
    got = samples(client)
    assert got[("pipevisor_instance_info", (("entry", 'cam "a"\\b\nc'), ("instance", "cam1")))] == 1
