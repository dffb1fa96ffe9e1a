"""What an instance needs from its node, injected (the launcher, the log, persistence), so the
instance never reaches back into the node and tests can fake each part."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .contract import ConfigUpdate

if TYPE_CHECKING:
    from .instance import Instance
    from .process import ProgramProcess

__all__ = ["InstanceHooks"]


@dataclass(frozen=True, slots=True)
class InstanceHooks:
    """What an instance needs from its supervisor (injected, so tests can fake it)."""

    launch: Callable[[Instance], ProgramProcess]  # build the environment and spawn a run
    record: Callable[[Instance, str, str], None]  # (instance, level, message) into its log
    changed: Callable[[Instance], None]  # persist the desired state
    send_config: Callable[[bytes, ConfigUpdate], None]
    exited: Callable[[Instance, ProgramProcess], None]  # bookkeeping after a run ended
    start_seconds: float = 1.0
    config_timeout: float = 5.0
    status_interval: float = 1.0  # the programs' (PIPEVISOR_STATUS_INTERVAL): the heartbeat
