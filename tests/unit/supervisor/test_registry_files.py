"""Registry file operations: name validation, size limit, atomic writes, read and delete."""

from __future__ import annotations

import json
import os
import re
import stat
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor import registry_files
from supervisor.nodeapi.errors import (
    ConflictError,
    EntryNotFoundError,
    InvalidEntryError,
    InvalidNameError,
    PayloadTooLargeError,
)
from supervisor.nodeapi.models import EntryKind
from supervisor.registry import Registry


@pytest.fixture
def registry(root: Path) -> Registry:
    return Registry(root, max_upload_bytes=1000)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(root: Path) -> list[str]:
    return sorted(os.listdir(root))


BAD_NAMES = [
    ("..", "'..' is not allowed"),
    ("../x.py", "without '/'"),
    ("/etc/passwd", "without '/'"),
    ("a/b", "without '/'"),
    ("a\\b.py", "without '/' or '\\'"),
    (".hidden", "hidden"),
    ("", "empty"),
    ("a" * 129, "129 characters long, the limit is 128"),
    ("a..b.py", "'..' is not allowed"),
    ("-rf", "must start with a letter or digit"),
    ("my beam.py", "only letters, digits"),
    ("nul\x00.py", "only letters, digits"),
    ("CON", "reserved"),
    ("aux.py", "reserved"),
]


@pytest.mark.parametrize(("name", "why"), BAD_NAMES)
def test_bad_names_are_refused_by_every_operation(
    root: Path, registry: Registry, name: str, why: str
):
    """Write, read and delete refuse a name that is not one plain file name, quoting it."""
    for operation in (
        lambda: registry.write_file(name, b"x = 1\n"),
        lambda: registry.read_file(name),
        lambda: registry.delete_file(name),
    ):
        with pytest.raises(InvalidNameError) as info:
            operation()
        assert repr(name) in info.value.message
        assert why in info.value.message
    assert listing(root) == []


def test_longest_allowed_name_is_accepted(root: Path, registry: Registry):
    """A 128-character name is fine."""
    name = "a" * 125 + ".py"
    registry.write_file(name, b"")
    assert listing(root) == [name]


def test_symlink_pointing_outside_the_registry_is_refused(
    tmp_path: Path, root: Path, registry: Registry
):
    """A link inside the registry to a file outside it can be neither read nor written."""
    secret = tmp_path / "secret.py"
    secret.write_text("password = 1\n")
    (root / "link.py").symlink_to(secret)
    for operation in (
        lambda: registry.read_file("link.py"),
        lambda: registry.write_file("link.py", b"overwritten"),
        lambda: registry.delete_file("link.py"),
    ):
        with pytest.raises(
            InvalidNameError, match=re.escape("'link.py': it points outside the registry")
        ):
            operation()
    assert secret.read_text() == "password = 1\n"


def test_symlink_inside_the_registry_is_followed(root: Path, registry: Registry):
    """A link to another registry file reads that file."""
    (root / "real.py").write_text("x = 1\n")
    (root / "alias.py").symlink_to(root / "real.py")
    assert registry.read_file("alias.py") == b"x = 1\n"


def test_upload_over_the_limit_is_refused_quoting_size_and_limit(root: Path, registry: Registry):
    """More than max_upload_bytes raises PayloadTooLargeError and writes nothing."""
    with pytest.raises(PayloadTooLargeError, match=r"1001 bytes, more than .* 1000 bytes"):
        registry.write_file("big.py", b"#" * 1001)
    assert listing(root) == []
    registry.write_file("big.py", b"#" * 1000)
    assert listing(root) == ["big.py"]


def test_write_creates_the_file_and_returns_its_entry(root: Path, registry: Registry):
    """An upload lands in the folder with mode 0o644, is scanned, and leaves no temp file."""
    entry = registry.write_file("beam.py", b'"""Beam."""\n')
    assert entry is not None
    assert (entry.name, entry.kind, entry.description) == ("beam", EntryKind.SCRIPT, "Beam.")
    assert registry.get("beam") == entry
    assert listing(root) == ["beam.py"]
    assert (root / "beam.py").read_bytes() == b'"""Beam."""\n'
    assert mode(root / "beam.py") == 0o644


def test_executable_upload_is_an_executable_entry(root: Path, registry: Registry):
    """executable=True writes mode 0o755 and the file becomes an executable entry."""
    entry = registry.write_file("tool", b"#!/bin/sh\n", executable=True)
    assert entry is not None
    assert entry.kind is EntryKind.EXECUTABLE
    assert mode(root / "tool") == 0o755


def test_upload_of_an_ignored_file_returns_none(root: Path, registry: Registry):
    """A plain non-executable file is stored but defines no entry."""
    assert registry.write_file("notes.txt", b"hello") is None
    assert listing(root) == ["notes.txt"]
    assert registry.entries() == []


def test_upload_of_a_script_returns_the_config_that_shadows_it(registry: Registry):
    """Uploading beam.py under an existing beam.json returns the entry 'beam', the JSON."""
    registry.write_file("beam.json", json.dumps({"program": "beam.py"}).encode())
    assert not registry.get("beam").valid
    entry = registry.write_file("beam.py", b"")
    assert entry is not None
    assert entry.kind is EntryKind.CONFIG
    assert entry.valid


def test_overwrite_keeps_the_executable_bit(root: Path, registry: Registry):
    """Replacing an executable without executable=True keeps it executable."""
    registry.write_file("tool", b"#!/bin/sh\necho 1\n", executable=True)
    registry.write_file("tool", b"#!/bin/sh\necho 2\n")
    assert mode(root / "tool") == 0o755
    assert (root / "tool").read_bytes() == b"#!/bin/sh\necho 2\n"
    assert registry.get("tool").kind is EntryKind.EXECUTABLE


def test_invalid_json_upload_is_refused_and_nothing_written(root: Path, registry: Registry):
    """A JSON that is not an EntrySpec raises InvalidEntryError with field and reason."""
    good = json.dumps({"program": "beam.py"}).encode()
    registry.write_file("beam.json", good)
    bad = json.dumps({"program": "beam.py", "parameters": 3}).encode()
    with pytest.raises(InvalidEntryError) as info:
        registry.write_file("beam.json", bad)
    assert info.value.message == "beam.json: parameters: Input should be a valid dictionary"
    with pytest.raises(InvalidEntryError, match=re.escape("new.json: not valid JSON")):
        registry.write_file("new.json", b"{")
    assert listing(root) == ["beam.json"]
    assert (root / "beam.json").read_bytes() == good


def test_json_upload_with_a_program_path_is_refused(root: Path, registry: Registry):
    """A JSON whose program leaves the registry is refused before it is written."""
    with pytest.raises(
        InvalidEntryError, match=re.escape("program: '../evil.py' must be the name of a file")
    ):
        registry.write_file("evil.json", json.dumps({"program": "../evil.py"}).encode())
    assert listing(root) == []


def test_json_naming_a_program_not_yet_uploaded_is_stored_as_invalid(registry: Registry):
    """A valid EntrySpec naming a missing program is written; the entry says what is missing."""
    entry = registry.write_file("beam.json", json.dumps({"program": "later.py"}).encode())
    assert entry is not None
    assert entry.error == "beam.json: program 'later.py' not found in the registry"


def test_json_naming_an_unknown_builtin_is_stored_as_invalid(registry: Registry):
    """A builtin missing from the table (here a library of the builtins) is refused at load."""
    entry = registry.write_file("w.json", json.dumps({"builtin": "h5writer"}).encode())
    assert entry is not None
    assert not entry.valid
    known = ", ".join(registry_files.builtin_names())
    assert entry.error == f"w.json: unknown builtin 'h5writer'; known builtins: {known}"


def test_builtin_names_are_the_table_of_builtins():
    """The names come from the pipevisor.builtins entry points, the table the runner reads."""
    names = registry_files.builtin_names()
    group = entry_points(group=registry_files.BUILTINS_GROUP)
    assert names == tuple(sorted(ep.name for ep in group))
    assert {"beam_metrics", "camera_simulation", "h5_writer"} <= set(names)
    assert registry_files.missing_builtin("h5_writer") is None


def test_failed_write_leaves_no_temp_file_and_the_old_content(
    root: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
):
    """A write that fails half-way (disk full) removes its temp file and keeps the old file."""
    registry.write_file("beam.py", b"old = 1\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        registry.write_file("beam.py", b"new = 2\n")
    assert listing(root) == ["beam.py"]
    assert (root / "beam.py").read_bytes() == b"old = 1\n"


def test_temp_file_is_hidden_and_in_the_registry_folder(
    root: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
):
    """The temp file is a hidden .upload-* next to the target, so the rename is atomic."""
    seen: list[str] = []
    replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(src)
        assert listing(root) == sorted(["beam.py", Path(src).name])
        replace(src, dst)

    registry.write_file("beam.py", b"old = 1\n")
    monkeypatch.setattr(os, "replace", spy)
    registry.write_file("beam.py", b"new = 2\n")
    [tmp] = seen
    assert Path(tmp).parent == root
    assert Path(tmp).name.startswith(registry_files.TEMP_PREFIX)
    assert listing(root) == ["beam.py"]


def test_write_over_a_folder_is_a_conflict(root: Path, registry: Registry):
    """A name taken by a folder raises ConflictError and leaves no temp file."""
    (root / "data").mkdir()
    with pytest.raises(ConflictError, match="'data' is a folder"):
        registry.write_file("data", b"x")
    assert listing(root) == ["data"]


def test_read_file_returns_the_content(registry: Registry):
    """read_file gives back the bytes written."""
    registry.write_file("beam.py", b"x = 1\n")
    assert registry.read_file("beam.py") == b"x = 1\n"


def test_read_of_a_missing_file_raises_not_found(root: Path, registry: Registry):
    """Reading a missing file or a folder raises EntryNotFoundError quoting the name."""
    (root / "data").mkdir()
    for name in ("nope.py", "data"):
        with pytest.raises(EntryNotFoundError, match=repr(name)):
            registry.read_file(name)


def test_delete_removes_the_file_and_its_entry(root: Path, registry: Registry):
    """delete_file removes the file and the entry disappears at once."""
    registry.write_file("beam.py", b"")
    registry.delete_file("beam.py")
    assert listing(root) == []
    with pytest.raises(EntryNotFoundError):
        registry.get("beam")


def test_delete_of_a_missing_file_raises_not_found(registry: Registry):
    """Deleting a file that is not there raises EntryNotFoundError."""
    with pytest.raises(EntryNotFoundError, match=re.escape("'nope.py'")):
        registry.delete_file("nope.py")


def test_write_and_delete_are_logged(registry: Registry):
    """Uploads and deletes are structlog events with the file name."""
    with capture_logs() as logs:
        registry.write_file("beam.py", b"x = 1\n")
        registry.delete_file("beam.py")
    events = [(e["event"], e.get("file")) for e in logs]
    assert ("registry_file_written", "beam.py") in events
    assert ("registry_file_deleted", "beam.py") in events


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"program": "a.py", "parameters": {"x": NaN}}', "n.json: parameters.x: NaN is not"),
        (b'{"program": "a.py", "description": "\\ud800"}', "n.json: description: the string"),
        (b'{"program": "a.py", "restart": {"stop_grace": 1e300}}', "n.json: restart.stop_grace"),
        (b'{"program": "a.py", "stall_timeout": 1e9}', "n.json: stall_timeout"),
        (b'{"program": "a.py", "permanent": "yes"}', "n.json: permanent: Input should be a valid"),
        (b'{"program": "a.py", "x": "\xff"}', "n.json: not valid UTF-8 at byte"),
    ],
)
def test_json_upload_with_a_value_no_entry_may_hold_is_refused_quoting_it(
    root: Path, registry: Registry, content: bytes, why: str
):
    """NaN, a lone surrogate, an out-of-range duration, a non-boolean: InvalidEntryError."""
    with pytest.raises(InvalidEntryError) as info:
        registry.write_file("n.json", content)
    assert info.value.message.startswith(why)
    assert listing(root) == []


def test_a_json_entry_with_nan_on_disk_is_listed_invalid_with_the_reason(
    root: Path, registry: Registry
):
    """An entry file dropped into the folder with NaN is an invalid entry saying why."""
    (root / "a.py").write_text("print(1)\n")
    (root / "n.json").write_bytes(b'{"program": "a.py", "restart": {"backoff_initial": Infinity}}')
    registry.scan()
    entry = registry.get("n")
    assert not entry.valid
    assert entry.error is not None
    assert entry.error.startswith("n.json: restart.backoff_initial: Infinity is not a JSON number")
