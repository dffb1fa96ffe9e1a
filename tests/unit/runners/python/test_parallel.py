"""Parallel processing in the runner: threads and processes, output in input order."""

from __future__ import annotations

import os
import pickle
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq
from conftest import DEADLINE, FakeSupervisor

from runners.python.calls import Outcome
from runners.python.loader import find_entry
from runners.python.options import OptionError, RunnerOptions
from runners.python.parallel import Parallel, ReorderBuffer
from runners.python.slots import (
    SHARED_MIN,
    SlotMemory,
    pack_input,
    pack_result,
    unpack_input,
    unpack_result,
)
from runners.python.stats import Stats
from runners.python.threadpool import ThreadWorkers
from runners.python.workerlink import describe_error, rebuild_error
from supervisor.contract import ExitCode

MODES = ["threads", "processes"]

# -- the reorder buffer, alone ---------------------------------------------------------------


def test_reorder_buffer_releases_in_submission_order() -> None:
    """Outcomes finishing in any order come out in the order they were submitted."""
    buffer = ReorderBuffer(capacity=10)
    for seq in range(5):
        buffer.expect(seq)
    released = []
    for seq in (3, 1, 4, 0, 2):
        assert buffer.finish(seq, f"r{seq}")
        released += list(buffer.ready())
    assert released == ["r0", "r1", "r2", "r3", "r4"]
    assert (buffer.pending, buffer.given_up) == (0, 0)


def test_reorder_buffer_holds_nothing_back_for_an_empty_outcome() -> None:
    """A message with nothing to send (None, or an error) releases the ones behind it."""
    buffer = ReorderBuffer(capacity=10)
    for seq in range(3):
        buffer.expect(seq)
    buffer.finish(1, "r1")
    assert list(buffer.ready()) == []
    buffer.finish(0, None)
    assert list(buffer.ready()) == ["r1"]


def test_reorder_buffer_gives_up_a_late_message_and_drops_its_result() -> None:
    """Beyond capacity held results, the missing earlier one is given up; it is dropped later."""
    buffer = ReorderBuffer(capacity=2)
    for seq in range(6):
        buffer.expect(seq)
    buffer.finish(1, "r1")
    buffer.finish(2, "r2")
    assert list(buffer.ready()) == []  # two held: still waiting for 0
    buffer.finish(3, "r3")
    assert list(buffer.ready()) == ["r1", "r2", "r3"]
    assert buffer.given_up == 1
    assert not buffer.finish(0, "r0")  # it came after all: discarded
    buffer.finish(4, "r4")
    assert list(buffer.ready()) == ["r4"]
    assert buffer.pending == 1


def test_reorder_buffer_gives_up_everything_pending_at_once() -> None:
    """give_up_all abandons what is still out; their outcomes are refused when they come."""
    buffer = ReorderBuffer(capacity=4)
    for seq in range(3):
        buffer.expect(seq)
    buffer.finish(2, "r2")
    assert buffer.give_up_all() == 2
    assert list(buffer.ready()) == ["r2"]
    assert not buffer.finish(0, "r0")
    with pytest.raises(KeyError):
        buffer.finish(7, "never expected")


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "quoted"),
    [
        ({"parallel": "gpu"}, "parallel='gpu'"),
        ({"workers": 0}, "workers=0"),
        ({"workers": 65}, "workers=65"),
        ({"reorder_buffer": 0}, "reorder_buffer=0"),
    ],
)
def test_invalid_parallel_options_are_refused_quoting_them(config: dict, quoted: str) -> None:
    """A bad parallel, workers or reorder_buffer names the key and the value."""
    with pytest.raises(OptionError, match=quoted):
        RunnerOptions.from_config(config)


# -- shared memory slots and errors across processes, in one process -----------------------


def test_slot_round_trip_sends_a_view_of_the_input_from_the_original_memory() -> None:
    """Big arrays go through the slot; a result viewing a read-only input is rebuilt on it."""
    image = np.arange(300 * 400, dtype=np.uint16).reshape(300, 400)
    image.flags.writeable = False  # as a received ZMQ frame
    writable = np.ones(SHARED_MIN, dtype=np.uint8)
    data = {"image": image, "writable": writable, "small": np.arange(3), "text": "hi"}
    slot = SlotMemory(0)
    try:
        packed, used = pack_input(slot, data)
        assert pickle.loads(pickle.dumps(packed))["text"] == "hi"
        seen = unpack_input(slot.mapping, packed)  # what the worker sees
        np.testing.assert_array_equal(seen["image"], image)
        assert not seen["image"].flags.writeable
        with pytest.raises(ValueError, match="WRITEABLE"):
            seen["image"].setflags(write=True)
        assert seen["writable"].flags.writeable
        seen["writable"][0] = 7  # changed in place by the function: the slot has it
        new = np.full((256, 256), 3.0)
        result = {
            "roi": seen["image"][10:, 5:400:2],
            "mine": new,
            "changed": seen["writable"],
            "n": 1,
        }
        back = unpack_result(slot.mapping, pack_result(slot.mapping, result, used), packed, data)
        assert np.shares_memory(back["roi"], image)  # no copy: sent from the received frame
        np.testing.assert_array_equal(back["roi"], image[10:, 5:400:2])
        np.testing.assert_array_equal(back["mine"], new)
        assert back["changed"][0] == 7
        assert not np.shares_memory(back["changed"], writable)
        assert back["n"] == 1
    finally:
        slot.close()


def test_a_worker_error_keeps_its_name_message_and_traceback() -> None:
    """An exception rebuilt in the runner reads as the worker's, its traceback as the cause."""

    class Unpicklable(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}/{b}")

    for raised in (ZeroDivisionError("by zero"), Unpicklable(1, 2)):
        try:
            raise raised
        except Exception as exc:
            rebuilt = rebuild_error(*describe_error(exc))
        assert type(rebuilt).__name__ == type(raised).__name__
        assert str(rebuilt) == str(raised)
        assert "test_a_worker_error_keeps" in str(rebuilt.__cause__)


def test_threads_call_the_function_at_once_and_the_output_keeps_the_input_order() -> None:
    """Worker threads overlap calls; emitted outcomes come in submission order, all of them."""
    module = type(sys)("user")
    active, peak, lock = [0], [0], threading.Lock()

    def process(data: dict, pulse_id: int, timestamp: object, parameters: dict) -> dict:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(random.uniform(0, 0.01))
        with lock:
            active[0] -= 1
        return {"pulse": pulse_id}

    module.process = process
    code = find_entry(module, "user")
    poller = zmq.Poller()
    emitted: list[int] = []

    def emit(outcome: Outcome) -> None:
        emitted.append(outcome.result["pulse"])

    parallel = Parallel(ThreadWorkers(code, 3, 6, poller), "threads", 3, 100, Stats(), emit)
    try:
        for pulse_id in range(60):
            assert parallel.submit(pulse_id, None, {}, {}, lambda: False) is None
        assert parallel.drain(DEADLINE) is None
    finally:
        parallel.close()
    assert emitted == list(range(60))
    assert peak[0] > 1


# -- the runner, end to end ------------------------------------------------------------------

IDENTIFY = """
    import logging, os, threading, time

    log = logging.getLogger("user.pipeline")

    def configure(parameters):
        log.info("configured gain %s in %d", parameters.get("gain"), os.getpid())

    def process(data, pulse_id, timestamp, parameters):
        time.sleep(data.get("sleep", 0.0))
        if data.get("fail"):
            raise ZeroDivisionError("the user function failed on purpose")
        if data.get("die"):
            os.kill(os.getpid(), 9)
        return {"pulse": pulse_id, "pid": os.getpid(), "gain": parameters.get("gain", 0),
                "worker": threading.current_thread().name, "image": data["image"]}
"""


def _image(value: int = 0) -> np.ndarray:
    return np.full((256, 512), value, dtype=np.uint16)  # 256 KiB: through shared memory


def _start(supervisor: FakeSupervisor, mode: str, **config: object) -> None:
    config = {"parallel": mode, "workers": 2, "queue_size": 64, "gain": 1, **config}
    supervisor.start(IDENTIFY, config=config)
    supervisor.handshake()
    supervisor.connect_output()
    supervisor.prime({"image": _image()})


def _workers(supervisor: FakeSupervisor) -> list[psutil.Process]:
    return psutil.Process(supervisor.process.pid).children()


def _until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("mode", MODES)
def test_output_keeps_pulse_order_with_every_pulse_when_keeping_up(
    supervisor: FakeSupervisor, mode: str
) -> None:
    """Uneven processing times on two workers: every pulse comes out, in pulse-id order."""
    _start(supervisor, mode)
    pulses = range(1000, 1040)
    for pulse_id in pulses:
        image = _image(pulse_id % 1000)
        sleep = 0.03 if pulse_id % 3 == 0 else 0.002
        supervisor.send({"image": image, "sleep": sleep}, pulse_id)
    out = [supervisor.receive() for _ in pulses]
    assert [m.pulse_id for m in out] == list(pulses)
    assert all(int(m.data["pulse"]) == m.pulse_id for m in out)
    for message in out:  # the image came back through the workers intact
        assert (message.data["image"] == message.pulse_id % 1000).all()
    workers = {(int(m.data["pid"]), m.data["worker"]) for m in out}
    assert len(workers) == 2, workers
    runner_pid = supervisor.process.pid
    assert all((pid == runner_pid) == (mode == "threads") for pid, _ in workers)
    status = supervisor.status_where(lambda s: s.last_pulse_id == pulses[-1])
    assert (status.drops, status.errors) == (0, 0)
    assert status.processing_time_max >= 0.03


def test_a_bigger_frame_grows_the_shared_memory_and_arrives_intact(
    supervisor: FakeSupervisor,
) -> None:
    """Frames larger than the slots were made for get new ones; every worker gets them."""
    _start(supervisor, "processes")
    big = (np.arange(2048 * 2048, dtype=np.uint32) % 65521).astype(np.uint16).reshape(2048, 2048)
    for pulse_id in range(600, 606):
        supervisor.send({"image": big + pulse_id % 2, "sleep": 0.01}, pulse_id)
    out = [supervisor.receive() for _ in range(6)]
    assert [m.pulse_id for m in out] == list(range(600, 606))
    assert len({int(m.data["pid"]) for m in out}) == 2
    for message in out:
        np.testing.assert_array_equal(message.data["image"], big + message.pulse_id % 2)
    supervisor.send({"image": _image(3)}, 607)  # and back to small ones
    assert (supervisor.receive().data["image"] == 3).all()


@pytest.mark.parametrize("mode", MODES)
def test_a_pulse_slower_than_the_reorder_buffer_is_dropped_and_counted(
    supervisor: FakeSupervisor, mode: str
) -> None:
    """One stuck pulse does not hold the stream: later pulses flow, it is given up, counted."""
    _start(supervisor, mode, reorder_buffer=3)
    slow = 2005
    start = time.monotonic()
    for pulse_id in range(2000, 2020):
        sleep = 3.0 if pulse_id == slow else 0.005
        supervisor.send({"image": _image(), "sleep": sleep}, pulse_id)
        time.sleep(0.01)
    got = []
    while not got or got[-1] != 2019:
        got.append(supervisor.receive().pulse_id)
    assert time.monotonic() - start < 2.5  # not held back by the 3 s pulse
    missing = sorted(set(range(2000, 2020)) - set(got))
    assert got == sorted(got)
    # A worker process holds a second pulse, queued behind the slow one, when the other
    # worker was busy too; threads share one queue.
    assert missing[0] == slow, missing
    assert len(missing) <= (2 if mode == "processes" else 1), missing
    status = supervisor.status_where(lambda s: s.last_pulse_id == 2019)
    assert status.drops == len(missing)
    assert status.counters["parallel_given_up"] == len(missing)
    record = supervisor.expect_log(lambda r: "reorder_buffer" in r.message)
    assert record.level == "warning"
    supervisor.send({"image": _image()}, 2100)  # the slow one's late result is never sent
    assert supervisor.receive(timeout=5).pulse_id == 2100


@pytest.mark.parametrize("mode", MODES)
def test_an_exception_in_a_worker_is_counted_and_logged_with_its_traceback(
    supervisor: FakeSupervisor, mode: str
) -> None:
    """A raising function in a worker logs its traceback and counts an error, as in one process."""
    _start(supervisor, mode)
    supervisor.send({"image": _image(), "fail": 1}, 300)
    supervisor.send({"image": _image()}, 301)
    assert supervisor.receive().pulse_id == 301
    record = supervisor.expect_log(lambda r: r.level == "error")
    assert "processing pulse 300 failed" in record.message
    assert "ZeroDivisionError: the user function failed on purpose" in record.exc
    assert "in process" in record.exc
    assert "user_pipeline.py" in record.exc
    status = supervisor.status_where(lambda s: s.last_pulse_id == 301)
    assert status.errors == 1
    assert status.last_error == (
        "processing pulse 300 failed: ZeroDivisionError: the user function failed on purpose"
    )


def test_abort_on_error_in_a_worker_process_exits_with_processing_error_code(
    supervisor: FakeSupervisor,
) -> None:
    """With abort_on_error, an exception in a worker process ends the runner with exit code 2."""
    _start(supervisor, "processes", abort_on_error=True)
    workers = _workers(supervisor)
    supervisor.send({"image": _image(), "fail": 1}, 5)
    code, _ = supervisor.wait_exit()
    assert code == ExitCode.PROCESSING_ERROR
    psutil.wait_procs(workers, timeout=DEADLINE)
    assert not any(w.is_running() for w in workers)


def test_a_config_change_reaches_every_worker_process(supervisor: FakeSupervisor) -> None:
    """configure() runs in each worker (its log reaches LOG) and every worker sees the update."""
    _start(supervisor, "processes")
    pids = {w.pid for w in _workers(supervisor)}
    assert len(pids) == 2
    config = {"parallel": "processes", "workers": 2, "queue_size": 64, "gain": 7}
    supervisor.send_config(config, seq=1)
    assert supervisor.expect("config_ack", "config_error").kind == "config_ack"

    def configured() -> set[int]:
        return {
            int(r.message.split()[-1])
            for r in supervisor.drain_logs()
            if r.message.startswith("configured gain 7 in")
        }

    _until(lambda: configured() >= pids, "configure() with gain 7 in both workers")
    records = [
        r
        for r in supervisor.logs
        if r.message.startswith("configured gain 7") and int(r.message.split()[-1]) in pids
    ]
    assert {r.fields["worker"] for r in records} == {0, 1}
    assert all(r.logger == "user.pipeline" for r in records)
    seen: dict[int, int] = {}
    pulse_id = 3000
    while set(seen) != pids:
        supervisor.send({"image": _image(), "sleep": 0.01}, pulse_id)
        supervisor.send({"image": _image(), "sleep": 0.01}, pulse_id + 1)
        for _ in range(2):
            data = supervisor.receive().data
            seen[int(data["pid"])] = int(data["gain"])
        pulse_id += 2
    assert set(seen.values()) == {7}


def test_sigterm_leaves_no_worker_process_and_no_shared_memory_behind(
    supervisor: FakeSupervisor,
) -> None:
    """The runner stops its workers at SIGTERM and exits 0; their shared memory has no name."""
    shm_before = set(os.listdir("/dev/shm"))
    _start(supervisor, "processes")
    workers = _workers(supervisor)
    assert len(workers) == 2
    maps = Path(f"/proc/{workers[0].pid}/maps").read_text()
    assert "memfd:pipevisor-slot" in maps  # the image went through shared memory
    supervisor.process.send_signal(signal.SIGTERM)
    code, stderr = supervisor.wait_exit()
    assert code == ExitCode.OK, stderr
    _, alive = psutil.wait_procs(workers, timeout=DEADLINE)
    assert not alive
    assert set(os.listdir("/dev/shm")) <= shm_before


def test_a_worker_process_killed_with_sigkill_is_replaced(supervisor: FakeSupervisor) -> None:
    """An idle worker killed from outside is replaced; the stream goes on on both workers."""
    _start(supervisor, "processes")
    victim = _workers(supervisor)[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(DEADLINE)
    supervisor.expect_log(lambda r: f"(pid {victim.pid}) was killed by signal SIGKILL" in r.message)
    _until(lambda: len(_workers(supervisor)) == 2, "a new worker")
    pids: set[int] = set()
    pulse_id = 4000
    while len(pids) < 2:
        supervisor.send({"image": _image(), "sleep": 0.01}, pulse_id)
        pids.add(int(supervisor.receive().data["pid"]))
        pulse_id += 1
    assert victim.pid not in pids
    status = supervisor.status_where(lambda s: s.last_pulse_id == pulse_id - 1)
    assert (status.errors, status.counters["parallel_worker_restarts"]) == (0, 1)


def test_a_worker_process_dying_in_the_function_counts_its_message_as_an_error(
    supervisor: FakeSupervisor,
) -> None:
    """A worker killed while processing (a segfault in native code) costs that message only."""
    _start(supervisor, "processes")
    supervisor.send({"image": _image(), "die": 1}, 500)
    supervisor.send({"image": _image()}, 501)
    assert supervisor.receive().pulse_id == 501
    status = supervisor.status_where(lambda s: s.errors >= 1)
    assert status.errors == 1
    assert "processing pulse 500 failed: WorkerDied: worker process" in status.last_error
    assert "killed by signal SIGKILL while processing it" in status.last_error
    supervisor.send({"image": _image()}, 502)
    assert supervisor.receive().pulse_id == 502


def test_workers_that_cannot_load_the_code_fail_the_runner_with_their_error(
    supervisor: FakeSupervisor,
) -> None:
    """Code that loads in the runner but not in a worker process: exit 1, the reason on LOG."""
    supervisor.start(
        """
        import sys

        main = getattr(sys.modules["__main__"], "__spec__", None)
        if main is not None and main.name == "runners.python.worker":
            raise ImportError("this code cannot run in a worker process")

        def process(data, pulse_id, timestamp, parameters):
            return data
        """,
        config={"parallel": "processes"},
    )
    supervisor.expect("hello")
    supervisor.send_config(supervisor.env.config, seq=0)
    code, _ = supervisor.wait_exit()
    assert code == ExitCode.FAILURE
    record = supervisor.expect_log(lambda r: r.level == "error")
    assert "cannot start the workers of parallel=processes" in record.message
    assert "ImportError: this code cannot run in a worker process" in record.message
    assert "user_pipeline.py" in record.exc  # the worker's traceback


def test_a_live_change_of_parallel_restarts_the_workers(supervisor: FakeSupervisor) -> None:
    """From threads to processes and back to none, live: acked, the output goes on in order."""
    _start(supervisor, "threads")
    runner = supervisor.process.pid
    pulse_id = 5000
    for seq, mode in enumerate(("processes", "none"), start=1):
        supervisor.send_config({"parallel": mode, "queue_size": 64}, seq=seq)
        assert supervisor.expect("config_ack", "config_error").kind == "config_ack"
        out = []
        for _ in range(6):
            supervisor.send({"image": _image(), "sleep": 0.005}, pulse_id)
            pulse_id += 1
        out = [supervisor.receive() for _ in range(6)]
        assert [m.pulse_id for m in out] == list(range(pulse_id - 6, pulse_id))
        in_runner = {int(m.data["pid"]) == runner for m in out}
        assert in_runner == ({False} if mode == "processes" else {True})
    _until(lambda: not _workers(supervisor), "the worker processes gone")


def test_beam_metrics_in_worker_processes_match_the_single_process_runner(
    supervisor: FakeSupervisor,
) -> None:
    """The builtin beam_metrics gives the same numbers in worker processes; its image is sent."""
    from builtin_pipelines.beam_metrics import configure, process_image

    supervisor.start(module="builtin_pipelines.beam_metrics", config={"parallel": "processes"})
    supervisor.handshake()
    supervisor.connect_output()
    yy, xx = np.mgrid[0:480, 0:640]
    image = (20 + 1000 * np.exp(-((xx - 300.0) ** 2 / 800 + (yy - 200.0) ** 2 / 450))).astype(
        np.uint16
    )
    supervisor.prime({"image": image})
    supervisor.send({"image": image}, 77)
    while (message := supervisor.receive()).pulse_id != 77:
        pass
    parameters: dict = {}
    configure(parameters)
    expected = process_image(image, 77, message.global_timestamp, None, None, parameters, {})
    np.testing.assert_array_equal(message.data["image"], image)
    for key in ("x_center_of_mass", "y_center_of_mass", "x_fit_mean", "y_fit_standard_deviation"):
        assert message.data[key] == pytest.approx(expected[key], rel=1e-9), key
    np.testing.assert_array_equal(message.data["x_profile"], expected["x_profile"])
