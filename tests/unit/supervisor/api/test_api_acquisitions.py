"""Acquisitions over REST: entries of the instance's config, answered by its report."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from supervisor.testing import FakeNode

BASE = "/api/v1/instances/cam1/acquisitions"


def test_an_acquisition_becomes_a_config_entry_and_shows_as_requested(
    client: TestClient, fake: FakeNode, running: dict
) -> None:
    body = {"id": "run7", "start_pulse_id": 100, "stop_pulse_id": 200, "output_file": "r7.h5"}
    created = client.post(BASE, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "run7"
    assert fake.instances["cam1"].config["acquisitions"]["run7"] == {
        "start_pulse_id": 100,
        "stop_pulse_id": 200,
        "output_file": "r7.h5",
        "general": {},
    }
    listed = client.get(BASE).json()
    assert listed["run7"]["state"] == "requested"  # the program has not reported it yet


def test_the_programs_report_is_what_the_api_shows(
    client: TestClient, fake: FakeNode, running: dict
) -> None:
    client.post(BASE, json={"id": "a", "output_file": "a.h5"})
    written = {"state": "done", "pulses": 11, "missing_pulse_ids": [5]}
    fake.instances["cam1"].report = {"acquisitions": {"a": written}}
    assert client.get(f"{BASE}/a").json() == written
    assert client.get(f"{BASE}/nope").status_code == 404


def test_a_generated_id_a_taken_id_and_a_bad_body(
    client: TestClient, fake: FakeNode, running: dict
) -> None:
    first = client.post(BASE, json={"output_file": "x.h5"}).json()["id"]
    assert first.startswith("acq_")
    again = client.post(BASE, json={"id": first, "output_file": "y.h5"})
    assert again.status_code == 409
    assert first in again.json()["detail"]
    bad = client.post(BASE, json={"output_file": "z.h5", "start_pulse_id": -3})
    assert bad.status_code == 422
    assert (
        client.post(BASE, json={"output_file": "z.h5", "stop_pulse_id": "later"}).status_code == 422
    )


def test_stop_and_delete_patch_the_entry(client: TestClient, fake: FakeNode, running: dict) -> None:
    client.post(BASE, json={"id": "open", "output_file": "o.h5"})
    assert client.post(f"{BASE}/open/stop", json={"stop_pulse_id": 500}).status_code == 200
    assert fake.instances["cam1"].config["acquisitions"]["open"]["stop_pulse_id"] == 500
    assert client.post(f"{BASE}/open/stop").status_code == 200  # "now" by default
    assert fake.instances["cam1"].config["acquisitions"]["open"]["stop_pulse_id"] == "now"
    assert client.delete(f"{BASE}/open").status_code == 204
    assert "open" not in fake.instances["cam1"].config["acquisitions"]
    assert client.post(f"{BASE}/open/stop").status_code == 404


def test_acquisitions_need_the_token_and_are_audited(
    secured: TestClient, fake: FakeNode, running: dict, audit_path: Path
) -> None:
    refused = secured.post(BASE, json={"id": "sneaky", "output_file": "s.h5"})
    assert refused.status_code == 401
    assert "acquisitions" not in fake.instances["cam1"].config
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert records[-1]["status"] == 401
    assert "sneaky" in records[-1]["body"]


def test_acquisitions_the_program_pruned_leave_the_config_with_the_next_one(
    client: TestClient, fake: FakeNode, running: dict
) -> None:
    """Finished ones beyond the program's keep_finished: not shown as requested, and removed
    from the config in the same patch that adds a new acquisition."""
    for name in ("old", "recent"):
        assert client.post(BASE, json={"id": name, "output_file": f"{name}.h5"}).status_code == 201
    done = {"state": "done", "pulses": 3}
    fake.instances["cam1"].report = {"acquisitions": {"recent": done}, "pruned": ["old"]}
    assert client.get(BASE).json() == {"recent": done}
    assert client.get(f"{BASE}/old").status_code == 404
    created = client.post(BASE, json={"id": "new", "output_file": "new.h5"})
    assert created.status_code == 201, created.text
    assert sorted(fake.instances["cam1"].config["acquisitions"]) == ["new", "recent"]
