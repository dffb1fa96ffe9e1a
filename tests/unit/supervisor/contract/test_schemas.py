"""The exported JSON schemas are the models: a change to one without the other fails here."""

from __future__ import annotations

import json

from supervisor.contract.schemas import SCHEMA_DIR, render_schemas


def test_exported_schemas_match_the_models():
    """Every schema file in the repo equals what the models render now (run `make schemas`)."""
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(rendered), "schema files added or missing: run `make schemas`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} drifted from the models: run `make schemas`"


def test_program_message_schema_names_every_kind():
    """The schema other languages read lists every message a program may send."""
    schema = json.loads(render_schemas()["program_message.json"])
    kinds = {
        d["properties"]["kind"]["const"]
        for d in schema["$defs"].values()
        if "kind" in d.get("properties", {})
    }
    assert kinds == {"hello", "ready", "config_ack", "config_error", "status", "report"}
