"""``pipevisor``: run a supervisor node (``serve``) or talk to one over its REST API.

The client commands use only the standard library (``urllib.request``), so they start fast and
work wherever Python does. Exit codes: 0 done, 1 the supervisor refused (its ``detail`` is
printed), 2 usage error or no supervisor reachable, 130 interrupted.
"""

from .client import Client, CliError
from .commands import parse_assignments
from .output import format_table
from .parser import build_parser, main

__all__ = ["CliError", "Client", "build_parser", "format_table", "main", "parse_assignments"]
