"""Live configuration in the runner, and sources (generators)."""

from __future__ import annotations

import numpy as np
from conftest import FakeSupervisor

from supervisor.contract import ExitCode, SocketMode

CONFIGURABLE = """
    def configure(parameters):
        if parameters.get("gain", 0) < 0:
            raise ValueError(f"gain must be >= 0, got {parameters['gain']}")
        parameters["configured"] = parameters.get("configured", 0) + 1

    def process(data, pulse_id, timestamp, parameters):
        return {"gain": float(parameters["gain"]), "configured": parameters["configured"],
                "has_old_key": "old_key" in parameters}
"""


def _gain_after_update(supervisor: FakeSupervisor, pulse_id: int) -> dict[str, object]:
    supervisor.send({"value": 1.0}, pulse_id)
    while True:
        message = supervisor.receive()
        if message.pulse_id == pulse_id:
            return message.data


def test_config_update_is_acked_and_seen_by_the_function(supervisor: FakeSupervisor) -> None:
    """An accepted update is acknowledged and the next call sees the new parameters in place."""
    supervisor.start(CONFIGURABLE, config={"gain": 1.0, "old_key": True})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"value": 1.0})
    supervisor.send_config({"gain": 4.0}, seq=1)
    assert supervisor.expect("config_ack", "config_error").seq == 1
    out = _gain_after_update(supervisor, 500)
    assert out["gain"] == 4.0
    assert out["configured"] == 2  # configure ran again, and its runtime key was kept
    assert not out["has_old_key"]  # a key the new config dropped is gone


def test_update_refused_by_configure_keeps_the_old_config(supervisor: FakeSupervisor) -> None:
    """When configure() raises, the update gets a config_error quoting why and nothing changes."""
    supervisor.start(CONFIGURABLE, config={"gain": 1.0})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"value": 1.0})
    supervisor.send_config({"gain": -2.0}, seq=3)
    error = supervisor.expect("config_ack", "config_error")
    assert (error.kind, error.seq) == ("config_error", 3)
    assert "gain must be >= 0, got -2.0" in error.message
    assert _gain_after_update(supervisor, 600)["gain"] == 1.0


def test_invalid_runner_option_is_refused_quoting_key_and_value(
    supervisor: FakeSupervisor,
) -> None:
    """A bad runner option is refused with its key and value, and the old config stays."""
    supervisor.start(CONFIGURABLE, config={"gain": 1.0})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"value": 1.0})
    supervisor.send_config({"gain": 9.0, "output_compression": "zip"}, seq=4)
    error = supervisor.expect("config_ack", "config_error")
    assert error.kind == "config_error"
    assert "output_compression='zip'" in error.message
    assert _gain_after_update(supervisor, 700)["gain"] == 1.0


def test_compression_option_applies_to_the_output(supervisor: FakeSupervisor) -> None:
    """output_compression set live makes the next messages go out bitshuffle-lz4 compressed."""
    supervisor.start(CONFIGURABLE, config={"gain": 1.0})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"value": 1.0})
    supervisor.send_config({"gain": 1.0, "output_compression": "bitshuffle_lz4"}, seq=2)
    assert supervisor.expect("config_ack", "config_error").kind == "config_ack"
    supervisor.send({"value": 1.0}, 800)
    message = supervisor.receive()
    assert message.data["gain"] == 1.0
    assert {c.compression for c in message.channels} == {"bitshuffle_lz4"}


def test_initial_config_refused_exits_with_config_error(supervisor: FakeSupervisor) -> None:
    """A refused initial configuration is answered with config_error and exit code 3."""
    supervisor.start(CONFIGURABLE)
    supervisor.expect("hello")
    supervisor.send_config({"gain": -1.0}, seq=0)
    error = supervisor.expect("config_error")
    assert "gain must be >= 0" in error.message
    code, _ = supervisor.wait_exit()
    assert code == ExitCode.CONFIG_ERROR


def test_simulated_camera_streams_images_and_takes_live_updates(
    supervisor: FakeSupervisor,
) -> None:
    """The camera source runs under the runner: frames go out on PUB and updates apply live."""
    config = {"width": 64, "height": 32, "rate": 50, "deterministic": True, "dtype": "uint8"}
    supervisor.start(
        builtin="camera_simulation",
        config=config,
        data=False,
        output_mode=SocketMode.PUB,
    )
    supervisor.handshake()
    supervisor.connect_output()
    first = supervisor.receive()
    assert first.data["image"].shape == (32, 64)
    assert first.data["image"].dtype == np.uint8
    assert first.data["width"] == 64
    supervisor.send_config({**config, "width": 16}, seq=1)
    assert supervisor.expect("config_ack", "config_error").kind == "config_ack"
    while (message := supervisor.receive()).data["image"].shape != (32, 16):
        assert message.pulse_id > first.pulse_id
    supervisor.send_config({**config, "width": 0}, seq=2)
    error = supervisor.expect("config_ack", "config_error")
    assert error.kind == "config_error"
    assert "width must be a positive integer, got 0" in error.message
    status = supervisor.status_where(lambda s: s.messages_out > 0)
    assert status.clients == 1
    assert status.messages_in == 0


REPORTING = """
    import numpy as np

    def process(data, pulse_id, timestamp, parameters):
        parameters["seen"] = parameters.get("seen", 0) + 1
        return None

    def report(parameters):
        if parameters.get("broken"):
            raise RuntimeError("cannot say")
        return {"seen": np.int64(parameters.get("seen", 0)), "label": parameters.get("label")}
"""


def test_report_is_sent_when_it_changes_and_a_failing_one_is_logged(
    supervisor: FakeSupervisor,
) -> None:
    """report(parameters) goes out after a config and when its content changes, never twice the
    same; numpy numbers are written as JSON; an exception is logged and the loop goes on."""
    supervisor.start(REPORTING, config={"label": "a"})
    supervisor.handshake()
    first = supervisor.expect("report")
    assert first.report == {"seen": 0, "label": "a"}
    supervisor.send({"value": 1.0}, 7)
    changed = supervisor.expect("report", where=lambda m: m.report["seen"] == 1)
    assert changed.report["label"] == "a"
    supervisor.send_config({"label": "b"}, seq=1)
    assert supervisor.expect("report", where=lambda m: m.report["label"] == "b").report == {
        "seen": 1,
        "label": "b",
    }
    supervisor.send_config({"label": "b", "broken": True}, seq=2)
    supervisor.expect_log(
        lambda r: "report() failed" in r.message and "cannot say" in (r.exc or "")
    )
    supervisor.send({"value": 1.0}, 8)
    status = supervisor.status_where(lambda s: s.last_pulse_id == 8)  # still processing
    assert status.errors == 0
