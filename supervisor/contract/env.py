"""The environment variables through which the supervisor hands a program its contract."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field

from .base import StrictModel

__all__ = [
    "CONTRACT_VERSION",
    "ContractEnv",
    "EnvVar",
    "ExtraInput",
    "SocketMode",
    "native_cache_dir",
]

CONTRACT_VERSION = 1


class EnvVar(StrEnum):
    """Names of the environment variables of the contract."""

    CONTRACT = "PIPEVISOR_CONTRACT"
    INSTANCE = "PIPEVISOR_INSTANCE"
    RUN = "PIPEVISOR_RUN"
    CONFIG = "PIPEVISOR_CONFIG"
    DATA_URL = "PIPEVISOR_DATA_URL"
    DATA_MODE = "PIPEVISOR_DATA_MODE"
    OUTPUT_URL = "PIPEVISOR_OUTPUT_URL"
    OUTPUT_MODE = "PIPEVISOR_OUTPUT_MODE"
    CONFIG_URL = "PIPEVISOR_CONFIG_URL"
    LOG_URL = "PIPEVISOR_LOG_URL"
    STATUS_INTERVAL = "PIPEVISOR_STATUS_INTERVAL"
    BACKGROUNDS = "PIPEVISOR_BACKGROUNDS"
    CACHE_DIR = "PIPEVISOR_CACHE_DIR"  # optional, passed through from the supervisor's own
    DATA_DIR = "PIPEVISOR_DATA_DIR"  # optional, passed through: where writers put files
    MERGE = "PIPEVISOR_MERGE"  # optional: more DATA streams to align with DATA by pulse id
    GATHER = "PIPEVISOR_GATHER"  # optional: more DATA streams to read as DATA (a fan-in)


class SocketMode(StrEnum):
    """ZMQ socket pattern of a data or output stream, named by the receiving or sending side."""

    PUB = "PUB"
    PUSH = "PUSH"
    SUB = "SUB"
    PULL = "PULL"


def _socket_mode(env: Mapping[str, str], var: EnvVar, default: SocketMode) -> SocketMode:
    """The SocketMode a variable names (``default`` when unset or empty); the error names it."""
    raw = env.get(var) or default
    try:
        return SocketMode(raw)
    except ValueError:
        modes = ", ".join(SocketMode)
        raise ValueError(f"{var} is {raw!r}, not one of {modes}") from None


class ExtraInput(StrictModel):
    """One more input stream (of ``merge`` or ``gather``)."""

    url: str = Field(description="URL to connect to.")
    mode: SocketMode = Field(SocketMode.SUB, description="SUB or PULL.")


class ContractEnv(StrictModel):
    """Everything a program learns from its environment at start."""

    contract: int = Field(CONTRACT_VERSION, description="Contract version the supervisor speaks.")
    instance: str = Field(description="Name of the instance this program runs as.")
    run: int = Field(description="Run number: increases by one at every start of the instance.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Initial configuration (the entry's parameters with overrides).",
    )
    data_url: str | None = Field(
        None, description="URL the program connects to for input data; None for a source program."
    )
    data_mode: SocketMode = Field(SocketMode.SUB, description="SUB or PULL: how to receive DATA.")
    merge: list[ExtraInput] = Field(
        default_factory=list,
        description="More input streams whose messages belong with DATA's of the same pulse id "
        "(a program that does not merge may ignore them).",
    )
    gather: list[ExtraInput] = Field(
        default_factory=list,
        description="More input streams to read exactly like DATA (a fan-in of workers' "
        "outputs): every message of every one is an input message; pulse-id order is the "
        "program's to restore.",
    )
    output_url: str | None = Field(None, description="URL the program binds for its output stream.")
    output_mode: SocketMode = Field(SocketMode.PUB, description="PUB or PUSH: how to send OUTPUT.")
    config_url: str | None = Field(
        None, description="URL of the supervisor's ROUTER; the program connects a DEALER."
    )
    log_url: str | None = Field(
        None, description="URL of the supervisor's PULL; the program connects a PUSH."
    )
    status_interval: float = Field(1.0, description="Seconds between two status messages.", gt=0)
    backgrounds: str | None = Field(
        None, description="Folder of the node's background images (<id>.npy), if it has one."
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ContractEnv:
        """Read the contract from ``environ`` (default: ``os.environ``).

        Raises:
            ValueError: a variable is missing or malformed; the message names it.
        """
        env = os.environ if environ is None else environ
        if EnvVar.INSTANCE not in env:
            raise ValueError(
                f"{EnvVar.INSTANCE} is not set: not started by a pipevisor supervisor?"
            )
        raw_config = env.get(EnvVar.CONFIG, "") or "{}"
        try:
            config = json.loads(raw_config)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{EnvVar.CONFIG} is not valid JSON: {exc}: {raw_config[:200]!r}"
            ) from exc
        extra = {}
        for var in (EnvVar.MERGE, EnvVar.GATHER):
            raw = env.get(var, "") or "[]"
            try:
                extra[var] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{var} is not valid JSON: {exc}: {raw[:200]!r}") from exc
        return cls(
            contract=int(env.get(EnvVar.CONTRACT, CONTRACT_VERSION)),
            instance=env[EnvVar.INSTANCE],
            run=int(env.get(EnvVar.RUN, "0")),
            config=config,
            data_url=env.get(EnvVar.DATA_URL) or None,
            data_mode=_socket_mode(env, EnvVar.DATA_MODE, SocketMode.SUB),
            merge=extra[EnvVar.MERGE],
            gather=extra[EnvVar.GATHER],
            output_url=env.get(EnvVar.OUTPUT_URL) or None,
            output_mode=_socket_mode(env, EnvVar.OUTPUT_MODE, SocketMode.PUB),
            config_url=env.get(EnvVar.CONFIG_URL) or None,
            log_url=env.get(EnvVar.LOG_URL) or None,
            status_interval=float(env.get(EnvVar.STATUS_INTERVAL, "1.0")),
            backgrounds=env.get(EnvVar.BACKGROUNDS) or None,
        )

    def to_environ(self) -> dict[str, str]:
        """The variables to put in a program's environment (empty strings for unset URLs)."""
        return {
            EnvVar.CONTRACT: str(self.contract),
            EnvVar.INSTANCE: self.instance,
            EnvVar.RUN: str(self.run),
            EnvVar.CONFIG: json.dumps(self.config),
            EnvVar.DATA_URL: self.data_url or "",
            EnvVar.DATA_MODE: str(self.data_mode),
            EnvVar.OUTPUT_URL: self.output_url or "",
            EnvVar.OUTPUT_MODE: str(self.output_mode),
            EnvVar.CONFIG_URL: self.config_url or "",
            EnvVar.LOG_URL: self.log_url or "",
            EnvVar.STATUS_INTERVAL: repr(self.status_interval),
            EnvVar.BACKGROUNDS: self.backgrounds or "",
            EnvVar.MERGE: _dump_inputs(self.merge),
            EnvVar.GATHER: _dump_inputs(self.gather),
        }


def _dump_inputs(inputs: list[ExtraInput]) -> str:
    return json.dumps([i.model_dump(mode="json") for i in inputs]) if inputs else ""


def native_cache_dir() -> Path:
    """Where programs cache what they compile (C extensions, native kernels).

    ``$PIPEVISOR_CACHE_DIR`` (the supervisor passes its own on to every program), else
    ``$XDG_CACHE_HOME/pipevisor``, else ``~/.cache/pipevisor``.
    """
    if path := os.environ.get(EnvVar.CACHE_DIR):
        return Path(path)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "pipevisor"
    return Path.home() / ".cache" / "pipevisor"
