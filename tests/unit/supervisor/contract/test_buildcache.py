"""buildcache: cffi modules compiled once into a keyed cache folder, shared by processes."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.contract.buildcache import EXT_SUFFIX, BuildError, CffiModule, cache_key

CDEF = "int twice(int x);"
SOURCE = '#include "twice.h"\nint twice(int x) { return TWICE(x); }\n'


@pytest.fixture
def headers(tmp_path: Path) -> Path:
    """A folder with ``twice.h``, the header SOURCE includes."""
    folder = tmp_path / "include"
    folder.mkdir()
    (folder / "twice.h").write_text("#define TWICE(x) (2 * (x))\n")
    return folder


def twice(headers: Path, source: str = SOURCE, **changes: object) -> CffiModule:
    fields: dict[str, object] = {
        "name": "twice",
        "module": "_test_buildcache_twice",
        "cdef": CDEF,
        "source": source,
        "label": "twice.c",
        "flags": ("-O1", "-Wall"),
        "include_dirs": (headers,),
        "depends": (headers / "twice.h",),
    }
    fields.update(changes)
    return CffiModule(**fields)  # type: ignore[arg-type]


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_a_module_is_built_once_into_its_keyed_folder(tmp_path: Path, headers: Path) -> None:
    """The first load compiles into <root>/<name>-<key>/; the next one imports that build."""
    root = tmp_path / "cache"
    build = twice(headers)
    assert not build.is_built(root)
    module = build.load(root)
    assert module.lib.twice(21) == 42
    assert entries(root) == [f"twice-{build.key}"]
    assert build.path(root) == root / f"twice-{build.key}" / f"{build.module_name}{EXT_SUFFIX}"
    assert build.module_name == f"_test_buildcache_twice_{build.key}"
    assert entries(build.folder(root)) == [build.path(root).name]  # nothing but the module
    built_at = build.path(root).stat().st_mtime_ns

    again = twice(headers)
    assert again.is_built(root)
    assert again.load(root).lib.twice(5) == 10
    assert build.path(root).stat().st_mtime_ns == built_at  # not compiled again


def test_the_key_follows_every_input(tmp_path: Path, headers: Path) -> None:
    """The C text, a depended-on file, the cdef and the flags each change the key; nothing else."""
    key = twice(headers).key
    assert len(key) == 20
    assert twice(headers).key == key
    assert twice(headers, label="other name", name="other").key == key
    assert twice(headers, SOURCE + "/* edited */\n").key != key
    assert twice(headers, cdef=CDEF + "\n").key != key
    assert twice(headers, flags=("-O2", "-Wall")).key != key
    (headers / "twice.h").write_text("#define TWICE(x) ((x) + (x))\n")
    assert twice(headers).key != key


def test_cache_key_hashes_the_parts_apart_and_the_interpreter() -> None:
    import cffi

    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("a") == cache_key("a")
    assert len(cache_key()) == 20
    assert cffi.__version__  # part of every key: another cffi never loads a stale build


def test_a_compile_error_quotes_the_compiler_and_leaves_nothing(
    tmp_path: Path, headers: Path
) -> None:
    root = tmp_path / "cache"
    broken = twice(headers, '#include "twice.h"\nint twice(int x) { return nope; }\n')
    with pytest.raises(BuildError) as failure:
        broken.load(root)
    message = str(failure.value)
    assert message.startswith("cannot compile twice.c:\n")
    assert "nope" in message
    assert "error" in message
    assert entries(root) == []  # no half-built module, no temporary folder


def test_without_a_compiler_the_error_says_so(
    tmp_path: Path, headers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    root = tmp_path / "cache"
    with pytest.raises(BuildError, match=r"cannot compile twice\.c") as failure:
        twice(headers).load(root)
    assert "no-such-cc" in str(failure.value)
    assert entries(root) == []


def test_warnings_of_a_successful_build_are_logged(
    tmp_path: Path, headers: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The compiler's words reach the given logger; its stderr is not the process's."""
    noisy = '#include "twice.h"\nint twice(int x) { int unused; return TWICE(x); }\n'
    log = logging.getLogger("tests.buildcache")
    with caplog.at_level(logging.WARNING, logger="tests.buildcache"):
        module = twice(headers, noisy, log=log).load(tmp_path / "cache")
    assert module.lib.twice(1) == 2
    [record] = [r for r in caplog.records if r.name == "tests.buildcache"]
    assert record.getMessage().startswith("twice.c compiled with warnings:\n")
    assert "unused" in record.getMessage()


def test_building_again_over_a_finished_build_is_no_error(tmp_path: Path, headers: Path) -> None:
    """The loser of a race finds the winner's folder in place and keeps it."""
    root = tmp_path / "cache"
    build = twice(headers)
    assert build.build(root) == build.folder(root)
    assert build.build(root) == build.folder(root)
    assert entries(root) == [build.folder(root).name]
    assert build.load(root).lib.twice(3) == 6


LOAD = """
import sys
from pathlib import Path
from supervisor.contract.buildcache import CffiModule
headers = Path(sys.argv[2])
build = CffiModule(
    name="twice", module="_test_buildcache_twice", cdef=sys.argv[3], source=sys.argv[4],
    label="twice.c", flags=("-O1", "-Wall"), include_dirs=(headers,),
    depends=(headers / "twice.h",),
)
print(build.load(Path(sys.argv[1])).lib.twice(4), build.key)
"""


def test_processes_building_at_once_share_one_build(tmp_path: Path, headers: Path) -> None:
    """Concurrent first builds all succeed; one keyed folder stays, no temporary is left."""
    root = tmp_path / "cache"
    args = [str(root), str(headers), CDEF, SOURCE]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, *args], stdout=subprocess.PIPE, text=True, cwd=tmp_path
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=100)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    key = twice(headers).key
    assert outputs == [["8", key]] * 3
    assert entries(root) == [f"twice-{key}"]
    assert len(list((root / f"twice-{key}").iterdir())) == 1
