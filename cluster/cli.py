"""``pipevisor manager``: the sub-command, added to the ``pipevisor`` command line.

The supervisor's command line finds it through the ``pipevisor.commands`` entry point, so the
supervisor never imports the cluster (the layering of DESIGN.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["cmd_manager", "register"]

TOKEN_ENV = "PIPEVISOR_TOKEN"  # noqa: S105 (the name of a variable, not a secret)


def register(sub: Any) -> None:
    """Add ``manager`` to the sub-commands ``sub``."""
    p = sub.add_parser("manager", help=cmd_manager.__doc__, description=cmd_manager.__doc__)
    p.set_defaults(func=cmd_manager)
    p.add_argument("--registry", type=Path, required=True, help="the cluster's registry folder")
    p.add_argument(
        "--config", type=Path, help="placement rules (JSON; CamServer's servers.json works too)"
    )
    p.add_argument("--host", help="REST interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="REST port (default 8080; 0: any free port)")
    p.add_argument(
        "--state-dir", type=Path, help="placements and audit (default REGISTRY/.pipevisor-manager)"
    )
    p.add_argument("--backgrounds", type=Path, help="background images folder")
    p.add_argument(
        "--log-host", help="interface of the merged log stream, a ZMQ PUB (default 127.0.0.1)"
    )
    p.add_argument("--token", help=f"bearer token of changes and of the nodes (${TOKEN_ENV})")
    p.add_argument("--log-format", choices=["console", "json"], help="manager log format")


def cmd_manager(args: argparse.Namespace) -> int:
    """Run the cluster manager: one REST API over many nodes, placement, health, failover."""
    from pydantic import ValidationError

    from supervisor.cli import CliError

    from .server import serve_manager
    from .settings import ManagerSettings

    if not args.registry.is_dir():
        raise CliError(f"registry folder {str(args.registry)!r} does not exist", 2)
    if args.config is not None and not args.config.is_file():
        raise CliError(f"cluster config {str(args.config)!r} does not exist", 2)
    given = {
        "registry": args.registry,
        "config": args.config,
        "state_dir": args.state_dir,
        "backgrounds": args.backgrounds,
        "api_host": args.host,
        "api_port": args.port,
        "log_host": args.log_host,
        "token": args.token or os.environ.get(TOKEN_ENV) or None,
        "log_format": args.log_format,
    }
    try:
        settings = ManagerSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise CliError(f"invalid settings: {exc}", 2) from None
    return serve_manager(settings)
