"""The table of builtin pipelines: pyproject's entry points, the tree, the runner and registry."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from builtin_pipelines import GROUP, catalog
from builtin_pipelines.__main__ import main
from runners.python.loader import BUILTINS_GROUP, LoadError, builtin_module, find_entry
from supervisor import registry_files

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "builtin_pipelines"
ENTRIES = ("process_image", "process", "generate")
# What lives in the package beside the builtins: the libraries and the table's own listing.
NOT_BUILTINS = {"lib", "__main__"}


def _pyproject_table() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["entry-points"][GROUP]


def test_the_runner_and_the_supervisor_read_the_same_group():
    """One table: the package, the runner and the registry name the same entry-point group."""
    assert GROUP == BUILTINS_GROUP == registry_files.BUILTINS_GROUP == "pipevisor.builtins"


def test_the_installed_table_is_pyprojects():
    """The installed metadata is pyproject.toml's table (else: pip install --no-deps -e .)."""
    installed = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    assert installed == _pyproject_table()


def test_every_builtin_of_the_tree_is_in_the_table_and_nothing_else():
    """Each module or package of builtin_pipelines/ is a builtin of the same name, libs aside."""
    tree = {m.name for m in pkgutil.iter_modules([str(PACKAGE)])} - NOT_BUILTINS
    table = catalog()
    assert set(table) == tree
    for name, builtin in table.items():
        assert builtin.module == f"builtin_pipelines.{name}"


@pytest.mark.parametrize("name", sorted(catalog()))
def test_every_builtin_imports_and_defines_an_entry_point(name: str):
    """Every name of the table loads as a pipeline: process_image, process or generate."""
    module = importlib.import_module(builtin_module(name))
    code = find_entry(module, name)
    assert code.kind in ("camera", "stream", "source")
    assert catalog()[name].description, f"{name}: its module has no docstring"


def test_the_libraries_define_no_entry_point():
    """Nothing in builtin_pipelines/lib/ is a pipeline (read, not imported: pyepics, h5py)."""
    found = []
    for path in sorted((PACKAGE / "lib").rglob("*.py")):
        tree = ast.parse(path.read_bytes())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        found += [f"{path.relative_to(ROOT)}: {entry}" for entry in ENTRIES if entry in names]
    assert found == []


@pytest.mark.parametrize("name", ["h5writer", "lib", "camera_geometry", "beam_metrics.fit"])
def test_the_runner_and_the_registry_refuse_an_unknown_name_alike(name: str):
    """Both say: unknown builtin 'NAME'; known builtins: ... (the whole table)."""
    expected = f"unknown builtin {name!r}; known builtins: {', '.join(sorted(catalog()))}"
    assert registry_files.missing_builtin(name) == expected
    with pytest.raises(LoadError) as info:
        builtin_module(name)
    assert str(info.value) == expected


def test_the_listing_prints_every_builtin_with_its_description(capsys: pytest.CaptureFixture):
    """python -m builtin_pipelines: one line per builtin, its name first."""
    assert main() == 0
    lines = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert list(lines) == sorted(catalog())
    assert lines["camera_simulation"].startswith("A simulated camera: a Gaussian beam")
    assert lines["beam_metrics"].startswith("CamServer's standard image processing")
