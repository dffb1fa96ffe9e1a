"""The registry: entry kinds, shadowing, broken entries, scanning and watching."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor import registry_files
from supervisor.nodeapi.errors import EntryNotFoundError, InvalidConfigError
from supervisor.nodeapi.models import EntryKind, RegistryChanges
from supervisor.registry import Registry

RUNNER = ["-u", "-m", "runners.python"]


@pytest.fixture
def registry(root: Path) -> Registry:
    return Registry(root, python="/opt/py")


def put(root: Path, name: str, content: str | dict = "", *, executable: bool = False) -> Path:
    path = root / name
    path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    path.chmod(0o755 if executable else 0o644)
    return path


def bump(path: Path, content: str) -> None:
    """Rewrite a file and move its mtime forward, so the change shows even on coarse clocks."""
    path.write_text(content)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_executable_without_suffix_is_named_by_its_full_name(root: Path, registry: Registry):
    """An executable file of any language is an entry run as [path]."""
    put(root, "cam-viewer", "#!/bin/sh\n", executable=True)
    entry = registry.get("cam-viewer")
    assert entry.kind is EntryKind.EXECUTABLE
    assert entry.valid
    assert entry.error is None
    assert entry.argv == [str(root / "cam-viewer")]
    assert entry.spec is not None
    assert entry.spec.program == "cam-viewer"


def test_executable_with_suffix_is_named_by_its_stem(root: Path, registry: Registry):
    """run.sh is the entry 'run'."""
    put(root, "run.sh", "#!/bin/sh\n", executable=True)
    assert [e.name for e in registry.entries()] == ["run"]
    assert registry.get("run").filename == "run.sh"


def test_script_runs_under_the_python_runner_without_x_bit(root: Path, registry: Registry):
    """A *.py script, executable or not, runs as python -u -m runners.python --script path."""
    put(root, "beam.py", '"""Beam metrics of a camera.\n\nMore text."""\n')
    entry = registry.get("beam")
    assert entry.kind is EntryKind.SCRIPT
    assert entry.valid
    assert entry.argv == ["/opt/py", *RUNNER, "--script", str(root / "beam.py")]
    assert entry.description == "Beam metrics of a camera."
    assert entry.spec is not None
    assert entry.spec.program == "beam.py"


def test_python_defaults_to_the_supervisors_interpreter(root: Path):
    """Without python=, scripts run under sys.executable."""
    put(root, "beam.py")
    assert Registry(root).get("beam").argv == [
        sys.executable,
        *RUNNER,
        "--script",
        str(root / "beam.py"),
    ]


def test_config_naming_a_script_runs_it_with_args(root: Path, registry: Registry):
    """A JSON naming a .py runs the script with the JSON's args and keeps its parameters."""
    put(root, "lib.py")
    put(
        root,
        "beam.json",
        {
            "program": "lib.py",
            "args": ["--fast"],
            "parameters": {"roi": [1, 2]},
            "description": "B",
        },
    )
    entry = registry.get("beam")
    assert entry.kind is EntryKind.CONFIG
    assert entry.valid, entry.error
    assert entry.argv == ["/opt/py", *RUNNER, "--script", str(root / "lib.py"), "--fast"]
    assert entry.spec is not None
    assert entry.spec.parameters == {"roi": [1, 2]}
    assert entry.description == "B"


def test_config_naming_an_executable_runs_it_with_args(root: Path, registry: Registry):
    """A JSON naming an executable runs [path, *args]."""
    put(root, "tool", "#!/bin/sh\n", executable=True)
    put(root, "fast.json", {"program": "tool", "args": ["-v"]})
    assert registry.get("fast").argv == [str(root / "tool"), "-v"]


def test_config_naming_a_builtin_runs_it_by_name(root: Path, registry: Registry):
    """A JSON naming a builtin of the table runs the runner with --builtin NAME and its args."""
    put(root, "sim.json", {"builtin": "camera_simulation", "args": ["-x"]})
    entry = registry.get("sim")
    assert entry.valid, entry.error
    assert entry.argv == ["/opt/py", *RUNNER, "--builtin", "camera_simulation", "-x"]


def test_builtins_are_checked_without_importing_any(root: Path):
    """The supervisor reads the table of builtins from metadata: no builtin module is imported."""
    put(root, "sim.json", {"builtin": "camera_simulation"})
    put(root, "bad.json", {"builtin": "h5writer"})
    check = (
        "import sys; from pathlib import Path; from supervisor.registry import Registry; "
        f"r = Registry(Path({str(root)!r})); "
        "assert r.get('sim').valid and not r.get('bad').valid; "
        "print(sorted(m for m in sys.modules if m.startswith('builtin_pipelines')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"  # the lines before: the registry's log


def test_unknown_builtin_is_invalid_and_names_the_known_ones(root: Path, registry: Registry):
    """A JSON naming a builtin that is not in the table is listed with the builtins that are."""
    put(root, "sim.json", {"builtin": "no_such_thing"})
    entry = registry.get("sim")
    assert not entry.valid
    assert entry.argv is None
    known = ", ".join(registry_files.builtin_names())
    assert entry.error == f"sim.json: unknown builtin 'no_such_thing'; known builtins: {known}"
    assert known.startswith("beam_metrics, camera_bsread, ")


@pytest.mark.parametrize("name", ["h5writer", "lib", "camera_geometry", "ca_camera"])
def test_a_library_of_the_builtins_is_not_a_builtin(root: Path, registry: Registry, name: str):
    """Importable helpers of the builtins (builtin_pipelines.lib) are refused when loaded."""
    put(root, "writer.json", {"builtin": name})
    entry = registry.get("writer")
    assert not entry.valid
    assert entry.argv is None
    assert entry.error is not None
    assert entry.error.startswith(f"writer.json: unknown builtin {name!r}; known builtins: ")
    assert "h5_writer" in entry.error


def test_config_shadows_its_same_stem_script(root: Path, registry: Registry):
    """beam.json and beam.py make one entry 'beam': the JSON."""
    put(root, "beam.py")
    put(root, "beam.json", {"program": "beam.py"})
    [entry] = registry.entries()
    assert entry.kind is EntryKind.CONFIG
    assert entry.filename == "beam.json"


def test_script_shadows_same_stem_executable(root: Path, registry: Registry):
    """beam.py wins over an executable 'beam'."""
    put(root, "beam", "#!/bin/sh\n", executable=True)
    put(root, "beam.py")
    [entry] = registry.entries()
    assert entry.filename == "beam.py"


def test_executable_shadows_same_stem_c_source(root: Path, registry: Registry):
    """A native program built from beam.c is the entry 'beam', not the source as an extension."""
    put(root, "beam.c", "int main(void) { return 0; }\n")
    put(root, "beam", "", executable=True)
    [entry] = registry.entries()
    assert entry.kind is EntryKind.EXECUTABLE
    assert entry.valid


@pytest.mark.parametrize("filename", ["beam.c", "libbeam.so"])
def test_c_sources_and_shared_libraries_run_as_extensions_of_the_python_runner(
    root: Path, registry: Registry, filename: str
):
    """.c and .so files are C extensions: the Python runner compiles or loads them."""
    put(root, filename)
    [entry] = registry.entries()
    assert entry.kind is EntryKind.EXTENSION
    assert entry.valid
    assert entry.argv is not None
    assert entry.argv[-2:] == ["--extension", str(root / filename)]
    assert entry.argv[1:4] == ["-u", "-m", "runners.python"]


def test_a_config_can_name_a_c_extension_as_its_program(root: Path, registry: Registry):
    """{"program": "proj.c"} runs the extension with the config's defaults."""
    put(root, "proj.c", "")
    put(root, "cam_proj.json", '{"program": "proj.c", "parameters": {"threshold": 5}}')
    entry = registry.get("cam_proj")
    assert entry.valid, entry.error
    assert entry.argv is not None
    assert entry.argv[-2:] == ["--extension", str(root / "proj.c")]


def test_other_files_are_ignored(root: Path, registry: Registry):
    """Plain files, hidden files, folders, __pycache__ and *.pyc are not entries."""
    put(root, "README.md", "# notes")
    put(root, ".hidden", "", executable=True)
    put(root, ".secret.py")
    put(root, "old.pyc")
    (root / "__pycache__").mkdir()
    (root / "subfolder").mkdir()
    (root / "subfolder").chmod(0o755)
    assert registry.entries() == []


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"program": "beam.py",', "beam.json: not valid JSON: Expecting"),
        (
            {"program": "beam.py", "parameters": 3},
            "beam.json: parameters: Input should be a valid dictionary",
        ),
        ({"prgram": "beam.py"}, "beam.json: prgram: Extra inputs are not permitted"),
        ({}, "beam.json: an entry needs exactly one of 'program' or 'builtin'"),
        ({"program": "../beam.py"}, "beam.json: program: '../beam.py' must be the name of a file"),
        ({"builtin": "Camera"}, "beam.json: builtin: 'Camera' is not a builtin name"),
        ({"program": "lib.py"}, "beam.json: program 'lib.py' not found in the registry"),
        ({"program": "notes.txt"}, "beam.json: program 'notes.txt' is neither a *.py script"),
        ({"program": "other.json"}, "beam.json: program 'other.json' is a JSON config"),
    ],
)
def test_broken_config_is_listed_with_its_error_beside_good_entries(
    root: Path, registry: Registry, content: str | dict, error: str
):
    """A broken JSON is an invalid entry with a readable error; the other entries stay valid."""
    put(root, "beam.py")
    put(root, "notes.txt", "text")
    put(root, "other.json", {"program": "beam.py"})
    put(root, "fast.c")
    put(root, "beam.json", content)
    entry = registry.get("beam")
    assert not entry.valid
    assert entry.argv is None
    assert entry.error is not None
    assert entry.error.startswith(error), entry.error
    assert registry.get("other").valid


def test_file_vanishing_during_the_scan_is_listed_invalid(root: Path, registry: Registry):
    """A listed file that cannot be stat'ed any more (a dangling link) is invalid, not fatal."""
    (root / "ghost.json").symlink_to(root / "gone.json")
    entry = registry.get("ghost")
    assert not entry.valid
    assert entry.error == "ghost.json: cannot be read: No such file or directory"


def test_get_of_an_unknown_entry_raises_not_found(registry: Registry):
    """get() of a name not in the registry raises EntryNotFoundError quoting the name."""
    with pytest.raises(EntryNotFoundError, match="'nope'"):
        registry.get("nope")


def test_entries_are_sorted_by_name(root: Path, registry: Registry):
    """entries() lists by name, whatever the order on disk."""
    for name in ["zeta.py", "alpha.py", "mid.json"]:
        put(root, name, {"program": "alpha.py"} if name.endswith(".json") else "")
    assert [e.name for e in registry.entries()] == ["alpha", "mid", "zeta"]


def test_missing_registry_folder_raises_invalid_config(tmp_path: Path):
    """Scanning a folder that does not exist raises InvalidConfigError naming it."""
    with pytest.raises(InvalidConfigError, match="nowhere"):
        Registry(tmp_path / "nowhere").scan()


def test_scan_reports_added_changed_and_removed(root: Path, registry: Registry):
    """Each scan returns the entry names added, changed and removed since the previous one."""
    assert not registry.scan()
    put(root, "a.py")
    script = put(root, "b.py")
    assert registry.scan() == RegistryChanges(added=["a", "b"])
    bump(script, "x = 1\n")
    (root / "a.py").unlink()
    put(root, "c", "", executable=True)
    assert registry.scan() == RegistryChanges(added=["c"], changed=["b"], removed=["a"])
    assert not registry.scan()


def test_chmod_plus_x_is_a_change(root: Path, registry: Registry):
    """Making a plain file executable adds the entry; removing the bit removes it."""
    tool = put(root, "tool", "#!/bin/sh\n")
    assert not registry.scan()
    tool.chmod(0o755)
    assert registry.scan() == RegistryChanges(added=["tool"])
    tool.chmod(0o644)
    assert registry.scan() == RegistryChanges(removed=["tool"])


def test_unchanged_config_is_not_parsed_again(
    root: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
):
    """Rescans re-read a JSON only when its own file changed."""
    parse = registry_files.parse_entry_spec
    calls: list[str] = []

    def counting(filename: str, data: bytes):
        calls.append(filename)
        return parse(filename, data)

    monkeypatch.setattr(registry_files, "parse_entry_spec", counting)
    put(root, "beam.py")
    config = put(root, "beam2.json", {"program": "beam.py"})
    registry.scan()
    assert not registry.scan()
    put(root, "other.py")
    assert registry.scan() == RegistryChanges(added=["other"])
    assert calls == ["beam2.json"]
    bump(config, json.dumps({"program": "other.py"}))
    assert registry.scan() == RegistryChanges(changed=["beam2"])
    assert calls == ["beam2.json", "beam2.json"]
    assert registry.get("beam2").argv[-1] == str(root / "other.py")


def test_changed_or_removed_program_changes_its_config(root: Path, registry: Registry):
    """Editing or deleting the program a JSON names reports the JSON's entry as changed."""
    lib = put(root, "lib.py")
    put(root, "beam.json", {"program": "lib.py"})
    registry.scan()
    bump(lib, "y = 2\n")
    assert registry.scan() == RegistryChanges(changed=["beam", "lib"])
    lib.unlink()
    assert registry.scan() == RegistryChanges(changed=["beam"], removed=["lib"])
    assert registry.get("beam").error == "beam.json: program 'lib.py' not found in the registry"
    put(root, "lib.py")
    assert registry.scan() == RegistryChanges(added=["lib"], changed=["beam"])
    assert registry.get("beam").valid


def test_scan_logs_added_removed_and_invalid_entries(root: Path, registry: Registry):
    """Added, removed and invalid entries are structlog events naming the entry."""
    registry.scan()
    put(root, "good.py")
    put(root, "bad.json", "{")
    with capture_logs() as logs:
        registry.scan()
        (root / "good.py").unlink()
        registry.scan()
    events = [(e["event"], e["entry"]) for e in logs]
    assert ("registry_entry_added", "good") in events
    assert ("registry_entry_added", "bad") in events
    assert ("registry_entry_invalid", "bad") in events
    assert ("registry_entry_removed", "good") in events
    [invalid] = [e for e in logs if e["event"] == "registry_entry_invalid"]
    assert invalid["log_level"] == "warning"
    assert invalid["error"].startswith("bad.json: not valid JSON")


async def _watch_until(
    registry: Registry, act, accept, *, on_change=None, asynchronous: bool = False
) -> list[RegistryChanges]:
    """Run watch(), call act(), wait (2 s at most) until accept(seen); return the changes seen."""
    seen: list[RegistryChanges] = []
    done = asyncio.Event()

    def record(changes: RegistryChanges) -> None:
        seen.append(changes)
        if on_change is not None:
            on_change(changes)
        if accept(seen):
            done.set()

    async def record_async(changes: RegistryChanges) -> None:
        await asyncio.sleep(0)
        record(changes)

    callback = record_async if asynchronous else record
    task = asyncio.create_task(registry.watch(callback, interval=0.02))
    try:
        await asyncio.sleep(0)
        act()
        await asyncio.wait_for(done.wait(), 2.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return seen


def test_watch_picks_up_a_new_file_within_two_seconds(root: Path, registry: Registry):
    """A file dropped into the folder reaches an async on_change without a restart."""
    registry.scan()
    seen = asyncio.run(
        _watch_until(
            registry,
            lambda: put(root, "new.py"),
            lambda seen: any("new" in c.added for c in seen),
            asynchronous=True,
        )
    )
    assert RegistryChanges(added=["new"]) in seen


def test_watch_delivers_changes_made_through_write_file(registry: Registry):
    """An upload scans at once; the watcher still passes the change on to a plain on_change."""
    registry.scan()
    seen = asyncio.run(
        _watch_until(
            registry,
            lambda: registry.write_file("up.py", b"x = 1\n"),
            lambda seen: any("up" in c.added for c in seen),
        )
    )
    assert RegistryChanges(added=["up"]) in seen


def test_watch_logs_failing_scans_once_and_goes_on(
    root: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
):
    """Scan errors are logged once while they persist; the loop recovers and reports changes."""
    real_scan = registry.scan
    attempts: list[int] = []

    def flaky_scan() -> RegistryChanges:
        attempts.append(1)
        if len(attempts) <= 3:
            raise InvalidConfigError("registry folder is unmounted")
        return real_scan()

    monkeypatch.setattr(registry, "scan", flaky_scan)
    put(root, "late.py")
    with capture_logs() as logs:
        seen = asyncio.run(
            _watch_until(registry, lambda: None, lambda seen: any("late" in c.added for c in seen))
        )
    events = [e["event"] for e in logs]
    assert len(attempts) > 3
    assert events.count("registry_scan_failed") == 1
    assert events.count("registry_scan_recovered") == 1
    assert RegistryChanges(added=["late"]) in seen


def test_watch_survives_a_failing_callback(root: Path, registry: Registry):
    """An on_change that raises is logged and later changes are still delivered."""
    registry.scan()

    def act() -> None:
        put(root, "first.py")

    def explode_once(changes: RegistryChanges) -> None:
        if "first" in changes.added:
            put(root, "second.py")
            raise RuntimeError("handler bug")

    with capture_logs() as logs:
        seen = asyncio.run(
            _watch_until(
                registry,
                act,
                lambda seen: any("second" in c.added for c in seen),
                on_change=explode_once,
            )
        )
    assert any("second" in c.added for c in seen)
    assert "registry_on_change_failed" in [e["event"] for e in logs]


def test_the_file_list_gives_each_files_digest_and_execute_bit(root: Path) -> None:
    """What a cluster manager compares: plain files only, hidden ones and caches left out."""
    put(root, "cam.json", {"builtin": "camera_simulation"})
    put(root, "run.sh", "#!/bin/sh\nexit 0\n", executable=True)
    put(root, ".hidden", "x")
    (root / "__pycache__").mkdir()
    files = {f.filename: f for f in Registry(root).file_list()}
    assert set(files) == {"cam.json", "run.sh"}
    data = (root / "run.sh").read_bytes()
    assert files["run.sh"].sha256 == hashlib.sha256(data).hexdigest()
    assert (files["run.sh"].executable, files["cam.json"].executable) == (True, False)
    assert files["run.sh"].size == len(data)
