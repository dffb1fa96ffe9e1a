"""Load the user's code: a registry script by path, a builtin pipeline or a module by name."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .extension import load_extension
from .options import OptionError, RunnerOptions

__all__ = [
    "BUILTINS_GROUP",
    "LoadError",
    "UserCode",
    "builtin_module",
    "find_entry",
    "load",
    "load_module",
    "load_script",
]

Kind = Literal["camera", "stream", "source"]

# The entry points, in CamServer's order of preference, and the kind of pipeline each makes.
_ENTRIES: tuple[tuple[str, Kind], ...] = (
    ("process_image", "camera"),
    ("process", "stream"),
    ("generate", "source"),
)
_counter = itertools.count()

BUILTINS_GROUP = "pipevisor.builtins"
"""The entry-point group that is the table of builtin pipelines: name -> module (pyproject.toml)."""


class LoadError(Exception):
    """The user code has no entry point, or is not where it was said to be."""


@dataclass(frozen=True, slots=True)
class UserCode:
    """The loaded user code: what kind of pipeline it is and the functions to call."""

    name: str
    kind: Kind
    function: Callable[..., Any]
    configure: Callable[[dict[str, Any]], Any] | None
    target: tuple[Literal["script", "module", "extension"], str] | None = None
    """How :func:`load` found it, so a worker process can load it again."""
    report: Callable[[dict[str, Any]], Any] | None = None
    """Optional ``report(parameters)``: the program's state for the API (a JSON object)."""
    option_defaults: Mapping[str, Any] = field(default_factory=dict)
    """Optional ``RUNNER_DEFAULTS``: the code's own defaults for runner options (a writer's
    deep ``queue_size``); the instance's config still overrides them."""


def load_script(path: str | Path) -> ModuleType:
    """Execute a script file as a fresh module, with its folder importable.

    The module gets a unique name, so two scripts with the same file name never collide.

    Raises:
        LoadError: the file does not exist.
        Exception: whatever executing the script raises (SyntaxError, ImportError, ...).
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise LoadError(f"script not found: {str(path)!r}")
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    stem = re.sub(r"\W", "_", file.stem)
    name = f"_pipevisor_script_{stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load {str(path)!r} as a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_module(name: str) -> ModuleType:
    """Import a module by its dotted name (e.g. ``builtin_pipelines.camera_simulation``)."""
    return importlib.import_module(name)


def builtin_module(name: str) -> str:
    """The module of the builtin pipeline ``name``, looked up in the table of builtins.

    The table is the ``pipevisor.builtins`` entry-point group, the one the supervisor checks a
    registry entry's ``"builtin"`` against; nothing is imported to read it.

    Raises:
        LoadError: no builtin has that name; the message lists those that do.
    """
    table = {ep.name: ep.module for ep in entry_points(group=BUILTINS_GROUP)}
    module = table.get(name)
    if module is None:
        known = ", ".join(sorted(table)) or "none"
        raise LoadError(f"unknown builtin {name!r}; known builtins: {known}")
    return module


def find_entry(module: ModuleType, name: str) -> UserCode:
    """Pick the module's entry point: ``process_image``, else ``process``, else ``generate``.

    Raises:
        LoadError: none of them is defined, or one is not callable.
    """
    configure = getattr(module, "configure", None)
    if configure is not None and not callable(configure):
        raise LoadError(f"{name}: 'configure' is not a function: {configure!r}")
    report = getattr(module, "report", None)
    if report is not None and not callable(report):
        raise LoadError(f"{name}: 'report' is not a function: {report!r}")
    defaults = _option_defaults(module, name)
    for attribute, kind in _ENTRIES:
        function = getattr(module, attribute, None)
        if function is None:
            continue
        if not callable(function):
            raise LoadError(f"{name}: {attribute!r} is not a function: {function!r}")
        return UserCode(
            name=name,
            kind=kind,
            function=function,
            configure=configure,
            report=report,
            option_defaults=defaults,
        )
    wanted = ", ".join(attribute for attribute, _ in _ENTRIES)
    raise LoadError(f"{name} defines none of {wanted}")


def _option_defaults(module: ModuleType, name: str) -> dict[str, Any]:
    """The module's ``RUNNER_DEFAULTS``, checked as the runner checks its options.

    Raises:
        LoadError: not a dict of runner options, or a value the runner would refuse.
    """
    defaults = getattr(module, "RUNNER_DEFAULTS", None)
    if defaults is None:
        return {}
    if not isinstance(defaults, Mapping):
        raise LoadError(f"{name}: RUNNER_DEFAULTS must be a dict, got {defaults!r}")
    if unknown := sorted(set(defaults) - set(RunnerOptions.model_fields)):
        raise LoadError(f"{name}: RUNNER_DEFAULTS: {unknown} are not runner options")
    try:
        RunnerOptions.from_config(defaults)
    except OptionError as exc:
        raise LoadError(f"{name}: RUNNER_DEFAULTS: {exc}") from None
    return dict(defaults)


def load(
    *,
    script: str | None = None,
    module: str | None = None,
    extension: str | None = None,
    builtin: str | None = None,
) -> UserCode:
    """Load the user code that one of the arguments names; find its entry point.

    ``script`` and ``extension`` are paths (a C extension: a ``.c`` compiled on first use, or a
    ``.so``), ``module`` a dotted module name, ``builtin`` a name in the table of builtins: it
    is loaded as its module (:func:`builtin_module`), which worker processes load again.

    Raises:
        LoadError: no entry point, an unknown builtin, or nothing to load.
        ExtensionError: the C extension does not compile or load (the message says why).
    """
    if builtin is not None:
        module = builtin_module(builtin)
    if script is not None:
        code = find_entry(load_script(script), script)
        return replace(code, target=("script", str(Path(script).resolve())))
    if module is not None:
        return replace(find_entry(load_module(module), module), target=("module", module))
    if extension is not None:
        loaded = load_extension(extension)  # cffi is imported only here, when it is needed
        configure = loaded.configure if loaded.has_configure else None
        target: tuple[Literal["extension"], str] = ("extension", str(Path(extension).resolve()))
        return UserCode(loaded.name, "camera", loaded.process_image, configure, target)
    raise LoadError("neither a script, a builtin, a module nor an extension to load")
