"""The operators' page served by a cluster manager, in Debian's headless Chromium.

The same page as a node's: served by a manager it adds the nodes table and a node column, and
the detail view says why an instance runs where it does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import start_chromium
from tests.cluster_support import Cluster, start_cluster
from tests.system.test_web_page import cell, console_errors, row, until

pytestmark = pytest.mark.system

CAMERA = json.dumps(
    {
        "builtin": "camera_simulation",
        "parameters": {"width": 64, "height": 48, "rate": 10, "noise": 0},
    }
)
BEAM = json.dumps({"builtin": "beam_metrics", "input": {"camera": "cam"}})


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A Chromium of the test's own."""
    driver = start_chromium(tmp_path / "chromium")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A manager and two nodes, with a camera and a pipeline reading it in the registry."""
    found = start_cluster(
        tmp_path,
        {"n1": (13700, 13749), "n2": (13750, 13799)},
        files={"cam.json": CAMERA, "beam.json": BEAM},
        rules=json.dumps({"nodes": [{"name": "n1"}, {"name": "n2"}], "colocate_max_cpu": 100}),
    )
    try:
        yield found
    finally:
        found.stop()


def node_row(driver: WebDriver, name: str) -> list[str]:
    cells = driver.find_elements(By.CSS_SELECTOR, f'#node-rows tr[data-node="{name}"] td')
    return [c.text for c in cells]


def test_the_manager_page_shows_the_nodes_where_each_instance_runs_and_why(
    browser: WebDriver, cluster: Cluster
) -> None:
    """Nodes with their status, a node column, the placement's reason; a killed node shows down."""
    manager = cluster.manager
    manager.ok("POST", "/instances", json={"name": "beam", "entry": "beam"})
    info = manager.wait_running("beam")
    where = info["node"]
    browser.get(manager.url + "/")
    until(browser, lambda d: row(d, "beam"), "the instance row")
    for name in ("n1", "n2"):
        until(browser, lambda d, n=name: node_row(d, n)[1:2] == ["up"], f"{name} up")
    until(browser, lambda d: cell(d, "beam", "node") == where, "the node column")
    # The camera the node created for the pipeline is there too, on the same node.
    until(browser, lambda d: cell(d, "cam", "node") == where, "the camera's node")

    row(browser, "beam").find_element(By.CSS_SELECTOR, ".c-name").click()
    placed = until(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, '#detail-info [data-term="placed"] dd').text,
        "the placement's reason",
    )
    assert placed == manager.placement("beam")["why"]

    other = "n2" if where == "n1" else "n1"
    cluster.kill_node(other)
    until(browser, lambda d: node_row(d, other)[1:2] == ["down"], f"{other} shown down")
    assert console_errors(browser) == []
