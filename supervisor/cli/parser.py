"""The ``pipevisor`` command line: options, sub-commands, and ``main``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

from . import backgrounds as b
from . import commands as c
from . import receive as r
from .client import DEFAULT_URL, TOKEN_ENV, URL_ENV, CliError
from .service import add_service_arguments

__all__ = ["build_parser", "main"]


def _port_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:LAST, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``pipevisor`` command line."""
    # A _Parser like every sub-command's, which typeshed requires of their ``parents``.
    common = _Parser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"supervisor URL (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    common.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help=f"bearer token for changes (default: ${TOKEN_ENV})",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = _Parser(
        prog="pipevisor",
        description="Run a pipevisor node, or talk to one over its REST API.",
        parents=[common],
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def add(name: str, func: Callable[[argparse.Namespace], int], **kw: Any) -> Any:
        p = sub.add_parser(
            name, parents=[common], help=func.__doc__, description=func.__doc__, **kw
        )
        p.set_defaults(func=func)
        return p

    p = sub.add_parser("serve", help=c.cmd_serve.__doc__, description=c.cmd_serve.__doc__)
    p.set_defaults(func=c.cmd_serve)
    add_service_arguments(
        p,
        registry="the registry folder",
        port=8090,
        state_dir="state and audit log (default REGISTRY/.pipevisor)",
        what="supervisor",
    )
    p.add_argument("--stream-host", help="interface programs bind their output on")
    p.add_argument("--advertise-host", help="host name put in stream URLs given to clients")
    p.add_argument(
        "--port-range",
        type=_port_range,
        metavar="FIRST:LAST",
        help="output ports handed to instances (default 11100:12100)",
    )
    p.add_argument(
        "--monitor-interval",
        type=float,
        metavar="SECONDS",
        help="process and node sampling interval (default 1; 0: monitoring off)",
    )
    p.add_argument(
        "--manager",
        metavar="URL",
        help="work for this cluster manager: register with it, run only what it places here",
    )
    p.add_argument("--node-name", help="this node's name in the cluster (default: host name)")
    p.add_argument(
        "--node-url", metavar="URL", help="URL the manager reaches this node at (default: bound)"
    )

    for plugin in entry_points(group="pipevisor.commands"):
        plugin.load()(sub)  # e.g. the cluster's ``manager``

    p = add("ls", c.cmd_ls)
    p.add_argument("--registry", action="store_true", help="list registry entries instead")

    p = add("create", c.cmd_create)
    p.add_argument("name", help="instance name")
    p.add_argument("entry", help="registry entry to run")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override (repeatable; JSON values; dotted keys nest)",
    )
    p.add_argument("--no-start", action="store_true", help="create it stopped")

    for verb in ("start", "stop", "restart"):
        add(verb, c.action(verb)).add_argument("name", help="instance name")
    add("delete", c.cmd_delete).add_argument("name", help="instance name")
    add("status", c.cmd_status).add_argument("name", nargs="?", help="instance name")

    p = add("logs", c.cmd_logs)
    p.add_argument("name", help="instance name")
    p.add_argument("-n", type=int, default=100, help="newest entries to show (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="follow new entries until Ctrl-C")

    p = add("receive", r.cmd_receive)
    p.add_argument("stream", help="an instance name, or a bsread URL such as tcp://host:port")
    p.add_argument("-n", type=int, help="stop after this many messages (default: until Ctrl-C)")
    p.add_argument(
        "--mode",
        type=str.upper,
        choices=["SUB", "PULL"],
        help="socket type (default: SUB, or PULL for an instance whose output is PUSH)",
    )
    p.add_argument("--channels", metavar="A,B", help="only these channels, in this order")
    p.add_argument("--values", action="store_true", help="print arrays whole, not summarised")
    p.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")

    p = sub.add_parser("config", help="Read or change an instance's configuration.")
    config_sub = p.add_subparsers(
        dest="config_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    g = config_sub.add_parser("get", parents=[common], help=c.cmd_config_get.__doc__)
    g.set_defaults(func=c.cmd_config_get)
    g.add_argument("name", help="instance name")
    s = config_sub.add_parser("set", parents=[common], help=c.cmd_config_set.__doc__)
    s.set_defaults(func=c.cmd_config_set)
    s.add_argument("name", help="instance name")
    s.add_argument(
        "assignments",
        nargs="+",
        metavar="KEY=VALUE",
        help="JSON values when they parse, else strings; roi.x=10 nests",
    )

    p = add("upload", c.cmd_upload)
    p.add_argument("file", type=Path, help="the file to upload")
    p.add_argument("--executable", action="store_true", help="make it executable (a program)")
    p.add_argument("--name", help="registry file name (default: the file's name)")

    p = sub.add_parser("background", help="Collect, list, download or upload backgrounds.")
    bg_sub = p.add_subparsers(
        dest="background_command", required=True, metavar="ACTION", parser_class=_Parser
    )

    def bg(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        q = bg_sub.add_parser(name, parents=[common], help=func.__doc__, description=func.__doc__)
        q.set_defaults(func=func)
        return q

    q = bg("collect", b.cmd_background_collect)
    q.add_argument("name", help="the camera instance")
    q.add_argument("-n", type=int, default=10, help="images to average (default 10)")
    bg("ls", b.cmd_background_ls).add_argument("--camera", help="only this camera's")
    q = bg("get", b.cmd_background_get)
    q.add_argument("id", help="background id")
    q.add_argument("-o", "--output", type=Path, help="file to write (default ID.npy)")
    q = bg("put", b.cmd_background_put)
    q.add_argument("id", help="background id to store it as")
    q.add_argument("file", type=Path, help="a .npy file (numpy.save of a 2-D array)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pipevisor`` command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        func: Callable[[argparse.Namespace], int] = args.func  # each command's set_defaults
        return func(args)
    except CliError as exc:
        print(f"pipevisor: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: stop quietly, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
