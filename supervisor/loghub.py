"""The log hub: every instance's logs in one place, bounded, re-published, followable.

Logs arrive three ways: structured records on the LOG channel (the hub binds a PULL, programs
connect a PUSH) and the lines a program writes to stdout and stderr (``attach_pipe``). Each
instance has an ``InstanceLog`` (ring + rate limit). Every stored entry is re-published on a
PUB (multipart ``[instance name, JSON entry]``) and handed to the in-process followers. The PUB
is an XPUB: the hub reads the subscriptions and encodes an entry only when some subscriber's
prefix matches its instance, so unfollowed logs cost no JSON.

Hot paths stay cheap: the LOG task drains up to ``batch`` frames per wakeup and then yields to the
loop; a rate-limited instance's pipe chunks are counted with ``bytes.count``. A gap (lines
dropped by the rate limit) is closed by the next admitted line or, when the input goes quiet, by
a timer: its notice and last lines are then stored.
"""

from __future__ import annotations

import asyncio
import json
import time as _time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
import zmq
import zmq.asyncio

from .contract import MessageError, parse_log_record
from .logring import Follower, InstanceLog, cut_head, cut_tail
from .nodeapi.models import LogEntry
from .pipes import PipeReader, RingSink

__all__ = ["LogEntry", "LogHub"]

_STAT_KEYS = tuple(InstanceLog("", capacity=1).stats())  # the counters an unknown instance has

log = structlog.get_logger(__name__)

_SEND_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_SEND_LAST = int(zmq.NOBLOCK)


class LogHub:
    """Per-instance bounded logs fed by the LOG channel and the programs' pipes.

    Args:
        capacity: entries kept per instance.
        rate: lines per second stored per instance (token bucket), the rest counted as dropped.
        burst: lines stored at once before the rate applies.
        max_line_bytes: a longer message keeps its head and a marker; a longer ``exc`` keeps
            its last ``4 * max_line_bytes`` bytes (the end of a traceback matters most).
        max_record_bytes: LOG frames longer than this are refused as malformed, so ``fields``
            cannot grow a ring without bound (default ``8 * max_line_bytes``).
        batch: LOG frames handled per wakeup before yielding to the event loop.
        follower_queue: entries buffered per follower before it is skipped ahead.
    """

    def __init__(
        self,
        *,
        capacity: int = 2000,
        rate: float = 5000.0,
        burst: int = 10000,
        max_line_bytes: int = 8192,
        max_record_bytes: int | None = None,
        batch: int = 1000,
        follower_queue: int = 1000,
    ) -> None:
        self.capacity = capacity
        self.rate = rate
        self.burst = burst
        self.max_line_bytes = max_line_bytes
        self.max_record_bytes = max_record_bytes or 8 * max_line_bytes
        self.batch = batch
        self.follower_queue = follower_queue
        self.log_url = ""
        self.pub_url = ""
        self.malformed = 0
        self._last_warning = 0.0
        self._logs: dict[str, InstanceLog] = {}
        self._followers: dict[str, set[Follower]] = {}
        self._pipes: set[PipeReader] = set()
        self._pull: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._topics: set[bytes] = set()  # the subscribers' prefixes
        self._wanted: dict[str, bool] = {}  # instance -> some prefix matches (a cache)
        self._quiet: dict[str, asyncio.TimerHandle] = {}  # gaps waiting for quiet input
        # Told of every error (or critical) record from the LOG channel, rate limit or not:
        # (instance, run, message). The supervisor shows the last one in a failed run's reason.
        self.on_error: Callable[[str, int, str], None] | None = None

    async def start(
        self,
        ctx: zmq.asyncio.Context | zmq.Context[zmq.Socket[bytes]],
        host: str = "127.0.0.1",
        *,
        pub_host: str | None = None,
        advertise: str | None = None,
    ) -> None:
        """Bind the LOG PULL on an ephemeral port of ``host`` (programs are local) and the PUB
        on one of ``pub_host`` (default ``host``; clients, a cluster manager among them, may
        be elsewhere), its URL naming ``advertise``; start receiving."""
        pull = zmq.Socket(ctx, zmq.PULL)
        pub = zmq.Socket(ctx, zmq.XPUB)
        for sock in (pull, pub):
            sock.linger = 0
        try:
            pull.bind(f"tcp://{host}:*")
            pub.bind(f"tcp://{pub_host or host}:*")
        except zmq.ZMQError:
            pull.close(linger=0)
            pub.close(linger=0)
            raise
        self.log_url = pull.get_string(zmq.LAST_ENDPOINT)
        self.pub_url = pub.get_string(zmq.LAST_ENDPOINT)
        if advertise:
            self.pub_url = f"tcp://{advertise}:{self.pub_url.rpartition(':')[2]}"
        self._pull, self._pub = pull, pub
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drain(pull, self._on_frame), name="loghub-log"),
            loop.create_task(self._drain(pub, self._on_subscription), name="loghub-subscriptions"),
        ]
        log.info("loghub_started", log_url=self.log_url, pub_url=self.pub_url)

    async def close(self) -> None:
        """Stop receiving, detach every pipe, end the followers, close the sockets."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        for reader in list(self._pipes):
            reader.close()
        for timer in self._quiet.values():
            timer.cancel()
        self._quiet.clear()
        self.end_followers()
        for sock in (self._pull, self._pub):
            if sock is not None:
                sock.close(linger=0)
        self._pull = self._pub = None

    def end_followers(self) -> None:
        """End every live ``follow``: at shutdown, before the API waits for its connections
        (an open log tail in a browser would otherwise hold the shutdown forever)."""
        for followers in self._followers.values():
            for follower in followers:
                follower.end()

    def _log_of(self, instance: str) -> InstanceLog:
        ring = self._logs.get(instance)
        if ring is None:
            ring = InstanceLog(
                instance,
                capacity=self.capacity,
                rate=self.rate,
                burst=self.burst,
                on_store=self._on_store,
                on_gap=self._on_gap,
            )
            self._logs[instance] = ring
        return ring

    def add(
        self,
        instance: str,
        run: int,
        source: str,
        message: str,
        *,
        level: str = "info",
        logger: str = "",
        fields: dict[str, Any] | None = None,
        exc: str | None = None,
        time: float | None = None,
    ) -> LogEntry | None:
        """Store one entry; None when the instance's rate limit refused it (it may still be
        stored when the gap ends, as one of its last lines).

        Entries with source "supervisor" (the supervisor's own events for the instance, such as
        "exited with code 1") bypass the rate limit: they are rare and matter most in a flood.
        """
        ring = self._log_of(instance)
        limit = self.max_line_bytes
        if len(message) * 4 > limit:  # cheap test first: a char is at most 4 bytes
            message = cut_head(message, limit)
        if exc is not None and len(exc) > limit:
            exc = cut_tail(exc, 4 * limit)
        if source == "supervisor":
            ring.received += 1
        elif not ring.admit(1, run=run):
            now = _time.time() if time is None else time
            ring.hold(LogEntry(0, now, instance, run, source, level, message, logger, fields, exc))
            return None
        return ring.store(
            run, source, message, level=level, logger=logger, fields=fields, exc=exc, time=time
        )

    def attach_pipe(self, instance: str, run: int, fd: int, source: str) -> None:
        """Read a child's stdout or stderr pipe until EOF. Takes ownership of ``fd``.

        Call it on the event loop. Lines from "stdout" get level "info", from "stderr"
        "warning". The fd is closed at EOF or by ``close``; pass a fd nobody else closes (the
        read end of an ``os.pipe()``, or ``os.dup`` of a Popen pipe's fileno).
        """
        reader = PipeReader(
            fd,
            RingSink(self._log_of(instance), run, source),
            max_line_bytes=self.max_line_bytes,
            on_close=self._pipes.discard,
        )
        self._pipes.add(reader)
        reader.start()

    async def _drain(self, sock: zmq.Socket[bytes], handle: Callable[[bytes], None]) -> None:
        # The async wrapper only waits for readability; frames are read through the plain
        # socket with NOBLOCK, which costs no Future per frame.
        waiter = zmq.asyncio.Socket.from_socket(sock)
        batch = self.batch
        while True:
            await waiter.poll(None)  # flags default to POLLIN (pyzmq's stub omits them)
            for _ in range(batch):
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handle(frame)
            await asyncio.sleep(0)  # let REST and process control run between batches

    def _on_subscription(self, frame: bytes) -> None:
        # XPUB passes a topic up on its first subscriber and down on its last one's leaving.
        if frame[:1] == b"\x01":
            self._topics.add(frame[1:])
        elif frame[:1] == b"\x00":
            self._topics.discard(frame[1:])
        self._wanted.clear()

    def _on_frame(self, frame: bytes) -> None:
        if len(frame) > self.max_record_bytes:
            self._malformed(f"frame of {len(frame)} bytes over {self.max_record_bytes}")
            return
        try:
            record = parse_log_record(frame)
        except MessageError as exc:
            self._malformed(str(exc))
            return
        if self.on_error is not None and record.level in ("error", "critical"):
            self.on_error(record.instance, record.run, record.message)
        self.add(
            record.instance,
            record.run,
            "log",
            record.message,
            level=record.level,
            logger=record.logger,
            fields=record.fields or None,
            exc=record.exc,
            time=record.time,
        )

    def _on_gap(self, ring: InstanceLog) -> None:
        if ring.instance not in self._quiet:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a plain test): the next admitted line closes the gap
            delay = InstanceLog.RESUME_SECONDS
            self._quiet[ring.instance] = loop.call_later(delay, self._check_quiet, ring)

    def _check_quiet(self, ring: InstanceLog) -> None:
        del self._quiet[ring.instance]
        if self._logs.get(ring.instance) is not ring or not ring.in_gap:
            return
        idle = ring.idle()
        if idle >= InstanceLog.RESUME_SECONDS:
            ring.release()
        else:
            self._quiet[ring.instance] = asyncio.get_running_loop().call_later(
                InstanceLog.RESUME_SECONDS - idle, self._check_quiet, ring
            )

    def _malformed(self, error: str) -> None:
        self.malformed += 1
        now = _time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            log.warning("log_record_malformed", error=error[:500], malformed=self.malformed)

    def _on_store(self, entry: LogEntry) -> None:
        name = entry.instance
        wanted = self._wanted.get(name)
        if wanted is None:
            topic = name.encode("utf-8", "replace")
            wanted = self._wanted[name] = any(topic.startswith(t) for t in self._topics)
        if wanted and self._pub is not None:
            try:
                self._pub.send(name.encode("utf-8", "replace"), _SEND_MORE)
                self._pub.send(json.dumps(entry.to_dict(), default=str).encode(), _SEND_LAST)
            except zmq.ZMQError:
                pass  # a full PUB drops, as PUB does
        followers = self._followers.get(name)
        if followers:
            for follower in followers:
                follower.offer(entry)

    def tail(self, instance: str, n: int = 100, since_seq: int | None = None) -> list[LogEntry]:
        """The newest ``n`` entries, or the first ``n`` after ``since_seq``; [] if unknown."""
        ring = self._logs.get(instance)
        return [] if ring is None else ring.tail(n, since_seq)

    def counters(self, instance: str) -> tuple[int, int, int, int]:
        """(received, stored, dropped, evicted): the cheap subset ``stats`` has, for listings."""
        ring = self._logs.get(instance)
        if ring is None:
            return (0, 0, 0, 0)
        return (ring.received, ring.stored, ring.dropped, ring.evicted)

    def stats(self, instance: str) -> dict[str, int]:
        """The instance's counters (all zero for an unknown instance)."""
        ring = self._logs.get(instance)
        if ring is None:
            return dict.fromkeys(_STAT_KEYS, 0)
        return ring.stats()

    async def follow(self, instance: str, since_seq: int | None = None) -> AsyncIterator[LogEntry]:
        """Stored entries after ``since_seq`` (all stored ones if None), then live ones.

        Ends when the hub closes or the instance is forgotten.
        """
        follower = Follower(instance, self.follower_queue)
        followers = self._followers.setdefault(instance, set())
        followers.add(follower)
        # Registering and taking the backlog happen in one step: no entry is missed or doubled.
        ring = self._logs.get(instance)
        backlog = (
            ring.tail(self.capacity, since_seq if since_seq is not None else 0) if ring else []
        )
        try:
            for entry in backlog:
                yield entry
            while (live := await follower.get()) is not None:
                yield live
        finally:
            followers.discard(follower)
            if not followers and self._followers.get(instance) is followers:
                del self._followers[instance]

    def forget(self, instance: str) -> None:
        """The instance was deleted: drop its ring and end its followers."""
        self._logs.pop(instance, None)
        timer = self._quiet.pop(instance, None)
        if timer is not None:
            timer.cancel()
        for follower in self._followers.pop(instance, ()):
            follower.end()

    def instances(self) -> list[str]:
        """Names of the instances with a log."""
        return list(self._logs)

    def follower_count(self, instance: str) -> int:
        """Live ``follow`` generators of the instance."""
        return len(self._followers.get(instance, ()))

    @property
    def attached_pipes(self) -> int:
        """Pipes being read (they detach at EOF)."""
        return len(self._pipes)
