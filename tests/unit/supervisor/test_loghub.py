"""The log hub: LOG records over real ZMQ, the re-publishing PUB, add, follow and forget."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import zmq
import zmq.asyncio

from supervisor.contract import LogRecord, dump_message
from supervisor.loghub import LogHub
from supervisor.nodeapi.models import LogEntry
from tests.support import run, wait_until


@asynccontextmanager
async def started_hub(**kwargs: Any) -> AsyncIterator[tuple[LogHub, zmq.asyncio.Context]]:
    ctx = zmq.asyncio.Context()
    hub = LogHub(**kwargs)
    try:
        await hub.start(ctx)
        yield hub, ctx
    finally:
        await hub.close()
        ctx.term()  # hangs if any socket was left open


@asynccontextmanager
async def socket(ctx: zmq.asyncio.Context, kind: int, url: str) -> AsyncIterator[Any]:
    sock = ctx.socket(kind)
    sock.linger = 0
    try:
        sock.connect(url)
        yield sock
    finally:
        sock.close(linger=0)


def record(instance: str = "cam", message: str = "hello", **kwargs: Any) -> bytes:
    return dump_message(LogRecord(instance=instance, run=1, time=123.5, message=message, **kwargs))


def test_log_records_over_push_are_stored_with_fields_and_exc() -> None:
    """A LogRecord sent by a program's PUSH is stored with its level, logger, fields and exc."""

    async def scenario() -> list[LogEntry]:
        async with started_hub() as (hub, ctx), socket(ctx, zmq.PUSH, hub.log_url) as push:
            assert hub.log_url.startswith("tcp://127.0.0.1:")
            await push.send(
                record(level="error", logger="app.io", fields={"frame": 7}, exc="Traceback: x")
            )
            await push.send(record("other", "second"))
            await wait_until(lambda: hub.tail("other"), lambda: hub.instances())
            return hub.tail("cam")

    (entry,) = run(scenario())
    assert entry.to_dict() == {
        "seq": 1,
        "time": 123.5,
        "instance": "cam",
        "run": 1,
        "source": "log",
        "level": "error",
        "message": "hello",
        "logger": "app.io",
        "fields": {"frame": 7},
        "exc": "Traceback: x",
    }


def test_malformed_frames_are_counted_and_the_next_record_is_stored() -> None:
    """Bad JSON, a wrong shape and an oversized frame are counted, warned once, never raised."""

    async def scenario() -> tuple[LogHub, list[dict[str, Any]]]:
        with structlog.testing.capture_logs() as logs:
            async with (
                started_hub(max_record_bytes=1000) as (hub, ctx),
                socket(ctx, zmq.PUSH, hub.log_url) as push,
            ):
                await push.send(b"not json {")
                await push.send(b'{"kind": "log", "instance": "cam"}')
                await push.send(record(message="x" * 2000))
                await push.send(record(message="good"))
                await wait_until(lambda: hub.tail("cam"), lambda: hub.malformed)
        return hub, logs

    hub, logs = run(scenario())
    assert hub.malformed == 3
    assert [e.message for e in hub.tail("cam")] == ["good"]
    warnings = [e for e in logs if e["event"] == "log_record_malformed"]
    assert len(warnings) == 1  # at most one per second
    assert "not a JSON message" in warnings[0]["error"]


def test_a_flood_of_log_records_is_rate_limited_and_counted() -> None:
    """Records over the budget are dropped and counted; once quiet, the notice and the
    flood's last records are stored."""

    async def scenario() -> tuple[dict[str, int], list[str]]:
        async with (
            started_hub(rate=0.001, burst=3) as (hub, ctx),
            socket(ctx, zmq.PUSH, hub.log_url) as push,
        ):
            for i in range(50):
                await push.send(record(message=f"rec {i}"))
            done = lambda: hub.stats("cam")["received"] == 50 and not hub.stats("cam")["held"]  # noqa: E731
            await wait_until(done, lambda: hub.stats("cam"))
            return hub.stats("cam"), [e.message for e in hub.tail("cam")]

    stats, messages = run(scenario())
    assert (stats["stored"], stats["dropped"], stats["notices"]) == (24, 27, 1)
    assert messages[:4] == ["rec 0", "rec 1", "rec 2", "27 lines dropped by the rate limit"]
    assert messages[4:] == [f"rec {i}" for i in range(30, 50)]  # the last words of the flood


def test_pub_republishes_entries_under_the_instance_topic() -> None:
    """A SUB subscribed to one instance's topic receives only that instance's entries."""

    async def scenario() -> list[list[bytes]]:
        async with started_hub() as (hub, ctx), socket(ctx, zmq.SUB, hub.pub_url) as sub:
            sub.subscribe(b"cam-a")
            # Slow joiner: keep logging until the subscription has arrived and one entry passed.
            deadline = time.monotonic() + 10
            while not await sub.poll(10):
                assert time.monotonic() < deadline, "no entry reached the subscriber"
                hub.add("cam-b", 1, "stdout", "warm-up b")
                hub.add("cam-a", 1, "stdout", "warm-up a")
            got = [await sub.recv_multipart()]
            hub.add("cam-b", 1, "stdout", "not for you")
            hub.add("cam-a", 1, "stderr", "last", level="warning")
            while json.loads(got[-1][1])["message"] != "last":
                got.append(await asyncio.wait_for(sub.recv_multipart(), 5))
            return got

    frames = run(scenario())
    assert {topic for topic, _ in frames} == {b"cam-a"}
    entries = [json.loads(body) for _, body in frames]
    assert {e["instance"] for e in entries} == {"cam-a"}
    assert entries[-1]["source"] == "stderr"
    assert entries[-1]["level"] == "warning"
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_add_cuts_long_messages_and_keeps_the_end_of_a_long_traceback() -> None:
    """message keeps its head, exc its tail, each with a marker."""
    hub = LogHub(max_line_bytes=100)
    entry = hub.add("cam", 1, "log", "m" * 150, exc="t" * 450 + "ValueError: boom")
    assert entry is not None
    assert entry.message == "m" * 100 + " [... 50 bytes truncated]"
    assert entry.exc is not None
    assert entry.exc.endswith("ValueError: boom")
    assert entry.exc.startswith("[... 66 bytes truncated] ")


def test_supervisor_events_bypass_the_rate_limit() -> None:
    """An instance's own events ("exited with code 1") are stored even during a flood."""
    hub = LogHub(rate=0.001, burst=1)
    assert hub.add("cam", 1, "stdout", "one") is not None
    assert hub.add("cam", 1, "stdout", "two") is None
    exited = hub.add("cam", 1, "supervisor", "exited with code 1", level="error")
    assert exited is not None
    assert [e.message for e in hub.tail("cam")] == ["one", "exited with code 1"]
    assert hub.stats("cam")["held"] == 1


def test_unknown_instances_have_no_entries_and_zero_counters() -> None:
    """tail of an unknown instance is [] and its stats are all zero."""
    hub = LogHub()
    assert hub.tail("nope") == []
    assert hub.stats("nope")["received"] == 0
    assert hub.instances() == []


def test_forget_drops_the_ring() -> None:
    """A forgotten instance has no entries; a new one of the same name starts at seq 1."""
    hub = LogHub()
    hub.add("cam", 1, "stdout", "old")
    hub.forget("cam")
    assert hub.tail("cam") == []
    assert hub.add("cam", 2, "stdout", "new").seq == 1  # type: ignore[union-attr]


def test_follow_yields_stored_then_live_entries_and_cleans_up() -> None:
    """follow gives the backlog, then entries added later; aclose removes its queue."""

    async def scenario() -> tuple[list[str], int]:
        hub = LogHub()
        for i in range(3):
            hub.add("cam", 1, "stdout", f"stored {i}")
        agen = hub.follow("cam")
        got = [(await anext(agen)).message for _ in range(3)]
        hub.add("cam", 1, "stdout", "live 0")
        hub.add("other", 1, "stdout", "not followed")
        hub.add("cam", 1, "stdout", "live 1")
        got += [(await anext(agen)).message for _ in range(2)]
        await agen.aclose()
        return got, hub.follower_count("cam")

    got, followers = run(scenario())
    assert got == ["stored 0", "stored 1", "stored 2", "live 0", "live 1"]
    assert followers == 0


def test_follow_resumes_after_since_seq() -> None:
    """follow(since_seq=n) starts with the entry after n."""

    async def scenario() -> list[int]:
        hub = LogHub()
        for i in range(5):
            hub.add("cam", 1, "stdout", f"line {i}")
        agen = hub.follow("cam", since_seq=3)
        try:
            return [(await anext(agen)).seq for _ in range(2)]
        finally:
            await agen.aclose()

    assert run(scenario()) == [4, 5]


def test_a_slow_follower_gets_a_skipped_marker() -> None:
    """Entries beyond a follower's queue are skipped and reported once it catches up."""

    async def scenario() -> list[LogEntry]:
        hub = LogHub(follower_queue=5)
        hub.add("cam", 1, "stdout", "first")
        agen = hub.follow("cam")
        try:
            got = [await anext(agen)]  # the backlog; the follower is registered now
            for i in range(20):
                hub.add("cam", 1, "stdout", f"burst {i}")
            got += [await anext(agen) for _ in range(6)]
            hub.add("cam", 1, "stdout", "after")
            got.append(await anext(agen))
            return got
        finally:
            await agen.aclose()

    got = run(scenario())
    assert [e.message for e in got[:6]] == ["first"] + [f"burst {i}" for i in range(5)]
    marker = got[6]
    assert marker.message == "15 entries skipped (follower too slow)"
    assert (marker.source, marker.level, marker.seq) == ("supervisor", "warning", 21)
    assert got[7].message == "after"


def test_a_cancelled_follower_removes_its_queue() -> None:
    """Cancelling the task that follows leaves no follower behind."""

    async def scenario() -> int:
        hub = LogHub()

        async def consume() -> None:
            async for _ in hub.follow("cam"):
                pass

        task = asyncio.create_task(consume())
        await wait_until(lambda: hub.follower_count("cam") == 1, lambda: task)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return hub.follower_count("cam")

    assert run(scenario()) == 0


def test_followers_end_when_the_hub_closes_or_the_instance_is_forgotten() -> None:
    """A waiting follower finishes at close() and at forget()."""

    async def scenario() -> None:
        async def consume(hub: LogHub, name: str) -> list[str]:
            return [e.message async for e in hub.follow(name)]

        async with started_hub() as (hub, _):
            hub.add("a", 1, "stdout", "a0")
            closing = asyncio.create_task(consume(hub, "a"))
            forgotten = asyncio.create_task(consume(hub, "b"))
            await wait_until(lambda: hub.follower_count("b") == 1, lambda: hub.instances())
            hub.forget("b")
            assert await asyncio.wait_for(forgotten, 5) == []
        assert await asyncio.wait_for(closing, 5) == ["a0"]

    run(scenario())


def test_the_pub_binds_where_clients_reach_it_and_names_the_advertised_host() -> None:
    """The log stream is for clients (a cluster manager among them): bound on the stream
    interface, its URL naming the advertised host, while programs log to the local PULL."""

    async def scenario() -> tuple[str, str, list[bytes]]:
        ctx = zmq.asyncio.Context()
        hub = LogHub()
        try:
            await hub.start(ctx, "127.0.0.1", pub_host="127.0.0.1", advertise="localhost")
            async with socket(ctx, zmq.SUB, hub.pub_url) as sub:
                sub.subscribe(b"")
                deadline = time.monotonic() + 10
                while not await sub.poll(10):
                    assert time.monotonic() < deadline, "nothing reached the subscriber"
                    hub.add("cam", 1, "stdout", "hello")
                return hub.pub_url, hub.log_url, await sub.recv_multipart()
        finally:
            await hub.close()
            ctx.term()

    pub_url, log_url, frames = run(scenario())
    assert pub_url.startswith("tcp://localhost:")
    assert log_url.startswith("tcp://127.0.0.1:")
    assert frames[0] == b"cam"
