"""Logs of a real program: follow over SSE and ZMQ, and a flood that memory survives."""

from __future__ import annotations

import json

import httpx
import psutil
import pytest
import zmq

from tests.support import wait_for

from .conftest import shell

pytestmark = pytest.mark.system

FLOOD = """
import sys, time
line = "x" * 60 + "\\n"
end = time.monotonic() + 3.0
n = 0
while time.monotonic() < end:
    sys.stdout.write(line * 1000)
    n += 1000
sys.stdout.flush()
print(f"total {n}", flush=True)
time.sleep(600)
"""


def test_follow_streams_new_lines_as_server_sent_events(start_supervisor, write_entry):
    """GET .../logs/follow delivers lines as they are printed, each with its sequence id."""
    write_entry(
        "ticker.sh",
        shell('i=0\nwhile true; do i=$((i+1)); echo "tick $i"; sleep 0.05; done'),
        executable=True,
    )
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "ticker", "entry": "ticker"}).raise_for_status()
    seen = []
    with httpx.stream(
        "GET", f"{sup.url}/api/v1/instances/ticker/logs/follow", timeout=10
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                entry = json.loads(line[5:])
                if entry["source"] == "stdout":
                    seen.append(entry)
                if len(seen) >= 5:
                    break
    ticks = [int(e["message"].split()[1]) for e in seen]
    assert ticks == list(range(ticks[0], ticks[0] + 5))
    assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)


def test_an_open_follow_ends_cleanly_when_the_supervisor_stops(start_supervisor, write_entry):
    """SIGTERM ends the live follows, so an operator's open log tail cannot hold the shutdown
    (uvicorn waits for its connections): the stream finishes, it is not cut."""
    write_entry("quiet.sh", shell("echo started\nexec sleep 600"), executable=True)
    sup = start_supervisor()
    sup.api("POST", "/instances", json={"name": "quiet", "entry": "quiet"}).raise_for_status()
    with httpx.stream(
        "GET", f"{sup.url}/api/v1/instances/quiet/logs/follow", timeout=30
    ) as response:
        lines = response.iter_lines()
        wait_for(
            lambda: "started" in next(lines), timeout=15, what="the program's line in the follow"
        )
        assert sup.stop() == 0
        for _ in lines:  # a stream cut by the server raises RemoteProtocolError here
            pass


def test_logs_are_republished_on_zmq_one_topic_per_instance(start_supervisor, write_entry):
    """A ZMQ SUB on the log stream, subscribed to one instance, gets that instance's lines only."""
    write_entry(
        "chat.sh",
        shell('while true; do echo "from $PIPEVISOR_INSTANCE"; sleep 0.05; done'),
        executable=True,
    )
    sup = start_supervisor()
    for name in ("one", "two"):
        sup.api("POST", "/instances", json={"name": name, "entry": "chat"}).raise_for_status()
    url = sup.api("GET", "/logs/stream").json()["url"]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    try:
        sock.setsockopt(zmq.SUBSCRIBE, b"two")
        sock.connect(url)
        received = []
        while len(received) < 5:
            assert sock.poll(5000), "no log entry within 5 s"
            topic, payload = sock.recv_multipart()
            received.append((topic, json.loads(payload)))
        assert {t for t, _ in received} == {b"two"}
        assert all(e["instance"] == "two" for _, e in received)
    finally:
        sock.close(linger=0)
        ctx.term()


def test_a_log_flood_neither_grows_memory_nor_hides_the_drops(start_supervisor, write_entry):
    """A program printing ~100k lines/s: the ring stays bounded and the drops are counted."""
    write_entry("flood.py", FLOOD)
    sup = start_supervisor()
    supervisor_process = psutil.Process(sup.proc.pid)
    rss_before = supervisor_process.memory_info().rss
    sup.api("POST", "/instances", json={"name": "flood", "entry": "flood"}).raise_for_status()
    total_line = wait_for(
        lambda: next(
            (
                e["message"]
                for e in sup.api("GET", "/instances/flood/logs", params={"tail": 50}).json()
                if e["message"].startswith("total ")
            ),
            None,
        ),
        timeout=30,
        what="the flood's total line",
    )
    printed = int(total_line.split()[1]) + 1
    logs = sup.instance("flood")["logs"]
    assert printed > 100_000
    assert logs["dropped"] > 0
    assert logs["stored"] <= logs["received"]
    assert logs["received"] >= printed
    assert len(sup.api("GET", "/instances/flood/logs", params={"tail": 100000}).json()) <= 2000
    growth = supervisor_process.memory_info().rss - rss_before
    assert growth < 100 * 2**20, f"supervisor grew by {growth / 2**20:.0f} MiB"
