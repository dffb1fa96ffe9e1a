"""A fake supervisor with in-memory dicts behind the real app; the real one has system tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from supervisor.api import create_app
from supervisor.audit import AuditLog

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx, our test dependency, still works.
    warnings.filterwarnings("ignore", "Using `httpx`", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from supervisor.testing import FakeNode
from tests.live_server import TOKEN


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    """Where the app's audit log is written."""
    return tmp_path / "state" / "audit.jsonl"


@pytest.fixture
def audit(audit_path: Path) -> Iterator[AuditLog]:
    """A file-backed audit log, closed after the test."""
    with AuditLog(audit_path, capacity=50) as log:
        yield log


@pytest.fixture
def app(fake: FakeNode, audit: AuditLog) -> FastAPI:
    """The real app around the fake supervisor, without a token."""
    return create_app(fake, audit=audit)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A test client of ``app``."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def secured(fake: FakeNode, audit: AuditLog) -> Iterator[TestClient]:
    """A test client of an app that needs the bearer token ``TOKEN``."""
    with TestClient(create_app(fake, token=TOKEN, audit=audit)) as c:
        yield c


@pytest.fixture
def running(fake: FakeNode, client: TestClient) -> dict[str, Any]:
    """An instance ``cam1`` of ``camera``, running, with three log entries."""
    response = client.post("/api/v1/instances", json={"name": "cam1", "entry": "camera"})
    assert response.status_code == 201, response.text
    for message in ("first", "second", "third"):
        fake.add_log("cam1", message)
    return response.json()
