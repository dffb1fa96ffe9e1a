"""The environment and the CONFIG/LOG messages of the contract."""

from __future__ import annotations

import pytest

from supervisor.contract import (
    ConfigUpdate,
    ContractEnv,
    EnvVar,
    Hello,
    LogRecord,
    MessageError,
    SocketMode,
    Status,
    dump_message,
    parse_log_record,
    parse_program_message,
    parse_supervisor_message,
)


def test_environment_round_trips_through_variables():
    """What the supervisor writes into the environment is what the program reads back."""
    env = ContractEnv(
        instance="beam",
        run=3,
        config={"a": [1, 2]},
        data_url="tcp://127.0.0.1:1",
        data_mode=SocketMode.PULL,
        output_url="tcp://127.0.0.1:2",
        config_url="tcp://127.0.0.1:3",
        log_url="tcp://127.0.0.1:4",
    )
    assert ContractEnv.from_environ(env.to_environ()) == env


def test_source_program_has_no_data_url():
    """An empty DATA URL reads as None: the program is a source."""
    env = ContractEnv.from_environ({EnvVar.INSTANCE: "cam", EnvVar.DATA_URL: ""})
    assert env.data_url is None
    assert env.run == 0
    assert env.config == {}


def test_bad_config_variable_is_a_clear_error():
    """Malformed PIPEVISOR_CONFIG names the variable and quotes the text."""
    with pytest.raises(ValueError, match=r"PIPEVISOR_CONFIG is not valid JSON.*nope"):
        ContractEnv.from_environ({EnvVar.INSTANCE: "x", EnvVar.CONFIG: "nope"})


def test_missing_instance_variable_is_a_clear_error():
    """Started outside a supervisor, the program is told so."""
    with pytest.raises(ValueError, match="PIPEVISOR_INSTANCE is not set"):
        ContractEnv.from_environ({})


def test_program_messages_are_decoded_by_kind():
    """A frame decodes to the model of its kind."""
    hello = parse_program_message(dump_message(Hello(instance="a", run=1, pid=42)))
    assert isinstance(hello, Hello)
    assert hello.pid == 42
    status = parse_program_message(b'{"kind":"status","instance":"a","run":1,"messages_in":5}')
    assert isinstance(status, Status)
    assert status.messages_in == 5


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[]",
        b'{"kind":"nope","instance":"a","run":1}',
        b'{"kind":"hello","run":1,"pid":1}',
        b'{"kind":"status","instance":"a","run":1,"typo":1}',
        b"\xff\xfe",
    ],
)
def test_malformed_program_messages_raise_message_error(frame):
    """Bad JSON, unknown kinds, missing or unknown keys: one error type, never anything else."""
    with pytest.raises(MessageError):
        parse_program_message(frame)


def test_supervisor_and_log_messages_round_trip():
    """Config updates and log records survive encoding."""
    update = ConfigUpdate(seq=2, config={"x": 1})
    assert parse_supervisor_message(dump_message(update)) == update
    record = LogRecord(instance="a", run=1, time=1.5, message="hi", fields={"k": "v"})
    assert parse_log_record(dump_message(record)) == record
    with pytest.raises(MessageError):
        parse_log_record(b'{"kind":"log"}')
