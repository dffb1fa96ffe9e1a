"""The options every served node API takes (``serve``, ``manager``), and its settings from them.

One definition of ``--registry``, ``--host``, ``--port``, ``--state-dir``, ``--backgrounds``,
``--token`` and ``--log-format`` for the node and the cluster manager alike; each adds its own.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .client import TOKEN_ENV, CliError

if TYPE_CHECKING:  # the settings (pydantic) are imported only when a service starts
    from ..settings import ServiceSettings

__all__ = ["add_service_arguments", "service_settings"]

S = TypeVar("S", bound="ServiceSettings")


def add_service_arguments(
    p: argparse.ArgumentParser, *, registry: str, port: int, state_dir: str, what: str
) -> None:
    """Add the service options to ``p`` (``what`` names it in the help: 'supervisor', ...)."""
    p.add_argument("--registry", type=Path, required=True, help=registry)
    p.add_argument("--host", help="REST interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, help=f"REST port (default {port}; 0: any free port)")
    p.add_argument("--state-dir", type=Path, help=state_dir)
    p.add_argument(
        "--backgrounds",
        type=Path,
        help="background images folder (default: 'backgrounds' beside the registry)",
    )
    p.add_argument("--token", help=f"bearer token that changes need (default ${TOKEN_ENV})")
    p.add_argument("--log-format", choices=["console", "json"], help=f"{what} log format")


def service_settings(cls: type[S], args: argparse.Namespace, **more: Any) -> S:
    """``cls`` from the service options in ``args`` and ``more`` (None: the default).

    Raises:
        CliError: the registry folder does not exist, or a value is invalid (exit code 2).
    """
    from pydantic import ValidationError  # here: client commands never import the server

    if not args.registry.is_dir():
        raise CliError(f"registry folder {str(args.registry)!r} does not exist", 2)
    given = {
        "registry": args.registry,
        "state_dir": args.state_dir,
        "backgrounds": args.backgrounds,
        "api_host": args.host,
        "api_port": args.port,
        "token": args.token or os.environ.get(TOKEN_ENV) or None,
        "log_format": args.log_format,
        **more,
    }
    try:
        return cls(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise CliError(f"invalid settings: {exc}", 2) from None
