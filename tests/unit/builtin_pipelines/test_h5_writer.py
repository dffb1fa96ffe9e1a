"""The h5_writer builtin pipeline: its parameters, its files, its live port, its exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from builtin_pipelines import h5_writer
from builtin_pipelines.h5_writer import STATE_KEY, configure, process, report, resolve_output
from runners.python.config import Configurator
from runners.python.loader import load
from runners.python.options import RunnerOptions
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """The data folder relative output files go to."""
    folder = tmp_path / "data"
    monkeypatch.setenv(h5_writer.DATA_DIR_VAR, str(folder))
    return folder


def frame(pulse_id: int) -> np.ndarray:
    return (np.arange(12 * 16).reshape(12, 16) + pulse_id).astype(np.uint16)


def run(parameters: dict, pulse_ids, *, close: bool = True) -> dict:
    """configure, then process a camera-like message per pulse id (what the runner does)."""
    configure(parameters)
    for pulse_id in pulse_ids:
        data = {"image": frame(pulse_id), "width": np.int64(16), "x_axis": np.arange(16.0)}
        assert process(data, pulse_id, (1_700_000_000, 0), parameters) is None
    if close:
        parameters[STATE_KEY].close()
    return parameters


def rows(path: Path) -> list[int]:
    with h5py.File(path, "r") as f:
        return list(f["data/image/pulse_id"][()])


def test_messages_become_rows_of_the_file(data_dir):
    """Every channel of every message, in the SwissFEL layout, under the data folder."""
    run({"output_file": "cam/run_0001.h5", "general": {"user": "p1"}}, range(100, 105))
    path = data_dir / "cam" / "run_0001.h5"
    assert rows(path) == [100, 101, 102, 103, 104]
    with h5py.File(path, "r") as f:
        import hdf5plugin  # noqa: F401

        np.testing.assert_array_equal(f["data/image/data"][4], frame(104))
        assert f["data/width/data"].shape == (5, 1)
        assert f["data/x_axis/data"].shape == (5, 16)
        assert f["general/user"][()] == b"p1"


@pytest.mark.parametrize(
    ("key", "value", "quoted"),
    [
        ("compression", "zip", "compression"),
        ("if_exists", "append", "if_exists"),
        ("chunk_rows", 0, "chunk_rows"),
        ("flush_rows", 1.5, "flush_rows"),
        ("flush_seconds", 0, "flush_seconds"),
        ("compression_threads", -1, "compression_threads"),
        ("general", {"user": 3}, "general"),
        ("general", ["user"], "general"),
        ("live_port", 70000, "live_port"),
        ("live_every", 0, "live_every"),
        ("live_host", 5, "live_host"),
        ("pulse_id_step", 0, "pulse_id_step"),
        ("output_file", "", "output_file"),
        ("output_file", 5, "output_file"),
    ],
)
def test_bad_parameters_are_refused_quoting_the_key(data_dir, key, value, quoted):
    """configure() refuses a bad value with a message that names the key and the value."""
    with pytest.raises(ValueError, match=quoted) as caught:
        configure({"output_file": "x.h5", key: value})
    assert repr(value) in str(caught.value) or key == "output_file"


def test_output_file_is_required(data_dir):
    """Without output_file there is nothing to write to."""
    with pytest.raises(ValueError, match="output_file is required"):
        configure({})


@pytest.mark.parametrize("path", ["../x.h5", "a/../../x.h5", ".", "a/.."])
def test_relative_paths_may_not_leave_the_data_folder(data_dir, path):
    """A relative output_file stays inside the data folder, '..' or not."""
    with pytest.raises(ValueError, match="leaves the data folder"):
        configure({"output_file": path})


def test_a_link_out_of_the_data_folder_is_refused(data_dir, tmp_path):
    """A symbolic link inside the data folder cannot lead a relative path out of it."""
    data_dir.mkdir()
    (data_dir / "out").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leaves the data folder"):
        resolve_output("out/x.h5")
    assert resolve_output("in/x.h5") == data_dir.resolve() / "in" / "x.h5"


def test_absolute_paths_are_written_as_given(data_dir, tmp_path):
    """A beamline's own folder, named in full."""
    target = tmp_path / "beamline" / "p12345" / "raw.h5"
    run({"output_file": str(target)}, [1, 2])
    assert rows(target) == [1, 2]


def test_parallel_workers_are_refused(data_dir):
    """One file is written one message after the other: no parallel calls."""
    with pytest.raises(ValueError, match="parallel"):
        configure({"output_file": "x.h5", "parallel": "processes"})
    configure({"output_file": "x.h5", "parallel": "none"})


def test_an_existing_file_gets_a_numbered_successor(data_dir):
    """A restarted writer never overwrites the file it was writing: run.h5, run_1.h5..."""
    for first in (1, 10, 20):
        run({"output_file": "run.h5"}, [first])
    assert rows(data_dir / "run.h5") == [1]
    assert rows(data_dir / "run_1.h5") == [10]
    assert rows(data_dir / "run_2.h5") == [20]


def test_if_exists_fail_and_overwrite(data_dir):
    """fail: every message is refused (an error the runner counts); overwrite replaces it."""
    run({"output_file": "run.h5"}, [1])
    parameters = {"output_file": "run.h5", "if_exists": "fail"}
    with pytest.raises(FileExistsError, match="if_exists: fail"):
        run(parameters, [2])
    run({"output_file": "run.h5", "if_exists": "overwrite"}, [3])
    assert rows(data_dir / "run.h5") == [3]
    assert not (data_dir / "run_1.h5").exists()


def test_a_new_output_file_closes_the_first_one_at_once(data_dir):
    """A live update of output_file ends the acquisition: the first file is complete."""
    parameters = run({"output_file": "a.h5"}, [1, 2, 3], close=False)
    parameters["output_file"] = "b.h5"  # the runner updates the dict, then calls configure
    configure(parameters)
    assert rows(data_dir / "a.h5") == [1, 2, 3]  # closed before any further message
    assert not (data_dir / "b.h5").exists()
    run(parameters, [4, 5])
    assert rows(data_dir / "b.h5") == [4, 5]


def test_the_runner_gives_the_writer_a_deep_queue_by_default(data_dir):
    """A writer that lags for a moment (a flush) loses nothing: its queue holds seconds of
    input, not the 4 messages of a viewer; the config can still set another size."""
    configurator = Configurator(load(module="builtin_pipelines.h5_writer"))
    try:
        assert configurator.apply({"output_file": "a.h5"}).queue_size >= 100
        assert RunnerOptions().queue_size < 100  # deeper than the runner's own default
        assert configurator.apply({"output_file": "a.h5", "queue_size": 7}).queue_size == 7
    finally:
        configurator.parameters[STATE_KEY].close()


def test_the_report_follows_the_open_file_and_the_closed_ones(data_dir):
    """report(): the open file, its rows and pulse ids, pulses skipped and late, files closed."""
    parameters = {"output_file": "a.h5", "pulse_id_step": 2}
    configure(parameters)
    assert report(parameters) == {
        "file": None,
        "rows": 0,
        "first_pulse_id": None,
        "last_pulse_id": None,
        "missing_pulses": None,
        "late": 0,
        "files_closed": 0,
        "last_closed": None,
        "not_written": 0,
    }
    run(parameters, [10, 12, 18, 16, 20], close=False)  # 14 missing; 16 late (after 18)
    now = report(parameters)
    assert now["file"] == str(data_dir.resolve() / "a.h5")
    assert (now["rows"], now["first_pulse_id"], now["last_pulse_id"]) == (5, 10, 20)
    assert (now["missing_pulses"], now["late"], now["files_closed"]) == (1, 1, 0)
    with pytest.raises(TypeError):
        process({"bad": object()}, 22, None, parameters)
    assert report(parameters)["not_written"] == 1
    assert report(parameters)["rows"] == 5  # nothing was written

    parameters["output_file"] = "b.h5"
    configure(parameters)  # closes a.h5
    closed = report(parameters)
    assert (closed["file"], closed["rows"], closed["files_closed"]) == (None, 0, 1)
    assert closed["last_closed"] == {
        "file": str(data_dir.resolve() / "a.h5"),
        "rows": 5,
        "first_pulse_id": 10,
        "last_pulse_id": 20,
        "missing_pulses": 1,  # 14: the file has 10, 12, 16, 18, 20
        "images": 5,
        "compression_ratio": closed["last_closed"]["compression_ratio"],
        "late": 1,
    }
    assert closed["last_closed"]["compression_ratio"] > 0
    run(parameters, [30])
    assert report(parameters)["files_closed"] == 2
    assert report(parameters)["last_closed"]["file"].endswith("b.h5")
    json.dumps(report(parameters))  # what the runner sends


def test_without_a_step_missing_pulses_are_not_counted(data_dir):
    """Without pulse_id_step a gap may be the source's rate: missing_pulses stays null."""
    parameters = run({"output_file": "a.h5"}, [1, 5, 9], close=False)
    assert report(parameters)["missing_pulses"] is None
    assert report(parameters)["rows"] == 3
    parameters[STATE_KEY].close()


def test_the_live_port_follows_the_files(data_dir):
    """Bound by configure; header per file, its images, series_end when it closes."""
    port = free_port()
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.linger = 0
    try:
        parameters = {"output_file": "a.h5", "live_port": port}
        configure(parameters)  # binds the port: the viewer can connect before any message
        pull.connect(f"tcp://127.0.0.1:{port}")
        assert parameters[STATE_KEY].live._socket.poll(5000, zmq.POLLOUT), "no viewer"
        run(parameters, [1], close=False)
        parameters["output_file"] = "b.h5"
        run(parameters, [2, 3])
        headers = []
        while pull.poll(1000):
            headers.append(json.loads(pull.recv_multipart()[0]))
    finally:
        pull.close(linger=0)
        context.term()
    root = data_dir.resolve()
    assert [(h["htype"], h.get("filename"), h.get("frame")) for h in headers] == [
        ("header", str(root / "a.h5"), None),
        ("image", None, 0),
        ("series_end", None, None),
        ("header", str(root / "b.h5"), None),
        ("image", None, 0),
        ("image", None, 1),
        ("series_end", None, None),
    ]
    assert [h["msg_number"] for h in headers] == list(range(7))


def test_a_live_port_that_cannot_be_bound_refuses_the_configuration(data_dir):
    """The operator hears it at once (a 422); the writer goes on as configured before."""
    taken = zmq.Context()
    blocker = taken.socket(zmq.PULL)
    port = blocker.bind_to_random_port("tcp://127.0.0.1")
    try:
        parameters = run({"output_file": "a.h5"}, [1], close=False)
        with pytest.raises(ValueError, match=f"live_port {port}: cannot bind"):
            configure({**parameters, "live_port": port})
        run(parameters, [2])
    finally:
        blocker.close(linger=0)
        taken.term()
    assert rows(data_dir / "a.h5") == [1, 2]


def test_a_program_that_ends_closes_its_file(tmp_path):
    """No stop hook is needed: at exit the file is closed, trimmed and plainly readable."""
    path = tmp_path / "exit.h5"
    script = f"""
import sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from builtin_pipelines.h5_writer import configure, process
parameters = {{"output_file": {str(path)!r}, "flush_rows": 1000, "flush_seconds": 1000}}
configure(parameters)
for pulse_id in range(7):
    data = {{"x": float(pulse_id), "image": np.ones((8, 8), np.uint16)}}
    process(data, pulse_id, None, parameters)
"""
    env = {k: v for k, v in os.environ.items() if k != h5_writer.DATA_DIR_VAR}
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env=env)
    with h5py.File(path, "r") as f:  # not marked open for writing: closed properly
        assert f["data/x/pulse_id"].shape == (7,)
        assert f["data/image/data"].shape == (7, 8, 8)
