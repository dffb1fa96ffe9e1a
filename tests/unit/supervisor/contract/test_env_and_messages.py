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


def test_bad_socket_mode_variable_names_the_variable():
    """An unknown DATA or OUTPUT mode names the variable and the modes there are."""
    with pytest.raises(ValueError, match=r"PIPEVISOR_DATA_MODE is 'SUBB', not one of PUB, PUSH"):
        ContractEnv.from_environ({EnvVar.INSTANCE: "x", EnvVar.DATA_MODE: "SUBB"})
    env = ContractEnv.from_environ({EnvVar.INSTANCE: "x", EnvVar.OUTPUT_MODE: "PUSH"})
    assert (env.data_mode, env.output_mode) == (SocketMode.SUB, SocketMode.PUSH)


def test_a_text_frame_that_is_not_json_is_a_message_error():
    """A str frame is quoted in the error like a bytes frame (bytes() of a str would raise)."""
    with pytest.raises(MessageError, match=r"not a JSON message.*'nope'"):
        parse_program_message("nope")


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


def test_merge_and_gather_inputs_round_trip_and_are_optional():
    """The extra inputs travel as JSON lists; a program's environment may lack them."""
    env = ContractEnv(
        instance="fanin",
        run=1,
        data_url="tcp://127.0.0.1:1",
        gather=[{"url": "tcp://127.0.0.1:2", "mode": "PULL"}],
        merge=[{"url": "tcp://127.0.0.1:3"}],
    )
    variables = env.to_environ()
    assert ContractEnv.from_environ(variables) == env
    plain = ContractEnv.from_environ({EnvVar.INSTANCE: "x", EnvVar.DATA_URL: "tcp://h:1"})
    assert plain.merge == plain.gather == []
    with pytest.raises(ValueError, match="PIPEVISOR_GATHER is not valid JSON"):
        ContractEnv.from_environ({EnvVar.INSTANCE: "x", EnvVar.GATHER: "[{"})


def test_a_report_and_counters_are_program_messages_with_bounds():
    """A report is any JSON object up to 256 KiB; counters are snake_case names."""
    report = parse_program_message(
        b'{"kind": "report", "instance": "b", "run": 1, "report": {"acquisitions": {}}}'
    )
    assert report.report == {"acquisitions": {}}
    big = '{"kind": "report", "instance": "b", "run": 1, "report": {"x": "%s"}}' % ("a" * 300_000)
    with pytest.raises(MessageError, match="more than 262144"):
        parse_program_message(big.encode())
    status = parse_program_message(
        b'{"kind": "status", "instance": "b", "run": 1, "counters": {"merge_pulses": 3}}'
    )
    assert status.counters == {"merge_pulses": 3.0}
    with pytest.raises(MessageError):
        parse_program_message(
            b'{"kind": "status", "instance": "b", "run": 1, "counters": {"Bad Name": 3}}'
        )
