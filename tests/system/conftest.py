"""Fixtures that start a real supervisor on loopback with its own registry."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import SupervisorProcess, free_port

pytestmark = pytest.mark.system


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """An empty registry folder."""
    path = tmp_path / "registry"
    path.mkdir()
    return path


@pytest.fixture
def write_entry(registry: Path) -> Callable[..., Path]:
    """Write a file into the registry (executable when asked)."""

    def write(name: str, text: str, *, executable: bool = False) -> Path:
        path = registry / name
        path.write_text(text)
        if executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    return write


@pytest.fixture
def start_supervisor(tmp_path: Path, registry: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Start supervisors (stopped, and checked for leftovers, at teardown)."""
    started: list[SupervisorProcess] = []

    def start(
        *extra: str, token: str | None = None, state_dir: Path | None = None
    ) -> SupervisorProcess:
        sup = SupervisorProcess(
            registry=registry,
            state_dir=state_dir or tmp_path / "state",
            extra_args=list(extra),
            token=token,
        )
        started.append(sup)
        return sup.start()

    yield start
    for sup in started:
        sup.stop()


def shell(body: str) -> str:
    """A POSIX shell script."""
    return "#!/bin/sh\n" + body.strip() + "\n"


def serve_argv(registry: Path, state_dir: Path, port: int) -> list[str]:
    """The command line of ``pipevisor serve`` on 127.0.0.1:``port``."""
    return [
        sys.executable,
        "-m",
        "supervisor.cli",
        "serve",
        "--registry",
        str(registry),
        "--state-dir",
        str(state_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def serve_once(registry: Path, state_dir: Path) -> subprocess.CompletedProcess[str]:
    """``pipevisor serve`` run to its end (one that must refuse to start), its output kept."""
    return subprocess.run(
        serve_argv(registry, state_dir, free_port()), capture_output=True, text=True, timeout=30
    )
