"""The layering of DESIGN.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("supervisor", "runners", "builtin_pipelines", "cluster")
# lz4 is optional: imported only if present, to read the plain-lz4 channels some senders emit.
# cffi: the contract's build cache (buildcache.py) compiles the C of extensions and builtins,
# importing cffi only when something is built or loaded (a runtime dependency anyway).
CONTRACT_THIRD_PARTY = {"numpy", "zmq", "pydantic", "bitshuffle", "pydantic_core", "lz4", "cffi"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of everything a module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def _violations(package: str, allowed) -> list[str]:
    found = []
    for path in _modules(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if not allowed(name, top):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_contract_imports_only_stdlib_and_its_chosen_packages():
    """supervisor.contract never imports the supervisor core or anything else of the project."""

    def allowed(name, top):
        if top in PROJECT:
            return _in(name, "supervisor.contract") or name == "supervisor"
        return top in sys.stdlib_module_names or top in CONTRACT_THIRD_PARTY or top == "__future__"

    assert _violations("supervisor.contract", allowed) == []


@pytest.mark.parametrize("package", ["runners", "builtin_pipelines"])
def test_runners_and_builtins_import_only_the_contract(package):
    """The runner and the builtin pipelines see the project only through the contract."""

    def allowed(name, top):
        if top in PROJECT:
            return _in(name, "supervisor.contract", package) or name == "supervisor"
        return True

    assert _violations(package, allowed) == []


def test_supervisor_core_never_imports_cluster_runner_or_builtins():
    """The node service depends on the contract, not on the programs it runs."""

    def allowed(name, top):
        return not _in(name, "cluster", "runners", "builtin_pipelines")

    assert _violations("supervisor", allowed) == []


# What a second implementation of the node API (the cluster manager) may take from the node:
# the API itself and the contract, and the node's reusable public parts, named one by one. The
# node's internals (instances, table, launcher, log hub and rings, previews, registry files, ...)
# stay out of reach, so they can change without the manager noticing.
NODE_PARTS_FOR_MANAGERS = (
    "supervisor.nodeapi",  # the Protocol, its models, its errors
    "supervisor.contract",
    "supervisor.api",  # the REST face of any NodeAPI
    "supervisor.serving",  # uvicorn with the node's signal handling
    "supervisor.settings",  # the settings base
    "supervisor.cli",  # sub-commands plug into `pipevisor`
    "supervisor.folders",  # the NodeAPI over a registry folder and a background folder
    "supervisor.registry",
    "supervisor.backgrounds",
    "supervisor.atomicfile",
    "supervisor.audit",
    "supervisor.logconfig",
)


def test_cluster_sees_the_node_only_through_its_api_and_public_parts():
    """cluster/ imports the node API, the contract and the named public parts, nothing else."""

    def allowed(name, top):
        if top != "supervisor":
            return True
        return name in ("supervisor", "supervisor.__version__") or _in(
            name, *NODE_PARTS_FOR_MANAGERS
        )

    assert _violations("cluster", allowed) == []


def test_node_api_imports_only_the_contract():
    """supervisor.nodeapi is the node's public face: it depends on nothing of the node."""

    def allowed(name, top):
        if top in PROJECT:
            return _in(name, "supervisor.nodeapi", "supervisor.contract") or name == "supervisor"
        return True

    assert _violations("supervisor.nodeapi", allowed) == []
