"""Messages of the CONFIG and LOG channels: one UTF-8 JSON object per ZMQ frame.

CONFIG: the supervisor binds a ROUTER, the program connects a DEALER. The program speaks
first (``hello``); the supervisor answers with the current ``config``, so a program never misses
its configuration, however late it connects. Afterwards the program sends ``ready`` once, a
``status`` every status interval, and a ``config_ack`` or ``config_error`` for every ``config``.

LOG: the supervisor binds a PULL, the program connects a PUSH and sends ``log`` records.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError, field_validator

from .base import StrictModel

__all__ = [
    "ConfigAck",
    "ConfigError",
    "ConfigUpdate",
    "ExitCode",
    "Hello",
    "LogLevel",
    "LogRecord",
    "MessageError",
    "ProgramMessage",
    "Ready",
    "Report",
    "Status",
    "SupervisorMessage",
    "dump_message",
    "parse_log_record",
    "parse_program_message",
    "parse_supervisor_message",
]

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


REPORT_LIMIT = 256 * 1024
"""Bytes of a program's report, JSON-encoded, at most."""

COUNTER_NAME = r"^[a-z][a-z0-9_]{0,62}$"
"""A program counter's name: snake_case, so it is a Prometheus label value and a key."""


class ExitCode(IntEnum):
    """Exit codes with a meaning for the supervisor; any other non-zero code is a failure."""

    OK = 0  # finished its work (a finite source, a pulse range): not restarted under on-failure
    FAILURE = 1  # unspecified failure
    PROCESSING_ERROR = 2  # the processing function raised and the config asked to abort on error
    CONFIG_ERROR = 3  # the initial configuration was refused
    LOAD_ERROR = 4  # the user code (script, module, extension) could not be loaded


class MessageError(ValueError):
    """A frame on the CONFIG or LOG channel is not a valid contract message."""


class _Identified(StrictModel):
    instance: str = Field(description="Instance name, as in PIPEVISOR_INSTANCE.")
    run: int = Field(description="Run number, as in PIPEVISOR_RUN; stale runs are ignored.")


class Hello(_Identified):
    """First message of a program on CONFIG: asks for the current configuration."""

    kind: Literal["hello"] = "hello"
    pid: int = Field(description="Process id of the program.")
    contract: int = Field(1, description="Contract version the program speaks.")
    program: str = Field("", description="Free text naming the program and its version.")


class Ready(_Identified):
    """The program has bound its output and processes data."""

    kind: Literal["ready"] = "ready"
    output_url: str | None = Field(None, description="The URL the output is bound to, if any.")


class ConfigAck(_Identified):
    """The program applied the configuration with this sequence number."""

    kind: Literal["config_ack"] = "config_ack"
    seq: int = Field(description="Sequence number of the acknowledged ``config`` message.")


class ConfigError(_Identified):
    """The program refused the configuration with this sequence number and keeps the old one."""

    kind: Literal["config_error"] = "config_error"
    seq: int = Field(description="Sequence number of the refused ``config`` message.")
    message: str = Field(description="Why it was refused, for a person: quote the bad value.")


class Status(_Identified):
    """Periodic status and heartbeat. Counters are totals since the program started."""

    kind: Literal["status"] = "status"
    messages_in: int = Field(0, ge=0, description="Messages received on DATA.")
    bytes_in: int = Field(0, ge=0, description="Bytes received on DATA (all frames).")
    messages_out: int = Field(0, ge=0, description="Messages sent on OUTPUT.")
    bytes_out: int = Field(0, ge=0, description="Bytes sent on OUTPUT (all frames).")
    drops: int = Field(0, ge=0, description="Input messages skipped because processing lagged.")
    output_drops: int = Field(
        0, ge=0, description="Output messages dropped because no peer could take them (PUSH)."
    )
    errors: int = Field(0, ge=0, description="Messages whose processing raised.")
    malformed: int = Field(0, ge=0, description="Input messages dropped as undecodable.")
    log_drops: int = Field(0, ge=0, description="Log records dropped because LOG was full.")
    processing_time_avg: float = Field(
        0.0, ge=0, description="Mean processing time per message over the last interval, seconds."
    )
    processing_time_max: float = Field(
        0.0, ge=0, description="Longest processing time over the last interval, seconds."
    )
    clients: int | None = Field(
        None, description="Peers connected to the output socket; None when not counted."
    )
    last_pulse_id: int | None = Field(None, description="Pulse id of the last message handled.")
    last_error: str | None = Field(
        None,
        max_length=2000,
        description="The last processing error, for a person (None if there was none).",
    )
    counters: dict[Annotated[str, StringConstraints(pattern=COUNTER_NAME)], float] = Field(
        default_factory=dict,
        max_length=64,
        description="The program's own counters and gauges, by name (snake_case): e.g. a "
        "merge's pulses matched and missing. Shown in the API and in /metrics.",
    )


class Report(_Identified):
    """The program's own state for people and tools, a JSON object (e.g. the acquisitions of a
    buffer: what each wrote). Sent when it changes; the latest one is shown in the API."""

    kind: Literal["report"] = "report"
    report: dict[str, Any] = Field(description="Free-form, JSON; at most 256 KiB encoded.")

    @field_validator("report")
    @classmethod
    def _bounded(cls, report: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(report, separators=(",", ":")))
        if size > REPORT_LIMIT:
            raise ValueError(f"a report is {size} bytes encoded, more than {REPORT_LIMIT}")
        return report


class ConfigUpdate(StrictModel):
    """The program's full current configuration (answer to hello, and every live update)."""

    kind: Literal["config"] = "config"
    seq: int = Field(ge=0, description="Sequence number to quote in the ack or error.")
    config: dict[str, Any] = Field(description="The whole configuration, not a delta.")


class LogRecord(_Identified):
    """A structured log record on the LOG channel."""

    kind: Literal["log"] = "log"
    time: float = Field(description="Unix time of the event, seconds.")
    level: LogLevel = Field("info", description="Severity.")
    logger: str = Field("", description="Logger name inside the program.")
    message: str = Field(description="The event, for a person.")
    fields: dict[str, Any] = Field(default_factory=dict, description="Structured context.")
    exc: str | None = Field(None, description="A formatted traceback, if any.")


ProgramMessage = Annotated[
    Hello | Ready | ConfigAck | ConfigError | Status | Report, Field(discriminator="kind")
]
SupervisorMessage = ConfigUpdate

_program_adapter: TypeAdapter[ProgramMessage] = TypeAdapter(ProgramMessage)


def _loads(frame: bytes | str) -> Any:
    try:
        return json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        # Sliced, not bytes(frame): bytes() of a str raises TypeError instead of this error.
        raise MessageError(f"not a JSON message: {exc}: {frame[:120]!r}") from exc


def parse_program_message(
    frame: bytes | str,
) -> Hello | Ready | ConfigAck | ConfigError | Status | Report:
    """Decode a CONFIG frame sent by a program. Raises MessageError."""
    try:
        return _program_adapter.validate_python(_loads(frame))
    except ValidationError as exc:
        raise MessageError(f"invalid program message: {exc}") from exc


def parse_supervisor_message(frame: bytes | str) -> ConfigUpdate:
    """Decode a CONFIG frame sent by the supervisor. Raises MessageError."""
    try:
        return ConfigUpdate.model_validate(_loads(frame))
    except ValidationError as exc:
        raise MessageError(f"invalid supervisor message: {exc}") from exc


def parse_log_record(frame: bytes | str) -> LogRecord:
    """Decode a LOG frame. Raises MessageError."""
    try:
        return LogRecord.model_validate(_loads(frame))
    except ValidationError as exc:
        raise MessageError(f"invalid log record: {exc}") from exc


def dump_message(message: StrictModel) -> bytes:
    """Encode a message as one frame."""
    return message.model_dump_json().encode()
