"""The buffer and its acquisitions: exact pulse ranges in the past, the future and both."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle for h5py, as users read the images)
import numpy as np
import pytest

import builtin_pipelines.pulse_buffer as pulse_buffer
from builtin_pipelines.pulse_buffer.ring import PulseRing
from runners.python.config import Configurator
from runners.python.loader import load
from runners.python.options import RunnerOptions

DEADLINE = 20.0


def message(pulse_id: int) -> dict[str, Any]:
    return {
        "value": float(pulse_id),
        "image": np.full((6, 8), pulse_id % 60000, dtype=np.uint16),
    }


class Buffer:
    """One buffer instance's parameters dict, driven as the runner drives it."""

    def __init__(self, tmp_path: Path, **parameters: Any) -> None:
        self.folder = tmp_path
        self.parameters: dict[str, Any] = {"buffer_size": 100, **parameters}
        pulse_buffer.configure(self.parameters)

    def feed(self, pulses: range | list[int]) -> None:
        for pulse in pulses:
            pulse_buffer.process(message(pulse), pulse, (0, pulse), self.parameters)

    def acquire(self, name: str, **spec: Any) -> Path:
        path = self.folder / f"{name}.h5"
        acquisitions = dict(self.parameters.get("acquisitions") or {})
        acquisitions[name] = {"output_file": str(path), **spec}
        self.parameters["acquisitions"] = acquisitions
        pulse_buffer.configure(self.parameters)
        return path

    def set_stop(self, name: str, stop: Any) -> None:
        acquisitions = {k: dict(v) for k, v in self.parameters["acquisitions"].items()}
        acquisitions[name]["stop_pulse_id"] = stop
        self.parameters["acquisitions"] = acquisitions
        pulse_buffer.configure(self.parameters)

    def report(self, name: str) -> dict[str, Any]:
        return pulse_buffer.report(self.parameters)["acquisitions"][name]

    def wait(self, name: str, *states: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while (report := self.report(name))["state"] not in states:
            assert time.monotonic() < deadline, f"{name}: {report}"
            time.sleep(0.01)
        return report

    def close(self) -> None:
        pulse_buffer.report(self.parameters)  # still answers
        self.parameters["_pipevisor_pulse_buffer"].close()


@pytest.fixture
def buffer(tmp_path: Path):
    made: list[Buffer] = []

    def make(**parameters: Any) -> Buffer:
        made.append(Buffer(tmp_path, **parameters))
        return made[-1]

    yield make
    for b in made:
        b.close()


def pulses_in(path: Path) -> list[int]:
    with h5py.File(path, "r") as f:
        ids = f["/data/value/pulse_id"][()].tolist()
        values = f["/data/value/data"][()].ravel().tolist()
        images = f["/data/image/data"][()]
    assert values == [float(p) for p in ids]
    assert [int(i[0, 0]) for i in images] == [p % 60000 for p in ids]
    return ids


def test_a_range_in_the_past_is_written_from_the_buffer_exactly(buffer) -> None:
    b = buffer()
    b.feed(range(100, 200))
    path = b.acquire("past", start_pulse_id=120, stop_pulse_id=150)
    report = b.wait("past", "done")
    assert pulses_in(path) == list(range(120, 151))  # both ends inclusive
    assert (report["first_pulse_id"], report["last_pulse_id"], report["pulses"]) == (120, 150, 31)
    assert report["missing_count"] == 0


def test_a_range_in_the_future_is_written_as_it_comes(buffer) -> None:
    b = buffer()
    b.feed(range(100, 110))
    path = b.acquire("future", start_pulse_id=115, stop_pulse_id=125)
    b.feed(range(110, 130))
    b.wait("future", "done")
    assert pulses_in(path) == list(range(115, 126))


def test_a_range_across_now_takes_the_past_and_then_the_future(buffer) -> None:
    b = buffer()
    b.feed(range(100, 150))
    path = b.acquire("across", start_pulse_id=140, stop_pulse_id=160)
    b.feed(range(150, 170))
    b.wait("across", "done")
    assert pulses_in(path) == list(range(140, 161))


def test_pulses_the_buffer_no_longer_holds_are_reported_missing(buffer) -> None:
    b = buffer(buffer_size=50)
    b.feed(range(100, 200))  # holds 150..199
    path = b.acquire("late", start_pulse_id=140, stop_pulse_id=160)
    report = b.wait("late", "done")
    assert pulses_in(path) == list(range(150, 161))
    assert report["missing_pulse_ids"] == list(range(140, 150))
    assert report["missing_count"] == 10


def test_gaps_in_the_stream_and_at_the_end_are_listed_at_the_pulse_step(buffer) -> None:
    b = buffer(pulse_id_step=10)
    path = b.acquire("gaps", start_pulse_id=1000, stop_pulse_id=1100)
    b.feed([1000, 1010, 1030, 1040, 1050, 1060, 1070, 1080, 1120])  # 1020, 1090, 1100 lost
    report = b.wait("gaps", "done")
    assert pulses_in(path) == [1000, 1010, 1030, 1040, 1050, 1060, 1070, 1080]
    assert report["missing_pulse_ids"] == [1020, 1090, 1100]


def test_now_to_a_stop_requested_later(buffer) -> None:
    b = buffer()
    b.feed(range(100, 110))
    path = b.acquire("open", start_pulse_id="now")  # the newest held: 109
    b.feed(range(110, 120))
    assert b.report("open")["state"] == "writing"
    b.set_stop("open", "now")  # the newest held: 119
    report = b.wait("open", "done")
    assert pulses_in(path) == list(range(109, 120))
    assert (report["start_pulse_id"], report["stop_pulse_id"]) == (109, 119)
    assert report["requested"] == {"start": "now", "stop": "now"}


def test_overlapping_acquisitions_each_get_their_own_exact_range(buffer) -> None:
    b = buffer()
    b.feed(range(100, 150))
    first = b.acquire("a", start_pulse_id=110, stop_pulse_id=160)
    second = b.acquire("b", start_pulse_id=140, stop_pulse_id=170)
    b.feed(range(150, 180))
    b.wait("a", "done")
    b.wait("b", "done")
    assert pulses_in(first) == list(range(110, 161))
    assert pulses_in(second) == list(range(140, 171))


def test_a_new_acquisition_never_overwrites_a_file(buffer, tmp_path: Path) -> None:
    b = buffer()
    (tmp_path / "taken.h5").write_bytes(b"someone's data")
    with pytest.raises(ValueError, match="exists; nothing is overwritten"):
        b.acquire("taken", start_pulse_id=1, stop_pulse_id=2)
    assert (tmp_path / "taken.h5").read_bytes() == b"someone's data"


def test_on_a_new_run_acquisitions_whose_files_exist_are_skipped(buffer, tmp_path: Path) -> None:
    (tmp_path / "old.h5").write_bytes(b"written before the restart")
    acquisitions = {"old": {"output_file": str(tmp_path / "old.h5"), "start_pulse_id": 5}}
    b = buffer(acquisitions=acquisitions)  # the first config of a run
    assert b.report("old")["state"] == "skipped"
    assert "exists" in b.report("old")["error"]
    assert (tmp_path / "old.h5").read_bytes() == b"written before the restart"


def test_removing_an_acquisition_aborts_it_and_keeps_a_readable_file(buffer) -> None:
    b = buffer()
    path = b.acquire("gone", start_pulse_id=100)
    b.feed(range(100, 105))
    b.parameters["acquisitions"] = {}
    pulse_buffer.configure(b.parameters)
    report = b.wait("gone", "aborted")
    assert report["error"] == "removed from the config"
    with h5py.File(path, "r") as f:  # closed by the abort: readable as any file
        assert f["/data/value/pulse_id"][()].tolist() == list(range(100, 100 + report["pulses"]))


def test_only_the_stop_of_an_acquisition_may_change(buffer) -> None:
    b = buffer()
    b.acquire("fixed", start_pulse_id=100)
    acquisitions = {"fixed": dict(b.parameters["acquisitions"]["fixed"], start_pulse_id=101)}
    with pytest.raises(ValueError, match="only its stop_pulse_id may change"):
        pulse_buffer.configure(dict(b.parameters, acquisitions=acquisitions))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"start_pulse_id": -1}, "start_pulse_id must be a pulse id"),
        ({"start_pulse_id": 10, "stop_pulse_id": 5}, "is before start_pulse_id"),
        ({"stop_pulse_id": "later"}, "stop_pulse_id must be a pulse id"),
        ({"colour": "red"}, "unknown keys ['colour']"),
        ({"general": {"user": 5}}, "general must be an object of strings"),
    ],
)
def test_a_bad_acquisition_is_refused_naming_it_and_the_key(buffer, spec, words) -> None:
    b = buffer()
    with pytest.raises(ValueError, match="acquisition 'bad'") as caught:
        b.acquire("bad", **spec)
    assert words in str(caught.value)


def test_the_ring_keeps_the_newest_within_both_bounds() -> None:
    ring = PulseRing(max_messages=3, max_bytes=10_000)
    for pulse in range(10):
        ring.append(pulse, None, {"x": np.zeros(100, np.uint8)})
    assert (ring.oldest, ring.newest, len(ring)) == (7, 9, 3)
    assert ring.append(5, None, {}) is None  # not above the newest: refused, counted
    assert ring.out_of_order == 1
    ring.resize(10, 150)  # 100 bytes a message: only one fits
    assert (ring.oldest, len(ring)) == (9, 1)
    assert [i.pulse_id for i in ring.between(0, None)] == [9]


def test_the_runner_gives_the_buffer_a_deep_queue_by_default() -> None:
    """A moment's lag loses nothing: the buffer's queue holds seconds of input, not the 4
    messages of a viewer; the config can still set another size."""
    configurator = Configurator(load(module="builtin_pipelines.pulse_buffer"))
    try:
        assert configurator.apply({}).queue_size >= 100
        assert RunnerOptions().queue_size < 100  # deeper than the runner's own default
        assert configurator.apply({"queue_size": 3}).queue_size == 3
    finally:
        configurator.parameters["_pipevisor_pulse_buffer"].close()


def test_removing_a_finished_acquisition_forgets_it(buffer) -> None:
    """DELETE of a done acquisition: it leaves the report too (a writing one stays, aborted)."""
    b = buffer()
    b.feed(range(100, 120))
    b.acquire("done", start_pulse_id=100, stop_pulse_id=110)
    b.wait("done", "done")
    b.parameters["acquisitions"] = {}
    pulse_buffer.configure(b.parameters)
    assert pulse_buffer.report(b.parameters)["acquisitions"] == {}


def test_only_the_newest_finished_acquisitions_stay_in_the_report(buffer) -> None:
    """Beyond keep_finished the oldest finished ones leave the report, named in ``pruned``
    while the config has them; a writing one is never pruned, and none starts again."""
    b = buffer(keep_finished=2)
    b.feed(range(100, 200))
    b.acquire("open", start_pulse_id=150)
    for index in range(4):
        b.acquire(f"a{index}", start_pulse_id=100 + index, stop_pulse_id=110 + index)
        b.wait(f"a{index}", "done")
    report = pulse_buffer.report(b.parameters)
    assert sorted(report["acquisitions"]) == ["a2", "a3", "open"]
    assert report["acquisitions"]["open"]["state"] == "writing"
    assert report["pruned"] == ["a0", "a1"]
    b.set_stop("a0", 120)  # a pruned one in the config: nothing happens, nothing breaks
    b.feed(range(200, 210))
    assert "a0" not in pulse_buffer.report(b.parameters)["acquisitions"]
    b.parameters["acquisitions"] = {
        k: v for k, v in b.parameters["acquisitions"].items() if k not in ("a0", "a1")
    }
    pulse_buffer.configure(b.parameters)  # what the REST edge does with the next acquisition
    report = pulse_buffer.report(b.parameters)
    assert report["pruned"] == []
    assert sorted(report["acquisitions"]) == ["a2", "a3", "open"]


def test_keep_finished_zero_keeps_none_and_a_bad_value_is_refused(buffer) -> None:
    """keep_finished 0: a finished acquisition leaves the report at once; -1 is refused."""
    b = buffer(keep_finished=0)
    b.feed(range(100, 120))
    b.acquire("quick", start_pulse_id=100, stop_pulse_id=105)
    deadline = time.monotonic() + DEADLINE
    while "quick" in (report := pulse_buffer.report(b.parameters))["acquisitions"]:
        assert time.monotonic() < deadline, report
        time.sleep(0.01)
    assert report["pruned"] == ["quick"]
    with pytest.raises(ValueError, match="keep_finished must be an integer >= 0, got -1"):
        pulse_buffer.configure(dict(b.parameters, keep_finished=-1))
