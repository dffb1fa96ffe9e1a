"""``pipevisor manager``: the sub-command, added to the ``pipevisor`` command line.

The supervisor's command line finds it through the ``pipevisor.commands`` entry point, so the
supervisor never imports the cluster (the layering of DESIGN.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from supervisor.cli import CliError
from supervisor.cli.service import add_service_arguments, service_settings

__all__ = ["cmd_manager", "register"]


def register(sub: Any) -> None:
    """Add ``manager`` to the sub-commands ``sub``."""
    p = sub.add_parser("manager", help=cmd_manager.__doc__, description=cmd_manager.__doc__)
    p.set_defaults(func=cmd_manager)
    add_service_arguments(
        p,
        registry="the cluster's registry folder",
        port=8080,
        state_dir="placements and audit log (default REGISTRY/.pipevisor-manager)",
        what="manager",
    )
    p.add_argument(
        "--config", type=Path, help="placement rules (JSON; CamServer's servers.json works too)"
    )
    p.add_argument(
        "--log-host", help="interface of the merged log stream, a ZMQ PUB (default 127.0.0.1)"
    )


def cmd_manager(args: argparse.Namespace) -> int:
    """Run the cluster manager: one REST API over many nodes, placement, health, failover."""
    from .server import serve_manager
    from .settings import ManagerSettings

    settings = service_settings(ManagerSettings, args, config=args.config, log_host=args.log_host)
    if args.config is not None and not args.config.is_file():
        raise CliError(f"cluster config {str(args.config)!r} does not exist", 2)
    return serve_manager(settings)
