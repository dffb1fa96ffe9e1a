"""The commands: each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .client import DEFAULT_URL, TOKEN_ENV, URL_ENV, Client, CliError
from .output import emit, format_log_entry, format_table, instance_text, node_text, one_line
from .service import service_settings

__all__ = [
    "action",
    "cmd_config_get",
    "cmd_config_set",
    "cmd_create",
    "cmd_delete",
    "cmd_logs",
    "cmd_ls",
    "cmd_serve",
    "cmd_status",
    "cmd_upload",
    "parse_assignments",
]


def _parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true, null, lists, quoted strings), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` items as one JSON object; dotted keys nest: ``roi.x=10``.

    Raises:
        CliError: (code 2) an item without '=', an empty key part, or a key that is set both
            as a value and as an object.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise CliError(f"expected key=value (dotted keys nest: roi.x=10), got {item!r}", 2)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise CliError(f"{item!r}: {prefix!r} is already set to a value", 2)
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise CliError(f"{item!r}: {key!r} already has keys under it", 2)
        node[parts[-1]] = _parse_value(raw)
    return result


def _client(args: argparse.Namespace) -> Client:
    url = getattr(args, "url", None) or os.environ.get(URL_ENV) or DEFAULT_URL
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    return Client(url, token)


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run a supervisor node (registry, instances, REST API) until SIGINT or SIGTERM."""
    from ..settings import Settings

    settings = service_settings(
        Settings,
        args,
        stream_host=args.stream_host,
        advertise_host=args.advertise_host,
        port_range=args.port_range,
        monitor_interval=args.monitor_interval,
        manager=args.manager,
        node_name=args.node_name,
        node_url=args.node_url,
    )
    from ..server import serve

    return serve(settings)


def cmd_ls(args: argparse.Namespace) -> int:
    """List instances, or with --registry the registry's entries."""
    client = _client(args)
    if args.registry:
        entries = client.call("GET", "/registry")
        rows = [
            [
                e["name"],
                e["kind"],
                "yes" if e["valid"] else "NO",
                e["filename"],
                e.get("error") if not e["valid"] else e.get("description"),
            ]
            for e in entries
        ]
        table = format_table(["name", "kind", "valid", "file", "error / description"], rows)
        return emit(args, entries, lambda _: table if entries else "no entries")
    instances = client.call("GET", "/instances")
    rows = []
    for i in instances:
        stats = i.get("stats") or {}
        resources = i.get("resources") or {}
        rows.append(
            [
                i["name"],
                i["entry"],
                i["state"]
                + (
                    " (unresponsive)"
                    if i.get("unresponsive")
                    else " (stalled)"
                    if i.get("stalled")
                    else ""
                ),
                i.get("pid"),
                i.get("restarts", 0),
                f"{stats.get('rate_in', 0.0):.1f}",
                f"{stats.get('rate_out', 0.0):.1f}",
                stats.get("drops", 0),
                f"{resources.get('cpu_percent', 0.0):.0f}",
                f"{resources.get('rss_bytes', 0) / 2**20:.0f}",
                i.get("stream"),
                i.get("reason") or "",
            ]
        )
    headers = [
        "name",
        "entry",
        "state",
        "pid",
        "restarts",
        "in/s",
        "out/s",
        "drops",
        "cpu%",
        "mib",
        "stream",
        "reason",
    ]
    if any(i.get("node") for i in instances):  # a cluster manager: where each one runs
        headers.insert(2, "node")
        for row, i in zip(rows, instances, strict=True):
            row.insert(2, i.get("node") or "")
    right = (4, 5, 6, 7, 8) if "node" in headers else (3, 4, 5, 6, 7)
    table = format_table(headers, rows, right=right)
    return emit(args, instances, lambda _: table if instances else "no instances")


def cmd_create(args: argparse.Namespace) -> int:
    """Create an instance of a registry entry (started unless --no-start)."""
    body = {
        "name": args.name,
        "entry": args.entry,
        "config": parse_assignments(args.set),
        "start": not args.no_start,
    }
    info = _client(args).call("POST", "/instances", body=body)
    return emit(args, info, one_line)


def action(verb: str) -> Callable[[argparse.Namespace], int]:
    """The command that POSTs ``/instances/NAME/<verb>``."""

    def command(args: argparse.Namespace) -> int:
        info = _client(args).call("POST", f"/instances/{_q(args.name)}/{verb}")
        return emit(args, info, one_line)

    command.__doc__ = f"{verb.capitalize()} an instance."
    return command


def cmd_delete(args: argparse.Namespace) -> int:
    """Stop and delete an instance."""
    _client(args).call("DELETE", f"/instances/{_q(args.name)}")
    return emit(args, {"deleted": args.name}, lambda d: f"deleted {d['deleted']}")


def cmd_status(args: argparse.Namespace) -> int:
    """Show the node, or one instance in detail."""
    client = _client(args)
    if args.name is None:
        return emit(args, client.call("GET", "/node"), node_text)
    return emit(args, client.call("GET", f"/instances/{_q(args.name)}"), instance_text)


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the newest log entries of an instance; with -f, follow until Ctrl-C."""
    client = _client(args)
    path = f"/instances/{_q(args.name)}/logs"
    entries = client.call("GET", path, query={"tail": args.n})
    for entry in entries:
        print(json.dumps(entry) if args.json else format_log_entry(entry), flush=True)
    if not args.follow:
        return 0
    since = entries[-1]["seq"] if entries else None
    try:
        for event in client.events(f"{path}/follow", {"since": since}):
            entry = json.loads(event["data"])
            print(json.dumps(entry) if args.json else format_log_entry(entry), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_config_get(args: argparse.Namespace) -> int:
    """Print an instance's configuration as JSON."""
    config = _client(args).call("GET", f"/instances/{_q(args.name)}/config")
    print(json.dumps(config, indent=2))
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    """Change some keys of an instance's configuration (a JSON merge patch)."""
    patch = parse_assignments(args.assignments)
    result = _client(args).call("PATCH", f"/instances/{_q(args.name)}/config", body=patch)

    def text(r: dict[str, Any]) -> str:
        head = f"{r['name']}: config seq {r['seq']}, applied {r['applied'].replace('_', ' ')}"
        return head + "\n" + json.dumps(r["config"], indent=2)

    return emit(args, result, text)


def cmd_upload(args: argparse.Namespace) -> int:
    """Upload a file into the registry."""
    path: Path = args.file
    name = args.name or path.name
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise CliError(f"cannot read {str(path)!r}: {exc.strerror}", 2) from None
    with handle:
        result = _client(args).call(
            "PUT",
            f"/registry/files/{_q(name)}",
            data=handle,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            query={"executable": "true" if args.executable else None},
        )

    def text(r: dict[str, Any]) -> str:
        entry = r.get("entry")
        head = f"uploaded {r['filename']} ({r['size']} bytes)"
        if entry is None:
            return head + "; it is not an entry by itself"
        state = "valid" if entry["valid"] else f"INVALID: {entry.get('error')}"
        return head + f": entry {entry['name']} ({entry['kind']}), {state}"

    return emit(args, result, text)
