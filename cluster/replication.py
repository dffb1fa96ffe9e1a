"""The manager's registry and backgrounds, copied to every node that is up.

The manager's folders are the truth: a file uploaded to the manager (or dropped into its
registry folder) is written on every node that is up, a deleted one deleted there, and a node
that comes up gets every registry file and the backgrounds it lacks before it takes instances.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import structlog

from supervisor.nodeapi.errors import InvalidConfigError, NotFoundError, SupervisorError
from supervisor.registry import Registry

if TYPE_CHECKING:
    from .manager import ClusterManager
    from .nodes import NodeState

__all__ = ["Replicator"]

log = structlog.get_logger(__name__)

SCAN_INTERVAL = 0.5
"""Seconds between two looks at the manager's folders."""

COPIES_AT_ONCE = 8
"""Files copied to one node at a time when it comes up."""


class _File(NamedTuple):
    mtime_ns: int
    size: int
    executable: bool


def _registry_files(root: Path) -> dict[str, _File]:
    """The registry's plain files, as the registry itself lists them."""
    files = {}
    try:
        entries = list(os.scandir(root))
    except OSError:
        return {}
    for d in entries:
        if not Registry.lists(d.name):
            continue
        try:
            st = d.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            files[d.name] = _File(st.st_mtime_ns, st.st_size, bool(st.st_mode & 0o111))
    return files


def _background_files(root: Path) -> dict[str, _File]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return {}
    files = {}
    for d in entries:
        if d.name.endswith(".npy") and d.name[0] != ".":
            try:
                st = d.stat()
            except OSError:
                continue
            files[d.name[:-4]] = _File(st.st_mtime_ns, st.st_size, False)
    return files


class Replicator:
    """Copies the manager's registry files and backgrounds to the nodes."""

    def __init__(self, manager: ClusterManager) -> None:
        self.manager = manager
        self._registry: dict[str, _File] = {}
        self._backgrounds: dict[str, _File] = {}
        self.copied = 0

    def _registry_root(self) -> Path:
        return self.manager.settings.registry

    def _backgrounds_root(self) -> Path:
        assert self.manager.settings.backgrounds is not None
        return self.manager.settings.backgrounds

    async def run(self) -> None:
        """Push every change of the manager's folders to the nodes that are up, forever."""
        self._registry = await asyncio.to_thread(_registry_files, self._registry_root())
        self._backgrounds = await asyncio.to_thread(_background_files, self._backgrounds_root())
        while True:
            await asyncio.sleep(SCAN_INTERVAL)
            try:
                await self.sync_changes()
            except Exception:
                log.exception("replication_failed")

    async def sync_changes(self) -> None:
        registry = await asyncio.to_thread(_registry_files, self._registry_root())
        backgrounds = await asyncio.to_thread(_background_files, self._backgrounds_root())
        reg_changed = [f for f, st in registry.items() if self._registry.get(f) != st]
        reg_removed = [f for f in self._registry if f not in registry]
        bg_changed = [b for b, st in backgrounds.items() if self._backgrounds.get(b) != st]
        bg_removed = [b for b in self._backgrounds if b not in backgrounds]
        self._registry, self._backgrounds = registry, backgrounds
        if not (reg_changed or reg_removed or bg_changed or bg_removed):
            return
        nodes = self.manager.up_nodes()
        await asyncio.gather(
            *(self._push(node, reg_changed, reg_removed, bg_changed, bg_removed) for node in nodes)
        )

    async def _push(
        self,
        node: NodeState,
        reg_changed: list[str],
        reg_removed: list[str],
        bg_changed: list[str],
        bg_removed: list[str],
    ) -> None:
        try:
            for filename in reg_changed:
                await self._put_file(node, filename)
            for filename in reg_removed:
                await self._delete(node, f"/registry/files/{filename}")
            for background in bg_changed:
                await self._put_background(node, background)
            for background in bg_removed:
                await self._delete(node, f"/backgrounds/{background}")
        except SupervisorError as exc:
            # It gets everything again when it is next seen coming up.
            log.warning("replication_to_node_failed", node=node.name, reason=exc.message)

    async def push_all(self, node: NodeState) -> None:
        """Everything a node needs before it takes instances: the registry files it lacks or
        has otherwise (by SHA-256) and the backgrounds it lacks. Raises if it cannot be done."""
        assert node.client is not None
        ours = await self.manager.list_files()
        try:
            listed = await node.client.json("GET", "/registry/files") or []
        except NotFoundError:
            listed = []  # a node of a version without the listing: it gets every file
        theirs = {f["filename"]: (f["sha256"], f["executable"]) for f in listed}
        stale = [f.filename for f in ours if theirs.get(f.filename) != (f.sha256, f.executable)]
        present = {b["id"] for b in await node.client.json("GET", "/backgrounds") or []}
        backgrounds = await asyncio.to_thread(_background_files, self._backgrounds_root())
        missing = sorted(set(backgrounds) - present)
        limit = asyncio.Semaphore(COPIES_AT_ONCE)

        async def copy(put: Callable[[NodeState, str], Awaitable[None]], name: str) -> None:
            async with limit:
                await put(node, name)

        await asyncio.gather(
            *(copy(self._put_file, f) for f in stale),
            *(copy(self._put_background, b) for b in missing),
        )
        if stale or missing:
            log.info("node_synced", node=node.name, files=len(stale), backgrounds=len(missing))

    async def _put_file(self, node: NodeState, filename: str) -> None:
        path = self._registry_root() / filename
        try:
            data = await asyncio.to_thread(path.read_bytes)
            executable = bool(path.stat().st_mode & 0o111)
        except OSError:
            return  # gone since the scan: its removal follows
        assert node.client is not None
        params = {"executable": "true"} if executable else {}
        try:
            await node.client.request(
                "PUT", f"/registry/files/{filename}", content=data, params=params
            )
        except InvalidConfigError:
            # An entry that does not validate on the manager does not on the node either.
            log.info("registry_file_refused_by_node", file=filename, node=node.name)
            return
        self.copied += 1

    async def _put_background(self, node: NodeState, background: str) -> None:
        path = self._backgrounds_root() / f"{background}.npy"
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return
        assert node.client is not None
        await node.client.request("PUT", f"/backgrounds/{background}/data", content=data)
        self.copied += 1

    async def _delete(self, node: NodeState, path: str) -> None:
        assert node.client is not None
        try:
            await node.client.request("DELETE", path)
        except NotFoundError:
            pass
