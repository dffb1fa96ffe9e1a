"""The registry: a folder whose files are the pipelines a supervisor can run.

An entry is an executable of any language, a ``*.py`` script (run by the Python runner), a C
extension (``*.c`` compiled by the Python runner on first use, or ``*.so``; see
``runners/c/pipevisor_ext.h``), or a ``*.json`` ``EntrySpec`` naming one of those or a builtin
pipeline. Entries are named by the file stem; a JSON shadows the other files of the same stem,
then a script shadows an executable, and an executable (a native program built from its
``.c``) shadows a C extension. A broken entry is listed with ``valid=False`` and an error a
person can read; it never stops a scan.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import structlog

from . import registry_files
from .nodeapi.errors import EntryNotFoundError, InvalidConfigError, InvalidEntryError
from .nodeapi.models import Entry, EntryKind, RegistryChanges, RegistryFile
from .nodeapi.specs import EntrySpec

__all__ = ["Registry"]

log = structlog.get_logger(__name__)

_RUNNER = ("-u", "-m", "runners.python")


_PRECEDENCE = {
    EntryKind.CONFIG: 0,
    EntryKind.SCRIPT: 1,
    EntryKind.EXECUTABLE: 2,
    EntryKind.EXTENSION: 3,
}


class _Stat(NamedTuple):
    mtime_ns: int
    size: int
    mode: int
    ino: int
    error: str | None = None  # the file was listed but could not be stat'ed (it vanished)


class _Parsed(NamedTuple):
    spec: EntrySpec | None
    error: str | None
    description: str


_Deps = tuple[tuple[str, _Stat | None], ...]


class _State(NamedTuple):
    entries: dict[str, Entry]
    deps: dict[str, _Deps]  # the files each entry was built from, to notice a changed program


def _diff(old: _State, new: _State) -> RegistryChanges:
    before, after = old.entries, new.entries
    return RegistryChanges(
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=sorted(
            n
            for n in after.keys() & before.keys()
            if after[n] != before[n] or new.deps[n] != old.deps[n]
        ),
    )


def _classify(filename: str, st: _Stat) -> EntryKind | None:
    suffix = os.path.splitext(filename)[1]
    if suffix == ".json":
        return EntryKind.CONFIG
    if suffix == ".py":
        return EntryKind.SCRIPT
    if suffix in (".c", ".so"):
        return EntryKind.EXTENSION
    if st.error is None and st.mode & 0o111:
        return EntryKind.EXECUTABLE
    return None


def _entry_name(filename: str) -> str:
    return Path(filename).stem


class Registry:
    """The entries of a registry folder, rescanned on demand or by ``watch``."""

    def __init__(
        self, root: Path, *, max_upload_bytes: int = 64 * 2**20, python: str = sys.executable
    ) -> None:
        self.root = Path(root).resolve()
        self.max_upload_bytes = max_upload_bytes
        self.python = python
        self._lock = threading.Lock()
        self._listing: dict[str, _Stat] | None = None
        self._parsed: dict[str, tuple[_Stat, _Parsed]] = {}
        self._state = _State({}, {})
        self._scan_error: str | None = None

    def scan(self) -> RegistryChanges:
        """Rescan the folder; re-reads only files whose (mtime, size, mode, inode) changed.

        Raises:
            InvalidConfigError: the registry folder is missing or unreadable.
        """
        with self._lock:
            listing = self._list_files()
            if listing == self._listing:
                return RegistryChanges()
            self._listing = listing
            self._parsed = {k: v for k, v in self._parsed.items() if k in listing}
            old, self._state = self._state, self._build(listing)
        changes = _diff(old, self._state)
        entries = self._state.entries
        for name in changes.added:
            log.info("registry_entry_added", entry=name, kind=str(entries[name].kind))
        for name in changes.changed:
            log.info("registry_entry_changed", entry=name, kind=str(entries[name].kind))
        for name in changes.removed:
            log.info("registry_entry_removed", entry=name)
        for name in (*changes.added, *changes.changed):
            if not entries[name].valid:
                log.warning("registry_entry_invalid", entry=name, error=entries[name].error)
        return changes

    def entries(self) -> list[Entry]:
        """All entries, valid or not, sorted by name (scans first if never scanned)."""
        self._ensure_scanned()
        entries = self._state.entries
        return [entries[name] for name in sorted(entries)]

    def get(self, name: str) -> Entry:
        """The entry ``name``. Raises EntryNotFoundError."""
        self._ensure_scanned()
        try:
            return self._state.entries[name]
        except KeyError:
            raise EntryNotFoundError(f"no entry {name!r} in the registry {self.root}") from None

    async def watch(
        self,
        on_change: Callable[[RegistryChanges], Awaitable[None] | None],
        interval: float = 0.5,
    ) -> None:
        """Scan every ``interval`` seconds forever; call ``on_change`` when something changed.

        ``on_change`` gets every change since the previous call, also those made by
        ``write_file``/``delete_file`` or another ``scan()`` in between. A failing scan or
        callback is logged (a scan error once while it persists) and the loop goes on.
        """
        delivered = self._state
        while True:
            try:
                await asyncio.to_thread(self.scan)
            except Exception as exc:
                if str(exc) != self._scan_error:
                    self._scan_error = str(exc)
                    log.exception("registry_scan_failed", registry=str(self.root))
            else:
                if self._scan_error is not None:
                    self._scan_error = None
                    log.info("registry_scan_recovered", registry=str(self.root))
                current = self._state
                changes = _diff(delivered, current)
                delivered = current
                if changes:
                    try:
                        result = on_change(changes)
                        if inspect.isawaitable(result):
                            await result
                    except Exception:
                        log.exception("registry_on_change_failed", registry=str(self.root))
            await asyncio.sleep(interval)

    @staticmethod
    def lists(name: str) -> bool:
        """Whether a folder entry of this name can be a registry file (not hidden, no cache)."""
        return registry_files.is_listed(name)

    def file_list(self) -> list[RegistryFile]:
        """Every plain file of the registry, with its size and SHA-256."""
        return registry_files.list_files(self.root)

    def read_file(self, filename: str) -> bytes:
        """The content of a registry file. Raises InvalidNameError, EntryNotFoundError."""
        return registry_files.read_file(self.root, filename)

    def write_file(self, filename: str, data: bytes, *, executable: bool = False) -> Entry | None:
        """Write a registry file atomically and rescan.

        Returns:
            The entry that now carries the file's stem (a JSON of the same stem shadows a
            script), or None when the file is not an entry (e.g. a non-executable text file).

        Raises:
            InvalidNameError, PayloadTooLargeError, InvalidEntryError (a JSON that does not
            validate; nothing is written), ConflictError (the name is a folder), OSError.
        """
        registry_files.resolve_name(self.root, filename)
        registry_files.check_size(filename, len(data), self.max_upload_bytes)
        if filename.endswith(".json"):
            registry_files.parse_entry_spec(filename, data)
        registry_files.write_file(self.root, filename, data, executable=executable)
        log.info("registry_file_written", file=filename, size=len(data))
        self.scan()
        listed = (self._listing or {}).get(filename)
        if listed is None or _classify(filename, listed) is None:
            return None
        return self._state.entries.get(_entry_name(filename))

    def delete_file(self, filename: str) -> None:
        """Remove a registry file and rescan. Raises InvalidNameError, EntryNotFoundError."""
        registry_files.delete_file(self.root, filename)
        log.info("registry_file_deleted", file=filename)
        self.scan()

    def _ensure_scanned(self) -> None:
        if self._listing is None:
            self.scan()

    def _list_files(self) -> dict[str, _Stat]:
        try:
            it = os.scandir(self.root)
        except OSError as exc:
            raise InvalidConfigError(
                f"registry folder {str(self.root)!r} cannot be read: {exc.strerror}"
            ) from exc
        files: dict[str, _Stat] = {}
        with it:
            for d in it:
                name = d.name
                if not registry_files.is_listed(name):
                    continue
                try:
                    st = d.stat()
                except OSError as exc:
                    files[name] = _Stat(-1, -1, 0, -1, f"cannot be read: {exc.strerror}")
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[name] = _Stat(st.st_mtime_ns, st.st_size, st.st_mode, st.st_ino)
        return files

    def _build(self, listing: dict[str, _Stat]) -> _State:
        candidates: dict[str, list[tuple[int, str, EntryKind]]] = {}
        for filename, st in listing.items():
            kind = _classify(filename, st)
            if kind is None:
                continue
            rank = _PRECEDENCE.get(kind, len(_PRECEDENCE))
            candidates.setdefault(_entry_name(filename), []).append((rank, filename, kind))
        entries, deps = {}, {}
        for name, found in candidates.items():
            _, filename, kind = min(found)
            entries[name], deps[name] = self._make_entry(name, filename, kind, listing)
        return _State(entries, deps)

    def _make_entry(
        self, name: str, filename: str, kind: EntryKind, listing: dict[str, _Stat]
    ) -> tuple[Entry, _Deps]:
        st = listing[filename]
        deps: _Deps = ((filename, st),)
        spec: EntrySpec | None = None
        argv: list[str] | None = None
        error: str | None = None
        description = ""
        if st.error is not None:
            error = f"{filename}: {st.error}"
        elif kind is EntryKind.EXTENSION:
            spec, argv = EntrySpec(program=filename), self._extension_argv(filename)
        elif kind is EntryKind.EXECUTABLE:
            spec, argv = EntrySpec(program=filename), [str(self.root / filename)]
        elif kind is EntryKind.SCRIPT:
            parsed = self._parse(filename, kind, st)
            spec, error, description = EntrySpec(program=filename), parsed.error, parsed.description
            argv = self._script_argv(filename)
        else:
            parsed = self._parse(filename, kind, st)
            error, description = parsed.error, parsed.description
            # A copy: callers may touch an entry's spec, the cache must stay as parsed.
            spec = parsed.spec.model_copy(deep=True) if parsed.spec is not None else None
            if spec is not None and spec.builtin is not None:
                argv = [self.python, *_RUNNER, "--builtin", spec.builtin, *spec.args]
            elif spec is not None and spec.program is not None:
                program = listing.get(spec.program)
                deps = (*deps, (spec.program, program))
                argv, program_error = self._program_argv(filename, spec.program, program)
                argv = [*argv, *spec.args] if argv is not None else None
                error = error or program_error
        mtimes = [s.mtime_ns for _, s in deps if s is not None and s.mtime_ns >= 0]
        entry = Entry(
            name=name,
            kind=kind,
            filename=filename,
            valid=error is None,
            error=error,
            modified=max(mtimes, default=0) / 1e9,
            spec=spec,
            argv=argv if error is None else None,
            description=description,
        )
        return entry, deps

    def _script_argv(self, filename: str) -> list[str]:
        return [self.python, *_RUNNER, "--script", str(self.root / filename)]

    def _extension_argv(self, filename: str) -> list[str]:
        return [self.python, *_RUNNER, "--extension", str(self.root / filename)]

    def _program_argv(
        self, config: str, program: str, st: _Stat | None
    ) -> tuple[list[str] | None, str | None]:
        where = f"{config}: program {program!r}"
        if st is None:
            return None, f"{where} not found in the registry"
        if st.error is not None:
            return None, f"{where} {st.error}"
        kind = _classify(program, st)
        if kind is EntryKind.SCRIPT:
            return self._script_argv(program), None
        if kind is EntryKind.EXECUTABLE:
            return [str(self.root / program)], None
        if kind is EntryKind.CONFIG:
            return None, f"{where} is a JSON config, not a program"
        if kind is EntryKind.EXTENSION:
            return self._extension_argv(program), None
        return None, f"{where} is neither a *.py script, a C extension nor executable (chmod +x)"

    def _parse(self, filename: str, kind: EntryKind, st: _Stat) -> _Parsed:
        cached = self._parsed.get(filename)
        if cached is not None and cached[0] == st:
            return cached[1]
        path = self.root / filename
        try:
            if kind is EntryKind.SCRIPT:
                parsed = _Parsed(None, None, registry_files.script_description(path))
            else:
                spec = registry_files.parse_entry_spec(filename, path.read_bytes())
                missing = (
                    registry_files.missing_builtin(spec.builtin)
                    if spec.builtin is not None
                    else None
                )
                error = f"{filename}: {missing}" if missing is not None else None
                parsed = _Parsed(spec, error, spec.description)
        except InvalidEntryError as exc:
            parsed = _Parsed(None, exc.message, "")
        except OSError as exc:
            parsed = _Parsed(None, f"{filename}: cannot be read: {exc.strerror or exc}", "")
        self._parsed[filename] = (st, parsed)
        return parsed
