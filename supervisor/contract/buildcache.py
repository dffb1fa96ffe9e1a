"""A build cache for C compiled through cffi on first use (C extensions, native kernels).

A :class:`CffiModule` names what is compiled (cdef, C text, flags, include folders, files it
depends on) and how its build is called; :meth:`CffiModule.load` compiles it on first use into
``<root>/<name>-<key>/<module>_<key><EXT_SUFFIX>`` and imports it. The key hashes the C text,
the files it depends on, the cdef, the flags, the interpreter's extension suffix and cffi's
version: an edit or another Python never loads a stale build, a restart loads the cached one.
``root`` is the caller's; programs use a folder of the contract's ``native_cache_dir()``.

A build happens in a private temporary folder (``<root>/.<name>-<key>-XXXX``) whose module is
renamed into place in one step, so processes compiling the same source at once never load half a
module: the first rename wins, a loser finds the winner's build and uses it. The compiler's
output is captured: a failure raises :class:`BuildError` with it, a success with warnings logs
them. cffi is imported only here, when something is built or loaded, never by the contract's
other modules.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cffi

__all__ = ["EXT_SUFFIX", "BuildError", "CffiModule", "cache_key"]

EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX") or ".so"

# The compiler writes to the process's file descriptor 2, which a build redirects to catch it:
# one build at a time in a process (other processes build in their own temporary folders).
_redirect = threading.Lock()


class BuildError(Exception):
    """C code does not compile; the message names it and quotes the compiler's output."""


def cache_key(*parts: str) -> str:
    """20 hex digits of SHA-256 over ``parts``, the extension suffix and cffi's version."""
    import cffi  # here, not at the top: a program that compiles nothing never loads cffi

    digest = hashlib.sha256()
    for part in (*parts, EXT_SUFFIX, cffi.__version__):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class CffiModule:
    """One cffi module in API mode, and where its build is cached.

    Attributes:
        name: the cache folder's name before ``-<key>`` (``beam_metrics``, an extension's stem).
        module: the Python module's name before ``_<key>`` (unique per process and source).
        cdef: the declarations cffi exposes.
        source: the C text compiled (``ffi.set_source``).
        label: how messages name it (``cannot compile <label>``).
        flags: extra compiler arguments.
        include_dirs: folders of ``#include "..."`` files.
        depends: files whose text goes into the key too (the headers it includes).
        log: where compiler warnings of a successful build go.
    """

    name: str
    module: str
    cdef: str
    source: str
    label: str
    flags: Sequence[str] = ()
    include_dirs: Sequence[Path] = ()
    depends: Sequence[Path] = ()
    log: logging.Logger = field(default=logging.getLogger("pipevisor.buildcache"), compare=False)

    @cached_property
    def key(self) -> str:
        """The cache key: the C text, the depended-on files, the cdef and the flags."""
        texts = [path.read_text(errors="replace") for path in self.depends]
        return cache_key(self.source, *texts, self.cdef, " ".join(self.flags))

    @property
    def module_name(self) -> str:
        """The Python module's full name: ``<module>_<key>``."""
        return f"{self.module}_{self.key}"

    def folder(self, root: Path) -> Path:
        """The build's folder in the cache ``root``: ``<root>/<name>-<key>``."""
        return root / f"{self.name}-{self.key}"

    def path(self, root: Path) -> Path:
        """The compiled module's file in the cache ``root`` (there or not)."""
        return self.folder(root) / f"{self.module_name}{EXT_SUFFIX}"

    def is_built(self, root: Path) -> bool:
        """Whether the cache ``root`` holds the compiled module."""
        return self.path(root).is_file()

    def load(self, root: Path) -> ModuleType:
        """The module from the cache ``root``, compiled first if it is not there.

        Raises:
            BuildError: it does not compile (the compiler's output is in the message).
            ImportError: the compiled module cannot be imported.
            OSError: the cache cannot be written.
        """
        path = self.path(root)
        if not path.is_file():
            self.build(root)
        spec = importlib.util.spec_from_file_location(self.module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def build(self, root: Path) -> Path:
        """Compile into the cache ``root`` (again, if it is there: a lost race is no error).

        Returns:
            The build's folder, :meth:`folder`.

        Raises:
            BuildError: it does not compile (the compiler's output is in the message).
            OSError: the cache cannot be written.
        """
        import cffi

        final = self.folder(root)
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
        try:
            ffi = cffi.FFI()
            ffi.cdef(self.cdef)
            ffi.set_source(
                self.module_name,
                self.source,
                include_dirs=[str(path) for path in self.include_dirs],
                extra_compile_args=list(self.flags),
            )
            built, said = _compile(ffi, work / "build", self.label)
            if said:
                self.log.warning("%s compiled with warnings:\n%s", self.label, said)
            publish = work / "publish"
            publish.mkdir()
            os.replace(built, publish / built.name)
            try:
                os.rename(publish, final)
            except OSError:
                if not final.is_dir():  # not a lost race with another process: a real failure
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final


def _compile(ffi: cffi.FFI, tmpdir: Path, label: str) -> tuple[Path, str]:
    """``ffi.compile`` in ``tmpdir``: the module's path and what the compiler said."""
    failure: Exception | None = None
    built = Path()
    with _redirect, tempfile.TemporaryFile() as output:
        saved = os.dup(2)
        os.dup2(output.fileno(), 2)
        try:
            # The build machinery (setuptools/distutils) may warn about itself; not our business.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = Path(ffi.compile(tmpdir=str(tmpdir), verbose=False))
        except Exception as exc:
            failure = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        output.seek(0)
        said = output.read().decode(errors="replace").strip()
    if failure is not None:
        raise BuildError(
            f"cannot compile {label}:\n{said or f'{type(failure).__name__}: {failure}'}"
        ) from failure
    return built, said
