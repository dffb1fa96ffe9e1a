"""Applying a configuration: validate the runner's options, ask the user's hook, then commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .loader import UserCode
from .options import OptionError, RunnerOptions

__all__ = ["ConfigRefused", "Configurator"]


class ConfigRefused(Exception):
    """The configuration was refused; the message says why, for a person."""


class Configurator:
    """Owns the live ``parameters`` dict the user's function sees.

    ``parameters`` is one dict for the life of the program, changed in place by every accepted
    update, so a generator or a closure holding it sees the new values. Keys a configuration
    removes are removed; keys the user code added at run time (CamServer-style state) stay.
    """

    def __init__(self, code: UserCode) -> None:
        self.code = code
        self.parameters: dict[str, Any] = {}
        self.options = RunnerOptions()
        self.config: dict[str, Any] = {}
        """The configuration last accepted, as it came (what worker processes apply too)."""
        self._config_keys: set[str] = set()

    def apply(self, config: Mapping[str, Any]) -> RunnerOptions:
        """Validate ``config`` and make it the live one; returns the new runner options.

        Raises:
            ConfigRefused: a runner option is invalid or the user's ``configure`` raised; the
                live parameters and options are left as they were.
        """
        try:
            options = RunnerOptions.from_config(config, self.code.option_defaults)
        except OptionError as exc:
            raise ConfigRefused(str(exc)) from exc
        removed = self._config_keys - config.keys()
        candidate = {key: value for key, value in self.parameters.items() if key not in removed}
        candidate.update(config)
        if self.code.configure is not None:
            try:
                self.code.configure(candidate)
            except Exception as exc:
                raise ConfigRefused(
                    f"configure() refused the configuration: {type(exc).__name__}: {exc}"
                ) from exc
        self.parameters.clear()
        self.parameters.update(candidate)
        self._config_keys = set(config)
        self.config = dict(config)
        self.options = options
        return options
