"""Where a new instance runs, and why: pure rules over a snapshot of the nodes.

In order (the first that applies decides):

1. **Pinned**: a node's ``pins`` name the instance: that node, and only that node (with the
   pin's port). If it is down the instance waits for it.
2. **Group**: an instance of a group (by name pattern, or by the camera it reads) may only run
   on the group's nodes; any other instance only on generic nodes, or on a node that lists
   the camera it reads (CamServer's non-expanding node with ``cameras``).
3. **Next to its source**: a pipeline goes to the node that runs the camera or instance it
   reads, unless that node's CPU is above ``colocate_max_cpu`` or the rules turn it off: the
   image then never crosses the network.
4. **Camera preference**: a node listing the source camera in its ``cameras``.
5. **Least loaded**: the lowest score, the busiest of CPU, memory and network as a fraction
   of the node's capacity, plus what was placed there since its last sample, plus a small term
   per instance so that equal machines fill evenly. CamServer counted instances only.

Every decision carries ``why``: one sentence naming the rule, and the scores it compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from supervisor.nodeapi.errors import UnavailableError

from .config import ClusterConfig

__all__ = ["Candidate", "Decision", "NoNodeError", "PlacementRequest", "place"]

PENDING_COST = 0.05
"""Score added per instance placed on a node since its last resource sample."""

INSTANCE_COST = 0.002
"""Score per instance already on a node: equal machines fill evenly."""


class NoNodeError(UnavailableError):
    """No node may run the instance now; the message says why for each node."""


@dataclass(frozen=True)
class Candidate:
    """What placement knows of one node at the moment of the decision."""

    name: str
    up: bool
    enabled: bool = True
    generic: bool = True
    groups: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    net_bytes_per_s: float = 0.0
    net_capacity: float = 1.25e9
    instances: int = 0
    pending: int = 0
    status: str = "up"
    sampled: bool = True  # its load is measured (a node just up has no sample yet)

    @property
    def score(self) -> float:
        busiest = max(
            self.cpu_percent / 100,
            self.memory_percent / 100,
            self.net_bytes_per_s / self.net_capacity,
        )
        return busiest + PENDING_COST * self.pending + INSTANCE_COST * self.instances

    def describe(self) -> str:
        return (
            f"{self.name} {self.score:.3f} (cpu {self.cpu_percent:.0f} %, mem "
            f"{self.memory_percent:.0f} %, net {self.net_bytes_per_s / 1e6:.1f} MB/s, "
            f"{self.instances} instances"
            + (f", {self.pending} just placed" if self.pending else "")
            + ")"
        )


@dataclass(frozen=True)
class PlacementRequest:
    """An instance to place."""

    instance: str
    source: str | None = None  # the camera or instance it reads, if any
    exclude: frozenset[str] = frozenset()  # nodes not to use (e.g. the one that just died)


@dataclass(frozen=True)
class Decision:
    """The node chosen, the fixed port if a pin gives one, and why."""

    node: str
    port: int | None
    why: str
    rule: str
    scores: dict[str, float] = field(default_factory=dict)


def place(
    request: PlacementRequest,
    nodes: Iterable[Candidate],
    rules: ClusterConfig,
    locations: dict[str, str],
) -> Decision:
    """The node for ``request``; ``locations`` maps running instances to their nodes.

    Raises:
        NoNodeError: when no node may take it; the message gives each node's reason.
    """
    by_name = {n.name: n for n in nodes}
    name = request.instance
    pinned = rules.pin_of(name)
    if pinned is not None:
        node, pin = pinned
        candidate = by_name.get(node)
        if candidate is None or not candidate.up or not candidate.enabled:
            state = "unknown" if candidate is None else candidate.status
            raise NoNodeError(
                f"instance {name!r} is pinned to node {node!r}, which is {state}: it waits "
                "for that node"
            )
        if node in request.exclude:
            raise NoNodeError(f"instance {name!r} is pinned to node {node!r}, which is excluded")
        port = f" with port {pin.port}" if pin.port else ""
        return Decision(node, pin.port, f"pinned to {node}{port} by the rules", "pinned")

    group = rules.group_of(name, request.source)
    eligible: list[Candidate] = []
    refused: list[str] = []
    for candidate in by_name.values():
        reason = _refusal(candidate, group, request.exclude, request.source)
        if reason is None:
            eligible.append(candidate)
        else:
            refused.append(f"{candidate.name}: {reason}")
    among = f"group {group!r}" if group else "generic nodes"
    if not eligible:
        detail = "; ".join(sorted(refused)) or "no node is known"
        raise NoNodeError(f"no node may run {name!r} (among {among}): {detail}")

    source_node = locations.get(request.source) if request.source else None
    if rules.colocate and source_node is not None:
        near = next((c for c in eligible if c.name == source_node), None)
        if near is not None and near.cpu_percent <= rules.colocate_max_cpu:
            return Decision(
                near.name,
                None,
                f"next to its source {request.source!r}, which runs on {near.name}",
                "colocated",
                {near.name: near.score},
            )
    preferred = [c for c in eligible if request.source and request.source in c.cameras]
    pool, rule = (preferred, "camera") if preferred else (eligible, "least_loaded")
    if any(c.sampled for c in pool):
        # A node without a sample would look idle: it is ranked once it has one.
        refused += [f"{c.name}: no load sample yet" for c in pool if not c.sampled]
        pool = [c for c in pool if c.sampled]
    ranked = sorted(pool, key=lambda c: (c.score, c.name))
    best = ranked[0]
    scores = {c.name: round(c.score, 4) for c in ranked}
    listing = ", ".join(c.describe() for c in ranked[:5])
    if len(ranked) > 5:
        listing += f" and {len(ranked) - 5} more"
    if rule == "camera":
        why = f"a node for camera {request.source!r}, the least loaded of: {listing}"
    else:
        why = f"least loaded among {among}: {listing}"
    if source_node is not None and rules.colocate and source_node != best.name:
        why += f" (its source runs on {source_node}, which is not eligible or too busy)"
    if refused:
        why += "; not eligible: " + "; ".join(sorted(refused))
    return Decision(best.name, None, why, rule, scores)


def _refusal(
    candidate: Candidate, group: str | None, exclude: frozenset[str], source: str | None = None
) -> str | None:
    """Why ``candidate`` may not take an instance of ``group`` reading ``source`` (None: it may)."""
    if candidate.name in exclude:
        return "excluded"
    if not candidate.enabled:
        return "disabled"
    if not candidate.up:
        return candidate.status
    if group is not None:
        return None if group in candidate.groups else f"not in group {group!r}"
    if candidate.generic or (source is not None and source in candidate.cameras):
        return None
    return f"dedicated to {', '.join(candidate.groups) or 'pins'}"
