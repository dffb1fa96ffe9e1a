"""Pipelines that ship with pipevisor, each known by a name in the table of builtins.

A registry entry ``{"builtin": "NAME"}`` runs the builtin pipeline NAME. The table is the
``pipevisor.builtins`` entry-point group of pyproject.toml (name -> module), so the supervisor
reads it without importing a builtin and the runner loads a builtin by its name through it; a
name missing from it is refused. A builtin's description is the first line of its module's
docstring. ``python -m builtin_pipelines`` prints the table. Code the builtins share or build on
lives in :mod:`builtin_pipelines.lib`, never in the table.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["GROUP", "Builtin", "catalog"]

GROUP = "pipevisor.builtins"
"""The entry-point group that is the table of builtin pipelines."""


@dataclass(frozen=True, slots=True)
class Builtin:
    """One row of the table: the name a registry entry gives, its module, what it does."""

    name: str
    module: str
    description: str


def catalog() -> dict[str, Builtin]:
    """The table of builtin pipelines by name, in name order; no builtin is imported."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    return {ep.name: Builtin(ep.name, ep.module, _description(ep.name, ep.module)) for ep in found}


def _description(name: str, module: str) -> str:
    """The first line of the module's docstring, read from its source (``NAME: `` dropped)."""
    try:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        docstring = ast.get_docstring(ast.parse(Path(origin).read_bytes())) if origin else None
    except (ImportError, ValueError, OSError, SyntaxError):
        return ""
    first = (docstring or "").strip().partition("\n")[0].strip()
    first = first.removeprefix(f"{name}: ")
    return first[:1].upper() + first[1:]
