"""The runner's processing path: handshake, user functions, errors and counters."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
import zmq
from conftest import REPO, FakeSupervisor

from builtin_pipelines.camera_simulation import generate
from supervisor.contract import ExitCode, SocketMode

CAMERA = """
    import numpy as np

    def process_image(image, pulse_id, timestamp, x_axis, y_axis, parameters, bsdata):
        if bsdata.get("fail"):
            raise ZeroDivisionError("the user function failed on purpose")
        return {
            "sum": np.int64(image.sum(dtype=np.int64)),
            "shape": np.array(image.shape, dtype=np.int64),
            "x_last": x_axis[-1],
            "y_last": y_axis[-1],
            "bs_keys": ",".join(sorted(bsdata)),
            "pulse": np.int64(pulse_id),
            "ts": np.array(timestamp, dtype=np.int64),
            "gain": parameters["gain"],
        }

    def process(data, pulse_id, timestamp, parameters):
        raise AssertionError("process_image must win over process")
"""

FLAGGING = """
    def process(data, pulse_id, timestamp, parameters):
        parameters.pop("processing_error", None)
        if "bad" in data:
            parameters["processing_error"] = "Bad background image size"
        return {"value": data["value"], "flagged": bool(parameters.get("processing_error"))}
"""

PASSTHROUGH = """
    def process(data, pulse_id, timestamp, parameters):
        if "skip" in data:
            return None
        return {"image": data["image"], "scaled": data["value"] * parameters.get("scale", 1.0)}
"""


def make_image(height: int = 48, width: int = 64, value: int = 0) -> np.ndarray:
    """A uint16 test image whose pixels encode their position (plus ``value``)."""
    return (np.arange(height * width).reshape(height, width) % 1000 + value).astype(np.uint16)


def camera_data(image: np.ndarray, **extra: object) -> dict[str, object]:
    """The channels of a camera message."""
    height, width = image.shape
    return {
        "image": image,
        "x_axis": np.arange(width, dtype=np.float32),
        "y_axis": np.arange(height, dtype=np.float32),
        **extra,
    }


def test_hello_is_answered_with_config_then_ack_and_ready(supervisor: FakeSupervisor) -> None:
    """The runner says hello, acknowledges the config it is given, then reports ready."""
    supervisor.start(CAMERA, config={"gain": 1})
    hello = supervisor.expect("hello")
    assert (hello.instance, hello.run, hello.pid) == ("test-instance", 7, supervisor.process.pid)
    supervisor.send_config({"gain": 3}, seq=5)
    assert supervisor.expect("config_ack").seq == 5
    ready = supervisor.expect("ready")
    assert ready.output_url == supervisor.env.output_url


def test_process_image_gets_camera_channels_and_its_result_is_sent(
    supervisor: FakeSupervisor,
) -> None:
    """process_image receives image, axes, bsdata, timestamp and parameters; its dict goes out."""
    supervisor.start(CAMERA, config={"gain": 2.5})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime(camera_data(make_image(), extra=1.0))
    image = make_image(value=7)
    supervisor.send(camera_data(image, extra=1.0, other="text"), 1000, (1_700_000_001, 42))
    message = supervisor.receive()
    assert message.pulse_id == 1000
    assert message.global_timestamp == (1_700_000_001, 42)
    out = message.data
    assert out["sum"] == image.sum(dtype=np.int64)
    assert list(out["shape"]) == [48, 64]
    assert (out["x_last"], out["y_last"]) == (63, 47)
    assert out["bs_keys"] == "extra,other"
    assert out["pulse"] == 1000
    assert list(out["ts"]) == [1_700_000_001, 42]
    assert out["gain"] == 2.5


def test_process_passes_a_stream_through_intact(supervisor: FakeSupervisor) -> None:
    """process gets the channel dict; the image it returns arrives unchanged; None drops."""
    supervisor.start(PASSTHROUGH, config={"scale": 2.0})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"image": make_image(), "value": 1.0})
    image = make_image(960, 1280, value=3)
    supervisor.send({"image": image, "value": 1.5, "skip": 1}, 499)
    status = supervisor.status_where(lambda s: s.last_pulse_id == 499)
    assert status.errors == 0
    assert status.messages_out + status.output_drops + status.drops == status.messages_in - 1
    supervisor.send({"image": image, "value": 1.5}, 500)
    message = supervisor.receive()
    assert message.pulse_id == 500
    np.testing.assert_array_equal(message.data["image"], image)
    assert message.data["scaled"] == 3.0


def test_beam_profile_example_measures_a_simulated_beam(supervisor: FakeSupervisor) -> None:
    """The example registry script finds the beam where the simulated camera put it."""
    supervisor.start(script=REPO / "examples" / "registry" / "beam_profile.py")
    supervisor.handshake()
    supervisor.connect_output()
    beam = {"width": 120, "height": 80, "beam_x": 70.0, "beam_y": 30.0, "beam_sigma_x": 6.0,
            "beam_sigma_y": 4.0, "noise": 0, "background": 0}  # fmt: skip
    data = next(item for item in generate(beam) if item is not None)[0]
    supervisor.prime(data)
    supervisor.send_config({"include_image": True}, seq=1)
    supervisor.expect("config_ack")
    supervisor.send(data, 1234)
    out = supervisor.receive().data
    assert out["x_center_of_mass"] == pytest.approx(70.0, abs=0.1)
    assert out["y_center_of_mass"] == pytest.approx(30.0, abs=0.1)
    assert out["x_rms"] == pytest.approx(6.0, rel=0.05)
    assert out["y_rms"] == pytest.approx(4.0, rel=0.05)
    assert out["x_profile"].dtype == np.int64
    assert out["intensity"] == data["image"].sum(dtype=np.int64)
    assert out["max_value"] == data["image"].max()
    np.testing.assert_array_equal(out["image"], data["image"])


def test_exception_in_user_function_is_logged_counted_and_processing_goes_on(
    supervisor: FakeSupervisor,
) -> None:
    """A raising function logs its traceback on LOG, counts an error, and the next message works."""
    supervisor.start(CAMERA, config={"gain": 1})
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime(camera_data(make_image()))
    supervisor.send(camera_data(make_image(), fail=1), 300)
    record = supervisor.expect_log(lambda r: r.level == "error")
    supervisor.send(camera_data(make_image()), 301)
    assert supervisor.receive().pulse_id == 301
    assert "300" in record.message
    assert "ZeroDivisionError: the user function failed on purpose" in record.exc
    assert "process_image" in record.exc
    status = supervisor.status_where(lambda s: s.last_pulse_id == 301)
    assert status.errors == 1
    assert status.last_error == (
        "processing pulse 300 failed: ZeroDivisionError: the user function failed on purpose"
    )
    assert supervisor.process.poll() is None


def test_a_flagged_frame_is_sent_counted_and_its_error_shown(supervisor: FakeSupervisor) -> None:
    """A function that sets parameters["processing_error"] keeps streaming; the error is counted."""
    supervisor.start(FLAGGING)
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"value": 1.0})
    supervisor.send({"value": 2.0, "bad": 1}, 400)
    message = supervisor.receive()
    assert (message.pulse_id, message.data["flagged"]) == (400, True)
    record = supervisor.expect_log(lambda r: r.level == "warning")
    assert "pulse 400 sent flagged with processing_error: Bad background image size" in (
        record.message
    )
    supervisor.send({"value": 3.0}, 401)
    assert not supervisor.receive().data["flagged"]
    status = supervisor.status_where(lambda s: s.last_pulse_id == 401)
    assert (status.errors, status.last_error) == (1, "Bad background image size")


def test_abort_on_error_exits_with_processing_error_code(supervisor: FakeSupervisor) -> None:
    """With abort_on_error, the first exception ends the runner with exit code 2."""
    supervisor.start(CAMERA, config={"gain": 1, "abort_on_error": True})
    supervisor.handshake()
    supervisor.send(camera_data(make_image(), fail=1), 1)
    code, _ = supervisor.wait_exit()
    assert code == ExitCode.PROCESSING_ERROR
    record = supervisor.expect_log(lambda r: r.level == "error")
    assert "ZeroDivisionError" in record.exc


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def process(data, pulse_id, timestamp, parameters)\n    pass\n", "SyntaxError"),
        ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
        ("def helper():\n    pass\n", "defines none of process_image, process, generate"),
    ],
    ids=["syntax-error", "import-error", "no-entry-point"],
)
def test_unloadable_code_exits_with_load_error_and_logs_why(
    supervisor: FakeSupervisor, source: str, expected: str
) -> None:
    """Code that cannot be loaded exits with code 4, the traceback on LOG and on stderr."""
    supervisor.start(source)
    supervisor.expect("hello")
    supervisor.send_config({}, seq=0)
    code, stderr = supervisor.wait_exit()
    assert code == ExitCode.LOAD_ERROR
    record = supervisor.expect_log(lambda r: r.level == "error")
    assert expected in record.exc
    assert expected in stderr


def test_missing_script_exits_with_load_error(supervisor: FakeSupervisor, tmp_path) -> None:
    """A script path that does not exist exits with code 4, naming the path."""
    supervisor.start(script=tmp_path / "nowhere.py")
    supervisor.expect("hello")
    supervisor.send_config({}, seq=0)
    code, stderr = supervisor.wait_exit()
    assert code == ExitCode.LOAD_ERROR
    assert "nowhere.py" in stderr


def test_unknown_builtin_exits_with_load_error_naming_the_known_ones(
    supervisor: FakeSupervisor,
) -> None:
    """A name missing from the table of builtins (a library of them here) is refused."""
    supervisor.start(builtin="h5writer", data=False)
    supervisor.expect("hello")
    supervisor.send_config({}, seq=0)
    code, stderr = supervisor.wait_exit()
    assert code == ExitCode.LOAD_ERROR
    assert "unknown builtin 'h5writer'; known builtins: beam_metrics, camera_bsread, " in stderr


def test_slow_function_skips_stale_input_and_keeps_latency_bounded(
    supervisor: FakeSupervisor,
) -> None:
    """Behind a long burst, the runner keeps the newest queue_size messages, counts the rest."""
    supervisor.start(
        """
        import time

        def process(data, pulse_id, timestamp, parameters):
            if pulse_id >= 100:
                time.sleep(0.15)
            return {"pulse": pulse_id}
        """
    )
    supervisor.handshake()
    supervisor.connect_output()
    primes = supervisor.prime({"value": 0.0})
    burst = 30
    start = time.monotonic()
    for pulse_id in range(100, 100 + burst):
        supervisor.send({"value": float(pulse_id)}, pulse_id)
    processed = []
    while not processed or processed[-1] != 100 + burst - 1:
        processed.append(supervisor.receive().pulse_id)
    latency = time.monotonic() - start
    assert processed == sorted(processed)
    assert len(processed) < burst / 2
    assert latency < burst * 0.15 / 2
    status = supervisor.status_where(lambda s: s.last_pulse_id == 100 + burst - 1)
    assert status.messages_in == primes + burst
    assert status.drops == burst - len(processed)


def test_a_short_burst_is_processed_whole_and_in_order(supervisor: FakeSupervisor) -> None:
    """A moment's lag loses nothing: a burst within queue_size waits and is processed in order."""
    supervisor.start(
        """
        import time

        def process(data, pulse_id, timestamp, parameters):
            if pulse_id >= 100:
                time.sleep(0.05)
            return {"pulse": pulse_id}
        """
    )
    supervisor.handshake({"queue_size": 6})
    supervisor.connect_output()
    primes = supervisor.prime({"value": 0.0})
    for pulse_id in range(100, 106):
        supervisor.send({"value": float(pulse_id)}, pulse_id)
    processed = [supervisor.receive().pulse_id for _ in range(6)]
    assert processed == list(range(100, 106))
    status = supervisor.status_where(lambda s: s.last_pulse_id == 105)
    assert (status.messages_in, status.drops) == (primes + 6, 0)


def test_queue_size_one_skips_to_the_newest_and_counts_it(supervisor: FakeSupervisor) -> None:
    """queue_size 1 is latest-wins: what was skipped is counted, the newest is processed last.

    How many are skipped depends on how ZMQ hands the burst over (its own queue holds one too,
    and a PUSH sender keeps the rest), so only the order and the accounting are certain."""
    supervisor.start(
        """
        import time

        def process(data, pulse_id, timestamp, parameters):
            if pulse_id >= 100:
                time.sleep(0.2)
            return {"pulse": pulse_id}
        """
    )
    supervisor.handshake({"queue_size": 1})
    supervisor.connect_output()
    primes = supervisor.prime({"value": 0.0})
    for pulse_id in range(100, 106):
        supervisor.send({"value": float(pulse_id)}, pulse_id)
    processed = [supervisor.receive().pulse_id]
    while processed[-1] != 105:
        processed.append(supervisor.receive().pulse_id)
    assert processed == sorted(processed)
    status = supervisor.status_where(lambda s: s.last_pulse_id == 105)
    assert (status.messages_in, status.drops) == (primes + 6, 6 - len(processed))


def test_malformed_input_is_counted_and_the_runner_keeps_going(
    supervisor: FakeSupervisor,
) -> None:
    """Undecodable messages are counted as malformed, warned about once, and skipped."""
    supervisor.start(PASSTHROUGH)
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"image": make_image(), "value": 1.0})
    supervisor.data.send_multipart([b"not json", b"{}"])
    supervisor.status_where(lambda s: s.malformed == 1)
    supervisor.data.send_multipart([b'{"htype": "bsr_m-1.1"}'])
    supervisor.status_where(lambda s: s.malformed == 2)
    supervisor.send({"image": make_image(), "value": 2.0}, 900)
    assert supervisor.receive().pulse_id == 900
    status = supervisor.status_where(lambda s: s.last_pulse_id == 900)
    assert (status.malformed, status.errors) == (2, 0)
    record = supervisor.expect_log(lambda r: r.level == "warning")
    assert "malformed" in record.message


def test_push_output_without_peer_drops_instead_of_blocking(supervisor: FakeSupervisor) -> None:
    """With a PUSH output nobody reads, sends are dropped and counted and status keeps coming."""
    supervisor.start(PASSTHROUGH, output_mode=SocketMode.PUSH)
    supervisor.handshake()
    for pulse_id in range(20):
        supervisor.send({"image": make_image(), "value": 1.0}, pulse_id)
    status = supervisor.status_where(lambda s: s.last_pulse_id == 19)
    assert status.output_drops >= 1
    assert status.messages_out + status.output_drops + status.drops == 20
    assert status.clients == 0
    later = supervisor.status_where(lambda s: s is not status)
    assert later.last_pulse_id == 19


def test_push_output_with_a_slow_consumer_waits_instead_of_dropping(
    supervisor: FakeSupervisor,
) -> None:
    """A connected PUSH consumer (a writer) gets every output message: backpressure, no drops."""
    supervisor.start(PASSTHROUGH, output_mode=SocketMode.PUSH)
    # The consumer takes one every ~0.1 s; on a loaded CI machine an 8 MB hop has been seen to
    # stall past the default 1 s wait: a longer bound, the same behaviour (wait, not drop).
    supervisor.handshake({"output_queue_size": 1, "output_wait": 5.0})
    output = supervisor.connect_output()
    output.setsockopt(zmq.RCVHWM, 1)
    supervisor.prime({"image": make_image(), "value": 1.0})
    supervisor.status_where(lambda s: s.clients == 1)
    # 8 MB frames: far more than the socket buffers hold, so the runner really has to wait.
    big = np.zeros((2048, 2048), dtype=np.uint16)
    feeder = threading.Thread(
        target=lambda: [supervisor.send({"image": big, "value": 1.0}, p) for p in range(100, 112)],
        daemon=True,
    )
    feeder.start()
    received = []
    while not received or received[-1] < 111:
        time.sleep(0.1)  # a slow consumer: the runner must wait for it, not drop
        received.append(supervisor.receive().pulse_id)
    feeder.join(10)
    status = supervisor.status_where(lambda s: s.last_pulse_id == 111)
    assert status.output_drops == 0
    assert status.messages_out + status.drops == status.messages_in
    assert received == sorted(received)


def test_sigterm_stops_the_runner_with_exit_code_zero(supervisor: FakeSupervisor) -> None:
    """SIGTERM makes the loop finish and the runner exit 0."""
    supervisor.start(PASSTHROUGH)
    supervisor.handshake()
    supervisor.process.send_signal(signal.SIGTERM)
    code, stderr = supervisor.wait_exit()
    assert code == ExitCode.OK, stderr


SOURCE_WITH_CLEANUP = """
    import logging
    import time

    def generate(parameters):
        logging.getLogger("camera").info("device connection opened")
        try:
            while True:
                time.sleep(0.01)
                yield None
        finally:
            logging.getLogger("camera").info("device connection released")
"""


def test_sigterm_closes_the_source_generator_before_exit(supervisor: FakeSupervisor) -> None:
    """A source's finally (its device connection) runs at stop, while LOG is still open."""
    supervisor.start(SOURCE_WITH_CLEANUP)
    supervisor.handshake()
    supervisor.expect_log(lambda r: r.message == "device connection opened")
    supervisor.process.send_signal(signal.SIGTERM)
    record = supervisor.expect_log(lambda r: r.message.endswith("released"))
    assert record.message == "device connection released"
    code, stderr = supervisor.wait_exit()
    assert code == ExitCode.OK, stderr


def test_user_logging_reaches_log_as_structured_records(supervisor: FakeSupervisor) -> None:
    """logging calls in user code arrive on LOG with level, logger, message and extra fields."""
    supervisor.start(
        """
        import logging

        log = logging.getLogger("my.pipeline")

        def process(data, pulse_id, timestamp, parameters):
            log.info("saw pulse %d", pulse_id, extra={"pulse": pulse_id, "odd": object()})
            log.debug("not at the default level")
            return None
        """
    )
    supervisor.handshake()
    supervisor.send({"value": 1.0}, 42)
    record = supervisor.expect_log(lambda r: r.logger == "my.pipeline")
    assert (record.level, record.message) == ("info", "saw pulse 42")
    assert record.fields["pulse"] == 42
    assert record.fields["odd"].startswith("<object object")
    assert (record.instance, record.run) == ("test-instance", 7)
    assert not any("default level" in r.message for r in supervisor.drain_logs())


def test_status_counters_match_the_traffic(supervisor: FakeSupervisor) -> None:
    """Messages and bytes in and out, clients and last pulse id reflect what was exchanged."""
    supervisor.start(PASSTHROUGH)
    supervisor.handshake()
    supervisor.connect_output()
    primes = supervisor.prime({"image": make_image(), "value": 1.0})
    before = supervisor.status_where(lambda s: s.messages_in == primes)
    sent_bytes = 0
    for pulse_id in range(100, 110):
        frames = supervisor.encoder.encode({"image": make_image(), "value": 2.0}, pulse_id)
        sent_bytes += sum(memoryview(f).nbytes for f in frames)
        supervisor.data.send_multipart(frames, copy=False)
        assert supervisor.receive().pulse_id == pulse_id
    status = supervisor.status_where(lambda s: s.last_pulse_id == 109)
    assert status.messages_in == primes + 10
    assert status.bytes_in - before.bytes_in == sent_bytes
    assert status.messages_out - before.messages_out == 10
    assert status.bytes_out > before.bytes_out + 10 * make_image().nbytes
    assert status.drops == status.errors == status.malformed == 0
    assert status.clients == 1
    assert status.processing_time_max >= status.processing_time_avg >= 0
