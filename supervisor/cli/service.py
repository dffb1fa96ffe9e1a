"""The options every served node API takes (``serve``, ``manager``), and its settings from them.

One definition of ``--registry``, ``--host``, ``--port``, ``--state-dir``, ``--backgrounds``,
the tokens, ``--allow-host`` and ``--log-format`` for the node and the cluster manager alike; each
adds its own.

The operator token comes from ``--token-file``, ``$PIPEVISOR_TOKEN`` or ``--token`` (which other
users of the machine can read in ``/proc/PID/cmdline``); the viewer token from
``--viewer-token-file`` or ``$PIPEVISOR_VIEWER_TOKEN``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .client import TOKEN_ENV, CliError

if TYPE_CHECKING:  # the settings (pydantic) are imported only when a service starts
    from ..settings import ServiceSettings

__all__ = ["VIEWER_TOKEN_ENV", "add_service_arguments", "read_token_file", "service_settings"]

VIEWER_TOKEN_ENV = "PIPEVISOR_VIEWER_TOKEN"  # noqa: S105 (the name of a variable, not a secret)

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
    p.add_argument(
        "--token",
        help="operator bearer token, which changes need; VISIBLE TO OTHER USERS of this machine "
        f"(ps, /proc/PID/cmdline): prefer --token-file or ${TOKEN_ENV}",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the operator token (default: ${TOKEN_ENV})",
    )
    p.add_argument(
        "--viewer-token-file",
        type=Path,
        metavar="PATH",
        help="file holding the viewer token: reads then need it (or the operator token), and "
        f"viewers see secrets redacted (default: ${VIEWER_TOKEN_ENV})",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=None,
        metavar="NAME",
        help="a Host name the API answers to beside 127.0.0.1, localhost and [::1] when bound "
        "to loopback (others get 421); repeatable",
    )
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
        "token": _token(args.token, args.token_file, TOKEN_ENV, "--token"),
        "viewer_token": _token(None, args.viewer_token_file, VIEWER_TOKEN_ENV, ""),
        "allowed_hosts": args.allow_host,
        "log_format": args.log_format,
        **more,
    }
    try:
        return cls(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise CliError(f"invalid settings: {exc}", 2) from None


def read_token_file(path: Path) -> str:
    """The token in ``path``, without surrounding white space.

    Raises:
        CliError: the file cannot be read or holds no token (exit code 2).
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the token file {str(path)!r}: {exc}", 2) from None
    if not token:
        raise CliError(f"the token file {str(path)!r} is empty", 2)
    return token


def _token(given: str | None, path: Path | None, env: str, option: str) -> str | None:
    """A token from its option, its file, or the environment, in that order."""
    if given and path is not None:
        raise CliError(f"give {option} or its file, not both", 2)
    if given:
        return given
    if path is not None:
        return read_token_file(path)
    return os.environ.get(env) or None
