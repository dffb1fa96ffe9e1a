"""Fixtures shared by the unit tests of the supervisor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor.cli import main
from supervisor.testing import FakeNode
from tests.live_server import TOKEN, UPLOAD_LIMIT, LiveServer, Run, serve, stop


@pytest.fixture
def fake(tmp_path: Path) -> FakeNode:
    """A fake node with one valid entry ``camera`` (with parameters) and one broken entry
    ``broken``."""
    node = FakeNode(tmp_path, max_upload_bytes=UPLOAD_LIMIT)
    node.add_entry(
        "camera", {"builtin": "camera_simulation", "parameters": {"exposure": 1, "roi": {"x": 0}}}
    )
    node.registry.files["broken.json"] = b'{"builtin": 3}'
    return node


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty registry folder."""
    folder = tmp_path / "registry"
    folder.mkdir()
    return folder


@pytest.fixture
def live(fake: FakeNode, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A server without a token; PIPEVISOR_URL points at it."""
    with capture_logs():  # the server's log lines stay out of the CLI's output
        server = serve(fake, None)
        monkeypatch.setenv("PIPEVISOR_URL", server.url)
        monkeypatch.delenv("PIPEVISOR_TOKEN", raising=False)
        yield server
        stop(server)


@pytest.fixture
def secured(fake: FakeNode, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A server that needs the token ``TOKEN``; PIPEVISOR_URL points at it."""
    with capture_logs():
        server = serve(fake, TOKEN)
        monkeypatch.setenv("PIPEVISOR_URL", server.url)
        monkeypatch.delenv("PIPEVISOR_TOKEN", raising=False)
        yield server
        stop(server)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``pipevisor ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def runner(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return runner
