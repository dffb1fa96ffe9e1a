"""The pool of nodes: those the rules list and those that registered, kept across restarts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import structlog

from supervisor.atomicfile import write_atomic

from .config import NodeConfig
from .nodes import NodeState, NodeStatus

__all__ = ["NodePool"]

log = structlog.get_logger(__name__)


class NodePool:
    """Every node by name; self-registered ones are saved to ``path`` for a manager restart."""

    def __init__(self, configs: Iterable[NodeConfig], token: str | None, path: Path) -> None:
        self.token = token
        self.path = path
        self.nodes: dict[str, NodeState] = {c.name: NodeState(c, token) for c in configs}

    def up(self) -> list[NodeState]:
        return [n for n in self.nodes.values() if n.up]

    async def register(self, name: str, url: str) -> NodeState:
        """A node announced itself: known by name (its rules apply), listed at this URL under
        another name (servers.json names nodes host-port), or a new generic node."""
        url = url.rstrip("/")
        node = self.nodes.get(name) or next((n for n in self.nodes.values() if n.url == url), None)
        if node is None:
            node = NodeState(NodeConfig(name=name, url=url), self.token)
            self.nodes[name] = node
            log.info("node_added", node=name, url=url)
        elif node.url != url:
            log.info("node_url_changed", node=node.name, old=node.url, url=url)
        changed = node.url != url or not node.registered
        await node.set_url(url)
        node.registered = True
        if changed:
            self.save()
        if node.status is NodeStatus.UNKNOWN and node.reason == "waits for its registration":
            node.reason = "registered, not checked yet"
        return node

    async def apply(self, configs: list[NodeConfig]) -> None:
        """New rules: nodes added or changed; unlisted ones forgotten unless they registered."""
        for config in configs:
            node = self.nodes.get(config.name)
            if node is None:
                self.nodes[config.name] = NodeState(config, self.token)
            else:
                await node.reconfigure(config, self.token)
        listed = {c.name for c in configs}
        for name, node in list(self.nodes.items()):
            if name not in listed and not node.registered:
                await node.close()
                del self.nodes[name]

    def save(self) -> None:
        known = {n.name: n.url for n in self.nodes.values() if n.registered and n.url}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(known, indent=1).encode(), temp_prefix=".nodes-")

    async def load(self) -> None:
        """The nodes that had registered before the manager restarted."""
        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        for name, url in known.items() if isinstance(known, dict) else ():
            node = self.nodes.get(name)
            if node is None:
                try:
                    node = NodeState(NodeConfig(name=name, url=url), self.token)
                except ValueError:
                    continue  # a file edited by hand: the node registers again anyway
                self.nodes[name] = node
            elif node.url is None and isinstance(url, str):
                await node.set_url(url)
            node.registered = True
            if node.reason == "waits for its registration":
                node.reason = "registered before the manager restarted, not checked yet"

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()
