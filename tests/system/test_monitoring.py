"""Monitoring for real: a supervisor samples its instances' process trees and its node."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_for
from tests.system.conftest import shell


def test_instances_and_node_show_their_resources(write_entry, start_supervisor) -> None:
    """A shell program with a child: both processes are counted, with memory and descriptors;
    the node reports CPU, memory, load and network."""
    write_entry("pair.sh", shell("sleep 60 &\nexec sleep 60"), executable=True)
    sup = start_supervisor("--monitor-interval", "0.2")
    assert sup.api("POST", "/instances", json={"name": "pair", "entry": "pair"}).status_code == 201

    def sampled() -> dict | None:
        resources = sup.instance("pair")["resources"]
        return resources if resources["processes"] == 2 else None

    resources = wait_for(sampled, timeout=15, what="a sample of both processes")
    assert resources["rss_bytes"] > 0
    assert resources["threads"] >= 2
    assert resources["fds"] >= 3
    assert resources["sampled_at"] is not None
    assert sup.instance("pair")["stalled"] is False

    node = wait_for(
        lambda: sup.api("GET", "/node").json()["resources"], timeout=15, what="a node sample"
    )
    assert node["cpu_count"] >= 1
    assert node["memory_total"] > node["memory_available"] > 0
    assert len(node["load"]) == 3
    assert sup.api("GET", "/node").json()["monitor_interval"] == 0.2

    scrape = httpx.get(f"{sup.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(scrape)}
    [rss] = families["pipevisor_instance_memory_rss_bytes"].samples
    assert rss.labels == {"instance": "pair"}
    assert rss.value > 0
    assert families["pipevisor_node_cpu_count"].samples[0].value >= 1
