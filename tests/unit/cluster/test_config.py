"""The cluster's rules: validation that quotes the problem, defaults, CamServer's servers.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cluster.config import ClusterConfig, GroupConfig, NodeConfig, Pin, load_config
from supervisor.nodeapi.errors import InvalidConfigError

SERVERS_JSON: dict[str, Any] = {
    "http://node1:8881": {
        "cameras": ["SARES20-CAMS142-M1", "SARES20-CAMS142-M2"],
        "instances": ["simulation_sp:5554", "#disabled", "#old_sp:5555", "plain_sp"],
        "expanding": False,
        "enabled": True,
    },
    "http://node2:8881": {"expanding": True, "enabled": False},
    "http://node3": {},
}


def test_duplicate_node_names_are_refused_by_name() -> None:
    """Two nodes of one name fail validation, and the message names it."""
    with pytest.raises(ValidationError, match=r"node names listed twice: \['a'\]"):
        ClusterConfig.model_validate({"nodes": [{"name": "a"}, {"name": "b"}, {"name": "a"}]})


def test_an_instance_pinned_twice_names_both_nodes() -> None:
    """One instance pinned to two nodes fails, naming the instance and both nodes."""
    nodes = [
        {"name": "a", "pins": [{"instance": "cam1"}]},
        {"name": "b", "pins": [{"instance": "cam1", "port": 9000}]},
    ]
    with pytest.raises(ValidationError, match="instance 'cam1' is pinned to both 'a' and 'b'"):
        ClusterConfig.model_validate({"nodes": nodes})


def test_an_unknown_group_is_refused_with_the_node_and_group() -> None:
    """A node naming a group the rules do not define fails, quoting node and group."""
    rules = {"nodes": [{"name": "a", "groups": ["alvra"]}], "groups": {"bernina": {}}}
    with pytest.raises(ValidationError, match=r"node 'a' names unknown groups \['alvra'\]"):
        ClusterConfig.model_validate(rules)


def test_a_mistyped_key_fails_loudly() -> None:
    """An unknown key in a node's rules is an error, not silently ignored."""
    with pytest.raises(ValidationError, match="genric"):
        NodeConfig.model_validate({"name": "a", "genric": False})


def test_a_node_url_must_be_http_and_loses_its_trailing_slash() -> None:
    """A node URL is http(s) (quoted when it is not); a trailing slash is dropped."""
    assert NodeConfig(name="a", url="http://host:8080/").url == "http://host:8080"
    with pytest.raises(ValidationError, match="'ftp://host' is not an http"):
        NodeConfig(name="a", url="ftp://host")


def test_a_node_with_groups_is_dedicated_unless_generic_is_given() -> None:
    """Groups make a node dedicated; an explicit generic=true keeps it generic too."""
    assert NodeConfig.model_validate({"name": "a"}).generic is True
    assert NodeConfig.model_validate({"name": "a", "groups": ["alvra"]}).generic is False
    both = NodeConfig.model_validate({"name": "a", "groups": ["alvra"], "generic": True})
    assert both.generic is True


def test_group_of_matches_name_patterns_and_cameras() -> None:
    """An instance is in a group by a name pattern or by the camera it reads."""
    rules = ClusterConfig(
        groups={"alvra": GroupConfig(instances=["alvra_*"], cameras=["SARES11-CAM"])}
    )
    assert rules.group_of("alvra_spots", None) == "alvra"
    assert rules.group_of("spots", "SARES11-CAM") == "alvra"
    assert rules.group_of("spots", "OTHER-CAM") is None
    assert rules.group_of("Alvra_spots", None) is None  # patterns are case-sensitive


def test_pin_of_gives_the_node_and_the_port() -> None:
    """pin_of finds the node an instance is pinned to, with the pin's port."""
    rules = ClusterConfig(nodes=[NodeConfig(name="a", pins=[Pin(instance="x", port=9000)])])
    assert rules.pin_of("x") == ("a", Pin(instance="x", port=9000))
    assert rules.pin_of("y") is None


def test_servers_json_becomes_nodes_with_pins_cameras_and_generic() -> None:
    """CamServer's servers.json converts: pins with ports, '#' skipped, expanding -> generic."""
    rules = ClusterConfig.from_servers_json(SERVERS_JSON)
    node1, node2, node3 = rules.nodes
    assert node1.name == "node1-8881"
    assert node1.url == "http://node1:8881"
    assert node1.pins == [Pin(instance="simulation_sp", port=5554), Pin(instance="plain_sp")]
    assert node1.cameras == ["SARES20-CAMS142-M1", "SARES20-CAMS142-M2"]
    assert node1.generic is False
    assert node1.enabled is True
    assert (node2.name, node2.generic, node2.enabled) == ("node2-8881", True, False)
    assert (node3.name, node3.generic, node3.enabled, node3.pins) == ("node3", True, True, [])
    assert rules.pin_of("simulation_sp") == ("node1-8881", Pin(instance="simulation_sp", port=5554))
    assert rules.pin_of("disabled") is None


def test_load_config_reads_servers_json(tmp_path: Path) -> None:
    """A file keyed by node URLs is read as CamServer's servers.json."""
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(SERVERS_JSON))
    rules = load_config(path)
    assert [n.name for n in rules.nodes] == ["node1-8881", "node2-8881", "node3"]


def test_load_config_reads_our_own_format(tmp_path: Path) -> None:
    """A file in our format is read with its groups, health settings and pins."""
    path = tmp_path / "cluster.json"
    rules = {
        "nodes": [
            {"name": "a", "url": "http://a:8080", "groups": ["alvra"]},
            {"name": "b", "pins": [{"instance": "cam1", "port": 9000}]},
        ],
        "groups": {"alvra": {"instances": ["alvra_*"]}},
        "health": {"interval": 0.5, "down_after": 5},
    }
    path.write_text(json.dumps(rules))
    loaded = load_config(path)
    assert loaded.node("a") is not None
    assert loaded.node("a").generic is False  # type: ignore[union-attr]
    assert loaded.health.down_after == 5
    assert loaded.pin_of("cam1") == ("b", Pin(instance="cam1", port=9000))


def test_load_config_of_a_missing_file_quotes_the_path(tmp_path: Path) -> None:
    """A file that cannot be read is an InvalidConfigError naming the file."""
    path = tmp_path / "nope.json"
    with pytest.raises(InvalidConfigError, match=r"nope\.json' cannot be read"):
        load_config(path)


def test_load_config_of_broken_json_quotes_the_path(tmp_path: Path) -> None:
    """A file that is not JSON is an InvalidConfigError naming the file."""
    path = tmp_path / "cluster.json"
    path.write_text("{nodes: [")
    with pytest.raises(InvalidConfigError, match=r"cluster\.json' cannot be read"):
        load_config(path)


def test_load_config_of_invalid_rules_says_what_is_wrong(tmp_path: Path) -> None:
    """Rules that do not validate give the file and the problem in one message."""
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"nodes": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(InvalidConfigError, match=r"cluster\.json' is invalid") as caught:
        load_config(path)
    assert "node names listed twice: ['a']" in caught.value.message


def test_load_config_of_a_bad_servers_json_says_what_is_wrong(tmp_path: Path) -> None:
    """A servers.json whose pins clash gives the file and the clash."""
    path = tmp_path / "servers.json"
    path.write_text(
        json.dumps({"http://n1:1": {"instances": ["x"]}, "http://n2:1": {"instances": ["x:9"]}})
    )
    with pytest.raises(InvalidConfigError, match=r"servers\.json' is invalid") as caught:
        load_config(path)
    assert "instance 'x' is pinned to both 'n1-1' and 'n2-1'" in caught.value.message
