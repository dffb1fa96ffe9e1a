"""A cluster worker's registration with its manager: told at start, and again every so often.

The manager also polls every node's health; registering again lets a manager that restarted
learn its nodes without a config file listing them.
"""

from __future__ import annotations

import asyncio

import httpx
import structlog

from . import __version__

__all__ = ["REGISTER_INTERVAL", "register_forever"]

log = structlog.get_logger(__name__)

REGISTER_INTERVAL = 30.0
"""Seconds between two registrations (a failed one is retried after one second): the manager
checks its nodes every second anyway; this only tells a manager that restarted."""


async def register_forever(
    manager: str,
    name: str,
    url: str,
    token: str | None,
    *,
    interval: float = REGISTER_INTERVAL,
) -> None:
    """POST ``{name, url}`` to the manager's ``/api/v1/cluster/nodes`` until cancelled."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"name": name, "url": url, "version": __version__}
    registered = False
    async with httpx.AsyncClient(base_url=manager, headers=headers, timeout=5.0) as client:
        while True:
            try:
                answer = await client.post("/api/v1/cluster/nodes", json=body)
                ok = answer.status_code < 300
                if not ok:
                    reason = answer.text[:300]
            except httpx.HTTPError as exc:
                ok, reason = False, f"{type(exc).__name__}: {exc}"
            if ok and not registered:
                log.info("node_registered", manager=manager, node=name, url=url)
            elif not ok and registered:
                log.warning("node_registration_failed", manager=manager, reason=reason)
            elif not ok:
                log.info("node_registration_pending", manager=manager, reason=reason)
            registered = ok
            await asyncio.sleep(interval if ok else 1.0)
