"""``python -m runners.c``: where the C headers and the library's sources are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runners.c import C_DIR, EXT_HEADER, HEADER
from runners.c.__main__ import main
from runners.python.extension import HEADER as RUNNER_HEADER


def test_the_folder_holds_the_headers_and_the_library_sources() -> None:
    assert HEADER == C_DIR / "pipevisor.h"
    assert EXT_HEADER == C_DIR / "pipevisor_ext.h"
    assert RUNNER_HEADER == EXT_HEADER  # the runner compiles extensions against this one
    for name in ("pipevisor.h", "pipevisor_ext.h", "Makefile", "src/internal.h", "passthrough.c"):
        assert (C_DIR / name).is_file(), name


def test_it_prints_the_folder_or_the_include_flag(capsys) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == f"{C_DIR}\n"
    assert main(["--cflags"]) == 0
    assert capsys.readouterr().out == f"-I{C_DIR}\n"


def test_it_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runners.c"],
        capture_output=True,
        text=True,
        check=True,
        cwd=C_DIR.parents[1],  # where this ``runners`` imports from, installed or not
        timeout=30,
    )
    assert Path(done.stdout.strip()) == C_DIR
