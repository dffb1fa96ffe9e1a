"""Waiting with a deadline: poll until something holds, fail with what was seen last."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for", "wait_until"]

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy, and return that.

    A probe that raises counts as not yet (the thing may not be up). At the deadline, raise
    ``AssertionError`` naming ``what`` and the last value (or exception) seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as exc:  # a probe may fail while the thing is not up yet
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; last seen: {last!r}"
            )
        time.sleep(interval)


async def wait_until(
    predicate: Callable[[], bool],
    what: Callable[[], object] = lambda: None,
    timeout: float = 10.0,
    interval: float = 0.002,
) -> None:
    """The async ``wait_for``: poll ``predicate`` on the running loop, letting other tasks run;
    at the deadline raise ``AssertionError`` showing ``what()``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s; last seen: {what()}")
        await asyncio.sleep(interval)
