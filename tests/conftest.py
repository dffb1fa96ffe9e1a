"""Suite-wide guards: no test leaves a child process behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import settings


@pytest.fixture(autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a child process of the test runner alive."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [p for p in me.children(recursive=True) if p.pid not in before]
        alive = []
        for p in leaked:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    assert not alive, f"test left processes behind: {[(p.pid, p.cmdline()) for p in alive]}"


# Fuzz tests explore new examples on developers' machines; CI replays a fixed set so a landing
# never depends on luck (a failure found locally becomes a regular test).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
