"""Registry files: validated names, a size limit, atomic writes, and reading their contents.

Every name comes from a client (REST upload, CLI), so it is checked before it touches the file
system: one plain path component that resolves inside the registry, symlinks included. The
content readers (JSON entry, script docstring, builtin lookup) never import user code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import stat
import tokenize
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import ValidationError

from .atomicfile import fsync_folder, write_atomic
from .jsontext import parse_json
from .nodeapi.errors import (
    ConflictError,
    EntryNotFoundError,
    InvalidEntryError,
    InvalidNameError,
    InvalidValueError,
    MalformedRequestError,
    PayloadTooLargeError,
)
from .nodeapi.models import RegistryFile
from .nodeapi.specs import EntrySpec

__all__ = [
    "BUILTINS_GROUP",
    "MAX_NAME_LENGTH",
    "TEMP_PREFIX",
    "builtin_names",
    "check_size",
    "delete_file",
    "is_listed",
    "list_files",
    "missing_builtin",
    "parse_entry_spec",
    "read_file",
    "resolve_name",
    "script_description",
    "write_file",
]

BUILTINS_GROUP = "pipevisor.builtins"
"""The entry-point group that is the table of builtin pipelines (pyproject.toml): an entry's
``"builtin"`` must be one of its names, and the runner loads a builtin by its name through it."""
MAX_NAME_LENGTH = 128
TEMP_PREFIX = ".upload-"
"""Prefix of the hidden temporary file of an upload; hidden files are not entries."""

_BUILTIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
# Device names of Windows: a registry may live on a share that Windows machines mount too.
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)


def _why_invalid(filename: str) -> str | None:
    if not filename:
        return "it is empty"
    if "/" in filename or "\\" in filename:
        return "it must be a single file name, without '/' or '\\'"
    if ".." in filename:
        return "'..' is not allowed"
    if filename.startswith("."):
        return "hidden names (a leading '.') are not allowed"
    if len(filename) > MAX_NAME_LENGTH:
        return f"it is {len(filename)} characters long, the limit is {MAX_NAME_LENGTH}"
    if not _NAME.match(filename):
        return "it must start with a letter or digit and contain only letters, digits and '_.+-'"
    if filename.split(".", 1)[0].lower() in _RESERVED:
        return "it is a reserved name"
    return None


def resolve_name(root: Path, filename: str) -> Path:
    """The path of ``filename`` in the registry ``root`` (an absolute, resolved folder).

    The returned path is not resolved (a symlink stays a symlink, so a delete removes the link),
    but its resolved target is checked to lie inside ``root``.

    Raises:
        InvalidNameError: the name is not one plain file name, or it points outside the registry.
    """
    why = _why_invalid(filename)
    if why is not None:
        raise InvalidNameError(f"invalid file name {filename!r}: {why}")
    path = root / filename
    target = path.resolve()
    if target == root or not target.is_relative_to(root):
        raise InvalidNameError(f"invalid file name {filename!r}: it points outside the registry")
    return path


def check_size(filename: str, size: int, limit: int) -> None:
    """Raises PayloadTooLargeError when ``size`` bytes exceed ``limit``."""
    if size > limit:
        raise PayloadTooLargeError(
            f"{filename!r} is {size} bytes, more than the upload limit of {limit} bytes"
        )


def read_file(root: Path, filename: str) -> bytes:
    """The content of a registry file. Raises InvalidNameError, EntryNotFoundError."""
    path = resolve_name(root, filename)
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise EntryNotFoundError(f"no file {filename!r} in the registry") from exc


def write_file(root: Path, filename: str, data: bytes, *, executable: bool = False) -> Path:
    """Write ``data`` to ``filename`` atomically: readers see the old file or the new, never half.

    The file is executable (0o755) when ``executable`` is set or the file it replaces was
    executable, else 0o644. On any failure the temporary file is removed and the old file is left.

    Raises:
        InvalidNameError: see ``resolve_name``.
        ConflictError: the name is a folder.
        OSError: the write itself failed (disk full, permissions).
    """
    path = resolve_name(root, filename)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        was_executable = False
    else:
        if os.path.isdir(path):
            raise ConflictError(f"{filename!r} is a folder in the registry, not a file")
        was_executable = bool(st.st_mode & 0o111)
    mode = 0o755 if executable or was_executable else 0o644
    write_atomic(path, data, mode=mode, temp_prefix=TEMP_PREFIX)
    return path


def delete_file(root: Path, filename: str) -> None:
    """Remove a registry file. Raises InvalidNameError, EntryNotFoundError."""
    path = resolve_name(root, filename)
    try:
        os.unlink(path)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise EntryNotFoundError(f"no file {filename!r} in the registry") from exc
    fsync_folder(root)


def parse_entry_spec(filename: str, data: bytes) -> EntrySpec:
    """Parse and validate a JSON entry; checks only what does not depend on the registry's files.

    Raises:
        InvalidEntryError: quoting the file, the field path and the reason.
    """
    try:
        raw = parse_json(data, filename)
    except (InvalidValueError, MalformedRequestError) as exc:
        raise InvalidEntryError(exc.message) from exc
    try:
        spec = EntrySpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEntryError(f"{filename}: {_describe(exc)}") from exc
    if spec.program is not None and (
        not spec.program or "/" in spec.program or "\\" in spec.program or spec.program[0] == "."
    ):
        raise InvalidEntryError(
            f"{filename}: program: {spec.program!r} must be the name of a file in the registry, "
            "not hidden and without '/' or '\\'"
        )
    if spec.builtin is not None and not _BUILTIN_NAME.match(spec.builtin):
        raise InvalidEntryError(
            f"{filename}: builtin: {spec.builtin!r} is not a builtin name "
            "(lower-case letters, digits and '_', starting with a letter)"
        )
    return spec


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


@functools.cache
def builtin_names() -> tuple[str, ...]:
    """The names in the table of builtin pipelines, sorted; read from the installed package's
    metadata, never by importing a builtin, once per process (a new builtin needs a restart)."""
    return tuple(sorted({ep.name for ep in entry_points(group=BUILTINS_GROUP)}))


def missing_builtin(name: str) -> str | None:
    """None if ``name`` is in the table of builtin pipelines, else why not (with those that are)."""
    known = builtin_names()
    if name in known:
        return None
    return f"unknown builtin {name!r}; known builtins: {', '.join(known) or 'none'}"


def script_description(path: Path) -> str:
    """First line of a script's docstring, read without importing or parsing the whole file."""
    with path.open("rb") as f:
        try:
            for tok in tokenize.tokenize(f.readline):
                if tok.type in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                    continue
                if tok.type != tokenize.STRING:
                    return ""
                value = ast.literal_eval(tok.string)
                lines = value.strip().splitlines() if isinstance(value, str) else []
                return lines[0].strip() if lines else ""
        except (tokenize.TokenError, SyntaxError, ValueError, UnicodeDecodeError):
            return ""
    return ""


def is_listed(name: str) -> bool:
    """Whether a folder entry of this name can be a registry file (not hidden, not a cache)."""
    return not (name[0] == "." or name == "__pycache__" or name.endswith(".pyc"))


def list_files(root: Path) -> list[RegistryFile]:
    """The registry's plain files with their digests (what a cluster manager compares)."""
    found = []
    for d in sorted(os.scandir(root), key=lambda d: d.name):
        if not is_listed(d.name):
            continue
        try:
            st = d.stat()
            if not stat.S_ISREG(st.st_mode):
                continue
            with open(d.path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            continue  # vanished while listed
        found.append(
            RegistryFile(
                filename=d.name,
                size=st.st_size,
                sha256=digest,
                executable=bool(st.st_mode & 0o111),
            )
        )
    return found
