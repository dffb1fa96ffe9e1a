"""What a node is told to create: the request, with a pin's port and remote sources as URLs.

A node resolves an input by instance name only among its own instances: a source that runs on
another node is given to it as that source's stream URL (PUB read with SUB, PUSH with PULL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from supervisor.contract import SocketMode
from supervisor.nodeapi.models import CreateInstance, Entry
from supervisor.nodeapi.specs import InputSpec, OutputSpec

__all__ = ["node_request"]

Where = Callable[[str], tuple[str, dict[str, Any]] | None]
"""Instance name -> (its node, its InstanceInfo as JSON), if it runs somewhere."""


def node_request(
    req: CreateInstance, entry: Entry, node: str, port: int | None, where: Where
) -> CreateInstance:
    """``req`` as node ``node`` must get it (``req`` itself when nothing changes)."""
    spec = entry.spec
    update: dict[str, Any] = {}
    if port is not None:
        base = req.output or (spec.output if spec is not None else OutputSpec())
        update["output"] = base.model_copy(update={"port": port})
    inputs = req.input if req.input is not None or spec is None else spec.input
    merges = req.merge if req.merge is not None or spec is None else spec.merge
    if inputs is not None:
        rewritten = _remote(inputs, node, where)
        if rewritten != inputs:
            update["input"] = rewritten
    if merges:
        rewritten_merges = _remote(list(merges), node, where)
        if rewritten_merges != list(merges):
            update["merge"] = rewritten_merges
    return req.model_copy(update=update) if update else req


def _remote(inputs: Any, node: str, where: Where) -> Any:
    if isinstance(inputs, list):
        return [_remote_input(i, node, where) for i in inputs]
    return _remote_input(inputs, node, where)


def _remote_input(spec: InputSpec, node: str, where: Where) -> InputSpec:
    source = spec.source
    found = where(source) if source is not None else None
    if found is None or found[0] == node:
        return spec
    info = found[1]
    stream = info.get("stream")
    if not stream:
        return spec
    mode = spec.mode or (SocketMode.PULL if info.get("output_mode") == "PUSH" else SocketMode.SUB)
    return InputSpec(url=stream, mode=mode)
