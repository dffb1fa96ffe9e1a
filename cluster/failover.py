"""What happens to instances when a node goes down, comes back, or forgets them.

- **Down**: its permanent instances are placed again on other eligible nodes (sources first,
  so their pipelines follow them); its other instances are gone until asked for again.
- **Back** (or answering after a partition): an instance that now runs elsewhere is deleted
  there, so nothing runs twice; a permanent one it should run but does not (it restarted) is
  created again.
- **Waiting**: a permanent instance no node may take yet is tried again at every round.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.nodeapi.errors import ConflictError, NotFoundError, SupervisorError
from supervisor.nodeapi.models import CreateInstance

from .ledger import Placement
from .placement import NoNodeError

if TYPE_CHECKING:
    from .manager import ClusterManager
    from .nodes import NodeState

__all__ = ["move_off", "place_waiting", "reconcile"]

log = structlog.get_logger(__name__)

GRACE = 1.0
"""Seconds after a placement during which a check may not show the instance yet."""


def _sources_first(placements: list[Placement], manager: ClusterManager) -> list[Placement]:
    moving = {p.instance for p in placements}

    def depth(p: Placement) -> int:
        source = manager._source_of(p.request)
        return 1 if source in moving else 0

    return sorted(placements, key=lambda p: (depth(p), p.instance))


async def move_off(manager: ClusterManager, node: NodeState) -> None:
    """``node`` is down: move its permanent instances, forget the others; pipelines on other
    nodes that read a moved instance by its old URL are created again next to it."""
    async with manager._lock:
        placements = manager.ledger.on_node(node.name)
        moved = set()
        for placement in _sources_first(placements, manager):
            if not placement.permanent:
                manager.ledger.remove(placement.instance)
                log.info("instance_lost", instance=placement.instance, node=node.name)
                continue
            await _move(manager, placement, node.name)
            moved.add(placement.instance)
        for placement in manager.ledger.all():
            if placement.instance in moved:
                continue  # created just now, after its source: it reads the new place
            source = manager._source_of(placement.request)
            if source in moved and placement.node not in (None, node.name):
                await _follow_source(manager, placement, source)


async def _follow_source(manager: ClusterManager, placement: Placement, source: str) -> None:
    """``placement`` reads a copy of ``source`` that is gone (a dead node's, by URL, or a
    duplicate deleted beside it): it is deleted and placed again, next to the source that
    stays by the rules."""
    holder = manager.nodes.get(placement.node or "")
    if holder is None or not holder.up or holder.client is None:
        return
    try:
        await holder.client.json("DELETE", f"/instances/{placement.instance}")
    except NotFoundError:
        pass
    except SupervisorError as exc:
        log.warning("dependent_not_moved", instance=placement.instance, reason=exc.message)
        return
    holder.instances.pop(placement.instance, None)
    manager.ledger.remove(placement.instance)
    await _move(manager, placement, None)
    log.info("instance_followed_its_source", instance=placement.instance, source=source)


async def _move(manager: ClusterManager, placement: Placement, off: str | None) -> None:
    started = time.monotonic()
    try:
        moved = await manager._place_and_create(
            placement.request,
            placement.permanent,
            exclude=frozenset({off}) if off else frozenset(),
            moved_from=off or placement.moved_from,
            moves=placement.moves + (1 if off else 0),
        )
    except NoNodeError as exc:
        manager.ledger.put(
            placement.model_copy(update={"node": None, "rule": "waiting", "why": exc.message})
        )
        log.warning("instance_waits_for_a_node", instance=placement.instance, reason=exc.message)
        return
    except SupervisorError as exc:
        manager.ledger.put(
            placement.model_copy(
                update={"node": None, "rule": "waiting", "why": f"failed to start: {exc.message}"}
            )
        )
        log.warning("instance_move_failed", instance=placement.instance, reason=exc.message)
        return
    manager.failovers += 1 if off else 0
    log.info(
        "instance_moved" if off else "instance_placed_after_wait",
        instance=placement.instance,
        node=moved.node,
        moved_from=off,
        seconds=round(time.monotonic() - started, 3),
    )


async def place_waiting(manager: ClusterManager) -> None:
    """Try again to place what waits for a node, and start the registry's permanent entries."""
    waiting = [p for p in manager.ledger.all() if p.node is None]
    if not manager.up_nodes() or not (waiting or manager.new_permanents):
        return
    placed = manager.locations()
    candidates, manager.new_permanents = manager.new_permanents, set()
    missing = []
    for name in sorted(candidates):
        try:
            entry = manager.registry.get(name)
        except SupervisorError:
            continue  # gone again
        permanent = entry.valid and entry.spec is not None and entry.spec.permanent
        if permanent and name not in placed and manager.ledger.get(name) is None:
            missing.append(name)
    async with manager._lock:
        for placement in waiting:
            await _move(manager, placement, None)
        for name in sorted(missing, key=lambda n: _reads_a_missing(manager, n, missing)):
            if name in manager.locations():
                continue  # created meanwhile as the source of another: adopted at its check
            request = CreateInstance(name=name, entry=name, permanent=True)
            await _move(
                manager,
                Placement(
                    instance=name,
                    node=None,
                    why="",
                    rule="waiting",
                    permanent=True,
                    request=request,
                ),
                None,
            )


async def reconcile(manager: ClusterManager, node: NodeState, asked: float) -> None:
    """Make ``node``'s instances agree with the placements (its list was taken at ``asked``)."""
    duplicates: list[str] = []
    recreate: list[Placement] = []
    for name, info in list(node.instances.items()):
        placement = manager.ledger.get(name)
        if placement is None:
            _adopt(manager, node, info)
        elif placement.node is None:
            manager.ledger.put(
                placement.model_copy(
                    update={
                        "node": node.name,
                        "rule": "adopted",
                        "why": f"found running on {node.name} while it waited for a node",
                    }
                )
            )
        elif placement.node != node.name:
            holder = manager.nodes.get(placement.node)
            if holder is not None and holder.up:
                duplicates.append(name)
    for placement in manager.ledger.on_node(node.name):
        if placement.instance in node.instances or placement.placed_at > asked - GRACE:
            continue
        if placement.permanent:
            recreate.append(placement)
        else:
            manager.ledger.remove(placement.instance)
            log.info("instance_gone", instance=placement.instance, node=node.name)
    deleted = {name for name in duplicates if await _delete_duplicate(manager, node, name)}
    if recreate or deleted:
        async with manager._lock:
            for placement in recreate:
                await _recreate(manager, node, placement)
            # What this node ran next to a copy it just lost reads nothing now: it follows
            # the copy that stays (after a partition, the node's pipelines are adopted).
            for placement in manager.ledger.on_node(node.name):
                source = manager._source_of(placement.request)
                if source in deleted:
                    await _follow_source(manager, placement, source)


def _adopt(manager: ClusterManager, node: NodeState, info: dict[str, Any]) -> None:
    """An instance the manager did not place (made on the node, or before the manager's
    state was lost): recorded as it is, so it moves like the others."""
    if info.get("on_demand") or "restart_policy" not in info:
        return  # an on-demand source stops by itself; a half-known one waits for its check
    request = CreateInstance(
        name=info["name"],
        entry=info["entry"],
        config=info.get("config") or {},
        input=info.get("input"),
        restart=info.get("restart_policy"),
        permanent=bool(info.get("permanent")),
    )
    manager.ledger.put(
        Placement(
            instance=info["name"],
            node=node.name,
            why=f"found running on {node.name}",
            rule="adopted",
            permanent=bool(info.get("permanent")),
            request=request,
        )
    )
    log.info("instance_adopted", instance=info["name"], node=node.name)


async def _delete_duplicate(manager: ClusterManager, node: NodeState, name: str) -> bool:
    """Delete ``name`` on ``node``, where it runs a second time; False if that failed."""
    assert node.client is not None
    try:
        await node.client.json("DELETE", f"/instances/{name}")
    except NotFoundError:
        pass
    except SupervisorError as exc:
        log.warning("duplicate_not_stopped", instance=name, node=node.name, reason=exc.message)
        return False
    node.instances.pop(name, None)
    manager.changed()
    log.warning("duplicate_stopped", instance=name, node=node.name)
    return True


async def _recreate(manager: ClusterManager, node: NodeState, placement: Placement) -> None:
    """A permanent instance its node should run but does not (the node restarted)."""
    if node.client is None or not node.up:
        return
    decision_port = None
    pinned = manager.rules.pin_of(placement.instance)
    if pinned is not None and pinned[0] == node.name:
        decision_port = pinned[1].port
    from .placement import Decision

    body = manager._node_request(
        placement.request,
        Decision(node.name, decision_port, placement.why, placement.rule),
        node.name,
    )
    try:
        answer = await node.client.json(
            "POST", "/instances", json=body.model_dump(mode="json", exclude_none=True)
        )
    except ConflictError:
        return  # it is there after all (made since the check)
    except SupervisorError as exc:
        log.warning("instance_not_recreated", instance=placement.instance, reason=exc.message)
        return
    manager._remember(node, answer)
    manager.ledger.put(placement.model_copy(update={"placed_at": time.time()}))
    log.warning("instance_recreated", instance=placement.instance, node=node.name)


def _reads_a_missing(manager: ClusterManager, name: str, missing: list[str]) -> bool:
    """Sources first: an entry reading another missing one comes after it."""
    return manager._source_of(CreateInstance(name=name, entry=name)) in missing
