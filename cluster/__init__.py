"""The cluster manager: one REST face for many supervisor nodes.

Placement rules (``config``, ``placement``), the nodes' health (``health``), failover
(``failover``), the copy of the registry to the nodes (``replication``) and the merged log
stream (``logrelay``). ``pipevisor manager`` runs it (``server``).

Names are imported lazily: the command line loads ``cluster.cli`` on every call and must stay
fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ClusterConfig",
    "ClusterManager",
    "ManagerSettings",
    "create_manager_app",
    "load_config",
    "place",
]

_WHERE = {
    "ClusterConfig": "config",
    "load_config": "config",
    "ClusterManager": "manager",
    "ManagerSettings": "settings",
    "create_manager_app": "app",
    "place": "placement",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
