"""Helpers shared by the tests: those of ``supervisor.testing``, and running a coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from supervisor.testing import (
    SupervisorProcess,
    free_port,
    kill_tree,
    pid_alive,
    port_free,
    wait_for,
    wait_until,
)

T = TypeVar("T")

__all__ = [
    "SupervisorProcess",
    "free_port",
    "kill_tree",
    "pid_alive",
    "port_free",
    "run",
    "wait_for",
    "wait_until",
]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
