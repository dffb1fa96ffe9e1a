"""``pipevisor manager``: its arguments are checked before anything starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster.server import run
from cluster.settings import ManagerSettings
from supervisor.cli import main
from supervisor.nodeapi.errors import InvalidConfigError


def test_a_missing_registry_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry folder that does not exist stops the manager with code 2 and its path."""
    assert main(["manager", "--registry", str(tmp_path / "nope")]) == 2
    assert f"registry folder '{tmp_path / 'nope'}' does not exist" in capsys.readouterr().err


def test_a_missing_config_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rules file that does not exist stops the manager with code 2 and its path."""
    config = tmp_path / "cluster.json"
    assert main(["manager", "--registry", str(tmp_path), "--config", str(config)]) == 2
    assert f"cluster config '{config}' does not exist" in capsys.readouterr().err


def test_an_invalid_setting_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port out of range is refused with code 2, naming the setting."""
    assert main(["manager", "--registry", str(tmp_path), "--port", "99999"]) == 2
    assert "api_port" in capsys.readouterr().err


def test_invalid_rules_stop_the_manager_before_it_listens(tmp_path: Path) -> None:
    """Rules that do not validate raise before any socket is bound or node asked."""
    config = tmp_path / "cluster.json"
    config.write_text('{"nodes": [{"name": "a"}, {"name": "a"}]}')
    settings = ManagerSettings(registry=tmp_path, config=config, api_port=0)
    with pytest.raises(InvalidConfigError, match="node names listed twice"):
        asyncio.run(run(settings))


def test_settings_put_state_in_the_registry_and_backgrounds_beside_it(tmp_path: Path) -> None:
    """By default the manager's state lives in REGISTRY/.pipevisor-manager, backgrounds beside."""
    settings = ManagerSettings(registry=tmp_path / "registry")
    assert settings.state_dir == tmp_path / "registry" / ".pipevisor-manager"
    assert settings.backgrounds == tmp_path / "backgrounds"
