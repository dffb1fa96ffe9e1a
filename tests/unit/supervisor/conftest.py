"""Fixtures shared by the unit tests of the supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_supervisor import FakeSupervisor, add_camera_entry


@pytest.fixture
def fake(tmp_path: Path) -> FakeSupervisor:
    """A fake supervisor with one valid entry ``camera`` and one broken entry ``broken``."""
    sup = FakeSupervisor(tmp_path)
    add_camera_entry(sup)
    sup.registry.files["broken.json"] = b'{"builtin": 3}'
    return sup


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty registry folder."""
    folder = tmp_path / "registry"
    folder.mkdir()
    return folder
