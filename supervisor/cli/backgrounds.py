"""``pipevisor background ...``: collect, list, download and upload background images."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .client import CliError
from .commands import _client, _q
from .output import emit, format_table

__all__ = [
    "cmd_background_collect",
    "cmd_background_get",
    "cmd_background_ls",
    "cmd_background_put",
]


def _row(b: dict[str, Any]) -> list[Any]:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["created"]))
    return [
        b["id"],
        b.get("camera") or "",
        "x".join(map(str, b["shape"][::-1])),
        b["dtype"],
        created,
    ]


_HEAD = ["id", "camera", "width x height", "dtype", "created"]


def cmd_background_collect(args: argparse.Namespace) -> int:
    """Average N images of a running camera instance into a new background."""
    client = _client(args)
    client.timeout = max(client.timeout, 20.0 + args.n)
    info = client.call(
        "POST", f"/instances/{_q(args.name)}/backgrounds", query={"n_images": args.n}
    )
    return emit(args, info, lambda b: f"collected {b['id']} from {args.n} images")


def cmd_background_ls(args: argparse.Namespace) -> int:
    """List the node's backgrounds (of one camera with --camera)."""
    found = _client(args).call("GET", "/backgrounds", query={"camera": args.camera})
    table = format_table(_HEAD, [_row(b) for b in found])
    return emit(args, found, lambda _: table if found else "no backgrounds")


def cmd_background_get(args: argparse.Namespace) -> int:
    """Download a background as a .npy file."""
    out: Path = args.output or Path(f"{args.id}.npy")
    with _client(args).open("GET", f"/backgrounds/{_q(args.id)}/data") as response:
        data = response.read()
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {str(out)!r}: {exc.strerror}", 2) from None
    result = {"id": args.id, "file": str(out), "size": len(data)}
    return emit(args, result, lambda r: f"wrote {r['file']} ({r['size']} bytes)")


def cmd_background_put(args: argparse.Namespace) -> int:
    """Upload a .npy file (numpy.save of a 2-D array) as a background."""
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {str(args.file)!r}: {exc.strerror}", 2) from None
    info = _client(args).call(
        "PUT",
        f"/backgrounds/{_q(args.id)}/data",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    return emit(args, info, lambda b: f"uploaded {b['id']}: {format_table(_HEAD, [_row(b)])}")
