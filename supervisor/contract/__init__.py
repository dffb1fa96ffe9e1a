"""The language-neutral contract between the supervisor and the programs it runs.

See CONTRACT.md in this folder. This package imports no supervisor code: programs import it.
"""

from .base import StrictModel
from .env import (
    CONTRACT_VERSION,
    ContractEnv,
    EnvVar,
    ExtraInput,
    SocketMode,
    native_cache_dir,
)
from .messages import (
    ConfigAck,
    ConfigError,
    ConfigUpdate,
    ExitCode,
    Hello,
    LogRecord,
    MessageError,
    Ready,
    Report,
    Status,
    dump_message,
    parse_log_record,
    parse_program_message,
    parse_supervisor_message,
)
from .program import HELLO_TIMEOUT, ContractLogHandler, ProgramChannels

__all__ = [
    "CONTRACT_VERSION",
    "HELLO_TIMEOUT",
    "ConfigAck",
    "ConfigError",
    "ConfigUpdate",
    "ContractEnv",
    "ContractLogHandler",
    "EnvVar",
    "ExitCode",
    "ExtraInput",
    "Hello",
    "LogRecord",
    "MessageError",
    "ProgramChannels",
    "Ready",
    "Report",
    "SocketMode",
    "Status",
    "StrictModel",
    "dump_message",
    "native_cache_dir",
    "parse_log_record",
    "parse_program_message",
    "parse_supervisor_message",
]
