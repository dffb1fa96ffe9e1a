"""What the commands print: aligned tables, key: value blocks, log lines."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "emit",
    "format_log_entry",
    "format_table",
    "instance_text",
    "kv",
    "node_text",
    "one_line",
    "when",
]


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()
) -> str:
    """Rows as aligned columns under upper-case headers; columns in ``right`` align right."""
    cells = [[str(h).upper() for h in headers]] + [
        ["-" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right = set(right)
    lines = []
    for row in cells:
        parts = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    """Aligned ``key: value`` lines; empty values are left out."""
    pairs = [(k, v) for k, v in pairs if v not in (None, "", {}, [])]
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in pairs)


def when(t: float | None) -> str | None:
    """A unix time as local ISO 8601 with milliseconds (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def format_log_entry(entry: dict[str, Any]) -> str:
    """``time source level message``, the traceback (if any) on the following lines."""
    line = (
        f"{when(entry.get('time') or 0)} {entry.get('source', '-')} "
        f"{str(entry.get('level', '-')).upper()} {entry.get('message', '')}"
    )
    exc = entry.get("exc")
    return f"{line}\n{exc.rstrip()}" if exc else line


def one_line(info: dict[str, Any]) -> str:
    """An instance as one line: name, state, pid, stream and reason."""
    text = f"{info['name']}: {info['state']}"
    if info.get("pid"):
        text += f" (pid {info['pid']})"
    if info.get("stream"):
        text += f", stream {info['stream']}"
    if info.get("reason"):
        text += f"; {info['reason']}"
    return text


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> int:
    """Print ``data`` as JSON with ``--json``, else as ``text(data)``; returns 0."""
    print(json.dumps(data, indent=2) if args.json else text(data))
    return 0


def instance_text(i: dict[str, Any]) -> str:
    """An instance in detail, as aligned ``key: value`` lines."""
    stats = i.get("stats") or {}
    logs = i.get("logs") or {}
    exit_text = i.get("exit_signal") or i.get("exit_code")
    pairs = [
        ("name", i["name"]),
        ("entry", i["entry"]),
        ("state", i["state"]),
        ("desired", i.get("desired")),
        ("reason", i.get("reason")),
        ("pid", i.get("pid")),
        ("run", i.get("run")),
        ("restarts", i.get("restarts")),
        ("last exit", exit_text),
        ("started", when(i.get("started_at"))),
        ("next start", when(i.get("next_start_at"))),
        ("ready", i.get("ready")),
        ("speaks contract", i.get("speaks_contract")),
        ("stream", i.get("stream")),
        ("output mode", i.get("output_mode")),
        ("input", i.get("data_url")),
        ("rate in/out", f"{stats.get('rate_in', 0.0):.1f} / {stats.get('rate_out', 0.0):.1f} /s"),
        ("messages in/out", f"{stats.get('messages_in', 0)} / {stats.get('messages_out', 0)}"),
        ("drops", stats.get("drops")),
        ("errors", stats.get("errors")),
        ("malformed", stats.get("malformed")),
        ("clients", stats.get("clients")),
        ("log lines", f"{logs.get('stored', 0)} stored, {logs.get('dropped', 0)} dropped"),
        ("config seq", i.get("config_seq")),
        ("config", json.dumps(i.get("config") or {}, sort_keys=True)),
    ]
    return kv(pairs)


def node_text(node: dict[str, Any]) -> str:
    """The node info as aligned ``key: value`` lines."""
    pairs = []
    for key, value in node.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif key == "uptime" and isinstance(value, int | float):
            value = f"{value:.0f} s"
        elif key == "started_at" and isinstance(value, int | float):
            value = when(value)
        pairs.append((key.replace("_", " "), value))
    return kv(pairs)
