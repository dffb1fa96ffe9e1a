"""The load generator for bench_api.py: C keep-alive HTTP/1.1 connections on one asyncio loop.

A separate process so that it shares no GIL with the benchmark, and as light as we can make it
in Python: raw ``asyncio.open_connection``, one request built once per phase and written as is,
the response read by its Content-Length and never parsed. Each connection sends its next
request as soon as it has the whole previous answer (closed loop) until the phase's total is
taken.

    python bench/_loadgen.py PORT CLIENTS

reads phases from stdin, one a line: ``PATH TOTAL``; answers each with one JSON line:
``{"latencies_ns": [...], "elapsed_ns": N, "errors": N, "body_bytes": [min, max],
"head_bytes": N}``. An empty line or end of input ends it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

HOST = "127.0.0.1"


class ProtocolError(Exception):
    """The server answered something this minimal client does not read (no Content-Length)."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[bool, int, int]:
    """(status was 200, body bytes, head bytes) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise ProtocolError(f"no Content-Length in {head[:300]!r}")
    end = lower.index(b"\r\n", at + 2)
    length = int(lower[at + 17 : end])
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200 "), length, len(head)


async def _phase(port: int, clients: int, path: str, total: int) -> dict[str, object]:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    conns = [await asyncio.open_connection(HOST, port) for _ in range(clients)]
    for reader, writer in conns:  # one untimed request each: connected and warm
        writer.write(request)
        await _read_response(reader)
    latencies: list[int] = []
    sizes: set[int] = set()
    head_bytes = 0
    errors = 0
    remaining = total
    clock = time.perf_counter_ns

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal remaining, errors, head_bytes
        while remaining > 0:
            remaining -= 1
            t = clock()
            writer.write(request)
            ok, size, head_bytes = await _read_response(reader)
            latencies.append(clock() - t)
            sizes.add(size)
            if not ok:
                errors += 1

    gc.disable()  # a collection pause would land on whichever request is in flight
    t0 = clock()
    await asyncio.gather(*(client(r, w) for r, w in conns))
    elapsed = clock() - t0
    gc.enable()
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        await writer.wait_closed()
    return {
        "latencies_ns": latencies,
        "elapsed_ns": elapsed,
        "errors": errors,
        "body_bytes": [min(sizes), max(sizes)],
        "head_bytes": head_bytes,
    }


def main() -> None:
    port, clients = int(sys.argv[1]), int(sys.argv[2])
    for line in sys.stdin:
        if not line.strip():
            break
        path, total = line.split()
        result = asyncio.run(_phase(port, clients, path, int(total)))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
