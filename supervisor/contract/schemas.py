"""Export the contract's JSON schemas into ``supervisor/contract/schemas/`` (run as a module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from .env import ContractEnv
from .messages import LogRecord, ProgramMessage, SupervisorMessage

__all__ = ["SCHEMA_DIR", "render_schemas", "write_schemas"]

SCHEMA_DIR = Path(__file__).with_name("schemas")


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of every exported schema."""
    schemas: dict[str, Any] = {
        "environment.json": ContractEnv.model_json_schema(),
        "program_message.json": TypeAdapter(ProgramMessage).json_schema(),
        "supervisor_message.json": TypeAdapter(SupervisorMessage).json_schema(),
        "log_record.json": LogRecord.model_json_schema(),
    }
    return {name: json.dumps(s, indent=2, sort_keys=True) + "\n" for name, s in schemas.items()}


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write the schemas; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas():
        print(p)
