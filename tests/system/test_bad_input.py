"""Bad input against a real supervisor: refused at the edge, and nothing stored is lost."""

from __future__ import annotations

from pathlib import Path

from tests.system.conftest import shell

JSON = {"content-type": "application/json"}


def test_a_surrogate_config_is_refused_and_every_instance_survives_a_restart(
    write_entry, start_supervisor, tmp_path: Path
) -> None:
    """A config with a lone surrogate (valid JSON) is 422 on create and on change; the list
    still answers, and a restarted supervisor still has every instance."""
    write_entry("worker.sh", shell("exec sleep 60"), executable=True)
    state = tmp_path / "state"
    sup = start_supervisor(state_dir=state)
    for name in ("w1", "w2"):
        body = {"name": name, "entry": "worker", "start": False, "config": {"gain": 2}}
        assert sup.api("POST", "/instances", json=body).status_code == 201

    created = sup.api(
        "POST",
        "/instances",
        content=b'{"name": "w3", "entry": "worker", "config": {"label": "\\ud800"}}',
        headers=JSON,
    )
    assert created.status_code == 422, created.text
    assert created.json()["detail"].startswith("body: config.label: the string")
    changed = sup.api(
        "PATCH", "/instances/w1/config", content=b'{"label": "\\ud800"}', headers=JSON
    )
    assert changed.status_code == 422, changed.text
    listed = sup.api("GET", "/instances")
    assert listed.status_code == 200
    assert sorted(i["name"] for i in listed.json()) == ["w1", "w2"]
    sup.stop()

    again = start_supervisor(state_dir=state)
    listed = again.api("GET", "/instances")
    assert listed.status_code == 200
    assert sorted(i["name"] for i in listed.json()) == ["w1", "w2"]
    assert again.instance("w1")["config"] == {"gain": 2}
    assert not (state / "instances.broken").exists()
