"""The cluster views of the manager: nodes, placements and why, rules, registration."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import Field

from supervisor.api.body import JSONBodyRoute
from supervisor.atomicfile import write_atomic
from supervisor.contract import StrictModel
from supervisor.nodeapi.errors import ConflictError, NotFoundError

from .config import ClusterConfig
from .ledger import Placement
from .manager import ClusterManager
from .nodes import NodeView
from .placement import PlacementRequest, place

__all__ = ["router"]

router = APIRouter(prefix="/cluster", tags=["cluster"], route_class=JSONBodyRoute)


async def get_manager(request: Request) -> ClusterManager:
    """The manager this app serves."""
    manager: ClusterManager = request.app.state.manager
    return manager


Mgr = Annotated[ClusterManager, Depends(get_manager)]


class Registration(StrictModel):
    """Body of POST /cluster/nodes: a node announcing itself."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Node name.")
    url: str = Field(pattern=r"^https?://", description="Base URL of the node's API.")
    version: str | None = Field(None, description="The node's pipevisor version.")


class Explanation(StrictModel):
    """Where a new instance would run now, and why (nothing is created)."""

    instance: str = Field(description="The instance name asked about.")
    node: str = Field(description="The node it would run on.")
    port: int | None = Field(None, description="The fixed port a pin gives it.")
    rule: str = Field(description="pinned, colocated, camera or least_loaded.")
    why: str = Field(description="The rule and what it compared.")
    scores: dict[str, float] = Field(description="Scores of the nodes compared (lower: freer).")


@router.get("/nodes")
async def list_nodes(mgr: Mgr) -> list[NodeView]:
    """Every node: health, load, what it runs, and its rules."""
    return [n.view() for n in sorted(mgr.nodes.values(), key=lambda n: n.name)]


@router.get("/nodes/{name}")
async def get_node(mgr: Mgr, name: str) -> NodeView:
    """One node."""
    node = mgr.nodes.get(name)
    if node is None:
        raise NotFoundError(f"no node named {name!r} in the cluster")
    return node.view()


@router.post("/nodes")
async def register_node(mgr: Mgr, reg: Registration) -> NodeView:
    """A node registers (``pipevisor serve --manager URL`` does it); it is checked at once."""
    node = await mgr.register_node(reg.name, reg.url)
    return node.view()


@router.delete("/nodes/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def forget_node(mgr: Mgr, name: str) -> Response:
    """Forget a node that is not listed in the rules; 409 while it is up and runs instances."""
    node = mgr.nodes.get(name)
    if node is None:
        raise NotFoundError(f"no node named {name!r} in the cluster")
    if mgr.rules.node(name) is not None:
        raise ConflictError(f"node {name!r} is listed in the rules: change the rules instead")
    if node.up and node.instances:
        raise ConflictError(f"node {name!r} is up and runs {len(node.instances)} instances")
    await node.close()
    del mgr.nodes[name]
    mgr.changed()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/placements")
async def list_placements(mgr: Mgr) -> list[Placement]:
    """Where each instance placed through the manager runs, and why."""
    return sorted(mgr.ledger.all(), key=lambda p: p.instance)


@router.get("/placements/{instance}")
async def get_placement(mgr: Mgr, instance: str) -> Placement:
    """Where one instance runs, and why."""
    placement = mgr.ledger.get(instance)
    if placement is None:
        raise NotFoundError(f"instance {instance!r} was not placed by this manager")
    return placement


@router.get("/explain/{instance}")
async def explain(mgr: Mgr, instance: str, source: str | None = None) -> Explanation:
    """Where an instance of that name (reading ``source``) would be placed now, and why."""
    decision = place(
        PlacementRequest(instance, source),
        [n.candidate() for n in mgr.nodes.values()],
        mgr.rules,
        mgr.locations(),
    )
    return Explanation(
        instance=instance,
        node=decision.node,
        port=decision.port,
        rule=decision.rule,
        why=decision.why,
        scores=decision.scores,
    )


@router.get("/rules")
async def get_rules(mgr: Mgr) -> ClusterConfig:
    """The rules in force."""
    return mgr.rules


@router.put("/rules")
async def set_rules(mgr: Mgr, rules: ClusterConfig) -> ClusterConfig:
    """Replace the rules; in force at once (and written to the manager's config file).

    They apply to the next placement; instances placed already stay where they are.
    """
    await mgr.set_rules(rules)
    path = mgr.settings.config
    if path is not None:
        write_atomic(path, json.dumps(rules.model_dump(mode="json"), indent=2).encode())
    return mgr.rules
