"""``python -m builtin_pipelines``: the table of builtin pipelines, one line each."""

from __future__ import annotations

from . import catalog


def main() -> int:
    """Print each builtin's name, module and description; returns the exit code."""
    table = catalog()
    if not table:
        print("no builtin pipelines: is pipevisor installed (pip install -e .)?")
        return 1
    width = max(len(name) for name in table)
    for builtin in table.values():
        print(f"{builtin.name:<{width}}  {builtin.description}  ({builtin.module})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
