"""Log routes: tail as JSON or text, and following as Server-Sent Events."""

from __future__ import annotations

import json
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from supervisor.testing import FakeNode

API = "/api/v1"


def _events(text: str) -> list[dict[str, str]]:
    """Parse an SSE body into events (dicts of field -> value); comments become ':'."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event: dict[str, str] = {}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")
        events.append(event)
    return events


def test_tail_returns_the_newest_entries_as_json(client: TestClient, running: dict) -> None:
    """GET logs?tail=2 returns the newest two entries, oldest first, with their seq."""
    entries = client.get(f"{API}/instances/cam1/logs", params={"tail": 2}).json()
    assert [(e["seq"], e["message"]) for e in entries] == [(2, "second"), (3, "third")]
    assert entries[0]["source"] == "stdout"


def test_tail_since_returns_entries_after_the_seq(client: TestClient, running: dict) -> None:
    """GET logs?since=1 returns the entries after seq 1."""
    entries = client.get(f"{API}/instances/cam1/logs", params={"since": 1}).json()
    assert [e["seq"] for e in entries] == [2, 3]


def test_tail_as_text_is_one_line_per_entry(
    fake: FakeNode, client: TestClient, running: dict
) -> None:
    """?format=text returns 'time source level message' lines as text/plain."""
    fake.add_log("cam1", "oops", level="error", source="stderr")
    response = client.get(f"{API}/instances/cam1/logs", params={"format": "text", "tail": 2})
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" stdout INFO third")
    assert lines[1].endswith(" stderr ERROR oops")
    assert lines[1].startswith("20")  # an ISO date


@pytest.mark.parametrize(
    "params", [{"tail": 0}, {"tail": "many"}, {"since": -1}, {"format": "xml"}]
)
def test_bad_log_query_is_422(client: TestClient, running: dict, params: dict) -> None:
    """Out-of-range or malformed log query parameters are refused with 422."""
    assert client.get(f"{API}/instances/cam1/logs", params=params).status_code == 422


def test_follow_streams_entries_as_events_with_ids(client: TestClient, running: dict) -> None:
    """GET logs/follow is text/event-stream; each entry is 'id: <seq>' and 'data: <json>'."""
    with client.stream("GET", f"{API}/instances/cam1/logs/follow") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        text = response.read().decode()
    assert text.startswith("id: 1\ndata: {")
    events = _events(text)
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert [json.loads(e["data"])["message"] for e in events] == ["first", "second", "third"]


def test_follow_since_starts_after_the_seq(client: TestClient, running: dict) -> None:
    """?since=2 follows from the entry after seq 2."""
    text = client.get(f"{API}/instances/cam1/logs/follow", params={"since": 2}).text
    assert [e["id"] for e in _events(text)] == ["3"]


def test_follow_resumes_from_last_event_id(client: TestClient, running: dict) -> None:
    """A reconnect with Last-Event-ID resumes after it, even when ?since says otherwise."""
    text = client.get(
        f"{API}/instances/cam1/logs/follow",
        params={"since": 0},
        headers={"Last-Event-ID": "1"},
    ).text
    assert [e["id"] for e in _events(text)] == ["2", "3"]


def test_follow_with_a_bad_last_event_id_is_422(client: TestClient, running: dict) -> None:
    """A Last-Event-ID that is not a sequence number is refused with 422."""
    response = client.get(f"{API}/instances/cam1/logs/follow", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422


def test_follow_sends_keepalive_comments_while_idle(
    fake: FakeNode, app: FastAPI, client: TestClient, running: dict
) -> None:
    """Without entries the stream carries comment lines, so proxies keep it open."""
    app.state.sse_keepalive = 0.02
    fake.follow_forever = True
    seen = ""
    with client.stream("GET", f"{API}/instances/cam1/logs/follow", params={"since": 3}) as r:
        for chunk in r.iter_text():
            seen += chunk
            if seen.count(": keep-alive\n\n") >= 2:
                break
    assert seen.startswith(": keep-alive\n\n")
    deadline = time.monotonic() + 5
    while fake.follow_closed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.follow_closed == 1  # the follower was closed when the client left


def test_follow_closes_the_source_when_it_ends(
    fake: FakeNode, client: TestClient, running: dict
) -> None:
    """A follow whose source ends closes the source generator and ends the response."""
    client.get(f"{API}/instances/cam1/logs/follow")
    assert fake.follow_closed == 1
