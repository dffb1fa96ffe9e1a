"""The HDF5 writer for real: a simulated camera, and psi-bsread's Sender, written by h5_writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle for h5py: how users read the images)
import numpy as np
import pytest
import zmq

from tests.support import SupervisorProcess, free_port, wait_for

pytestmark = [
    pytest.mark.system,
    # psi-bsread is a test-only peer that may warn about its own numpy/pyzmq use: only
    # deprecations raised from its code (and its mflow transport) are ignored.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(bsread|mflow)"),
]

H, W = 48, 64
BEAM_X, BEAM_Y = 20, 30
ROWS = 20  # messages each writer must have written before it is stopped
DEADLINE = 30.0

CAMERA = {
    "builtin": "camera_simulation",
    "parameters": {
        "width": W, "height": H, "rate": 50, "noise": 0, "background": 0,
        "deterministic": True, "beam_x": BEAM_X, "beam_y": BEAM_Y,
        "beam_sigma_x": 4, "beam_sigma_y": 3,
    },
}  # fmt: skip


def writer_entry(source: Any, data_dir: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "builtin": "h5_writer",
        "input": source,
        "output": {"enabled": False},
        # No queue_size: the builtin's own default is deep (a writer waits rather than drops).
        "parameters": {"flush_seconds": 0.2, **parameters},
        "env": {"PIPEVISOR_DATA_DIR": str(data_dir)},
    }


def start(sup: SupervisorProcess, *names: str) -> None:
    for name in names:
        response = sup.api("POST", "/instances", json={"name": name, "entry": name})
        assert response.status_code == 201, response.text
    for name in names:
        wait_for(lambda n=name: sup.instance(n)["ready"], timeout=20, what=f"{name} ready")


def stop(sup: SupervisorProcess, name: str) -> dict[str, Any]:
    response = sup.api("POST", f"/instances/{name}/stop")
    assert response.status_code == 200, response.text
    info = sup.wait_state(name, "stopped")
    assert info["exit_code"] == 0, info
    return info


def written(sup: SupervisorProcess, name: str, count: int) -> None:
    """Wait until the writer's status says it has processed ``count`` messages."""
    wait_for(
        lambda: (sup.instance(name)["stats"] or {}).get("messages_in", 0) >= count,
        timeout=DEADLINE,
        what=f"{name} to take {count} messages",
    )


@pytest.fixture
def viewer() -> Iterator[tuple[zmq.Socket, zmq.Socket, int]]:
    """A streaming-receiver style viewer: PULL connecting to the writer's live port, and a
    monitor socket that reports when the connection is made."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.linger = 0
    monitor = pull.get_monitor_socket(zmq.EVENT_CONNECTED)
    port = free_port()
    pull.connect(f"tcp://127.0.0.1:{port}")
    yield pull, monitor, port
    pull.disable_monitor()
    monitor.close(linger=0)
    pull.close(linger=0)
    context.term()


def test_a_simulated_camera_is_written_and_viewed_live(
    start_supervisor, write_entry, tmp_path, viewer
) -> None:
    """Camera -> h5_writer: closed, plainly readable files; a viewer gets each file live."""
    pull, monitor, live_port = viewer
    data_dir = tmp_path / "data"
    entry = writer_entry(
        {"camera": "cam"},
        data_dir,
        {"output_file": "cam/run_0001.h5", "general": {"user": "p12345"}, "live_port": live_port},
    )
    write_entry("cam.json", json.dumps(CAMERA))
    write_entry("writer.json", json.dumps(entry))
    sup = start_supervisor()
    start(sup, "writer")  # and its camera; the live port is bound before the writer is ready
    assert monitor.poll(int(DEADLINE * 1000)), "the viewer never connected to the live port"
    written(sup, "writer", 1)  # run_0001 opens with the first message: let one come first
    # The viewer is connected: the next acquisition is seen from its header on.
    response = sup.api("PATCH", "/instances/writer/config", json={"output_file": "cam/run_0002.h5"})
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = []
    blobs: dict[int, bytes] = {}  # msg_number -> blob
    second_file = str(data_dir / "cam" / "run_0002.h5")
    while sum(m["htype"] == "image" and m["msg_number"] > _header_number(messages, second_file)
              for m in messages) < 5:  # fmt: skip
        assert pull.poll(int(DEADLINE * 1000)), f"the viewer got only {messages}"
        _take(pull, messages, blobs)
    written(sup, "writer", ROWS)
    report = wait_for(
        lambda: (
            (r := sup.instance("writer")["report"]).get("rows", 0) > 0
            and r["files_closed"] == 1
            and r
        ),
        what="the writer's report: run_0001 closed, run_0002 written",
    )
    assert report["file"] == str(data_dir / "cam" / "run_0002.h5")
    assert report["last_closed"]["file"] == str(data_dir / "cam" / "run_0001.h5")
    assert report["last_closed"]["rows"] > 0
    assert report["last_closed"]["last_pulse_id"] < report["first_pulse_id"]
    stop(sup, "writer")
    while pull.poll(5000):  # up to the series_end the writer sent when its file closed
        if _take(pull, messages, blobs)["htype"] == "series_end":
            break

    first, second = data_dir / "cam" / "run_0001.h5", data_dir / "cam" / "run_0002.h5"
    with h5py.File(first, "r") as f:  # closed by the PATCH, complete
        earlier = f["data/image/pulse_id"][()]
        assert len(earlier) > 0
        assert f["data/image/data"].shape == (len(earlier), H, W)
    with h5py.File(second, "r") as f:  # opens plainly: the writer closed it on SIGTERM
        pulse_ids = f["data/image/pulse_id"][()]
        assert len(pulse_ids) >= 5
        assert pulse_ids[0] > earlier[-1]
        assert np.all(np.diff(pulse_ids) > 0)
        assert f["data/image/is_data_present"][()].all()
        images = f["data/image/data"]
        assert images.shape == (len(pulse_ids), H, W)
        assert images.dtype == np.uint16
        assert images.id.get_create_plist().get_filter(0)[0] == 32008
        last = images[-1]
        assert np.unravel_index(np.argmax(last), last.shape) == (BEAM_Y, BEAM_X)
        assert f["data/width/data"][0, 0] == W
        assert f["data/x_axis/data"].shape == (len(pulse_ids), W)
        assert f["general/user"][()] == b"p12345"
        index = next(i for i, m in enumerate(messages) if m.get("filename") == str(second))
        assert messages[index - 1]["htype"] == "series_end"  # of run_0001
        assert messages[-1]["htype"] == "series_end"  # of run_0002
        series = messages[index + 1 : -1]
        assert len(series) >= 5
        rows_by_pulse = {int(p): row for row, p in enumerate(pulse_ids)}
        for message in series:
            assert message["htype"] == "image"
            assert message["shape"] == [H, W]
            assert message["compression"] == "bslz4"
            row = rows_by_pulse[message["pulse_id"]]
            assert message["frame"] == row
            stored = images.id.read_direct_chunk((row, 0, 0))[1]
            assert stored == blobs[message["msg_number"]]  # the blob is the stored chunk
    numbers = [m["msg_number"] for m in messages]
    assert numbers == sorted(numbers)


def _take(pull: zmq.Socket, messages: list[dict[str, Any]], blobs: dict[int, bytes]) -> dict:
    """Receive one live message: its JSON into ``messages``, its blob (if any) into ``blobs``."""
    parts = pull.recv_multipart()
    message = json.loads(parts[0])
    messages.append(message)
    if len(parts) > 1:
        blobs[message["msg_number"]] = parts[1]
    return message


def _header_number(messages: list[dict[str, Any]], filename: str) -> int:
    """msg_number of the header of ``filename`` (images after it belong to that file)."""
    headers = [
        m["msg_number"]
        for m in messages
        if m["htype"] == "header" and m.get("filename") == filename
    ]
    return headers[-1] if headers else 1 << 62


def test_an_external_bsread_stream_of_scalars_is_written_exactly(
    start_supervisor, write_entry, tmp_path
) -> None:
    """psi-bsread's Sender -> h5_writer: every pulse a row, every type, missing values empty."""
    from bsread import PUSH, Sender

    count, first = 30, 5000
    port = free_port()
    sender = Sender(port=port, address="tcp://127.0.0.1", mode=PUSH, send_timeout=10_000)
    channels: list[tuple[str, Any, dict[str, Any]]] = [
        ("BPM:X", lambda p: p / 8, {"type": "float64"}),
        ("BPM:COUNT", lambda p: np.uint32(p), {"type": "uint32"}),
        ("BPM:WAVE", lambda p: np.arange(6, dtype=np.int16) * p, {"type": "int16", "shape": [6]}),
        ("BPM:NAME", lambda p: f"bpm é {p}", {"type": "string"}),
        ("BPM:OK", lambda p: p % 3 != 0, {"type": "bool"}),
        # Missing in the first messages: sf_bsread_writer never wrote this channel's data.
        ("BPM:LATE", lambda p: None if p < first + 3 else p * 1.5, {"type": "float64"}),
    ]
    for name, function, metadata in channels:
        sender.add_channel(name, function, dict(metadata))
    sender.open()
    try:
        data_dir = tmp_path / "data"
        entry = writer_entry(
            {"url": f"tcp://127.0.0.1:{port}", "mode": "PULL"},
            data_dir,
            {"output_file": "bpm.h5", "pulse_id_step": 1},
        )
        write_entry("writer.json", json.dumps(entry))
        sup = start_supervisor()
        start(sup, "writer")
        for pulse_id in range(first, first + count):
            sender.send(pulse_id=pulse_id, timestamp=(1_700_000_000, pulse_id))
        written(sup, "writer", count)
        report = wait_for(
            lambda: (r := sup.instance("writer")["report"]).get("rows") == count and r,
            what=f"the writer's report of {count} rows",
        )
        stop(sup, "writer")
    finally:
        sender.close()

    assert report == {
        "file": str(data_dir / "bpm.h5"),
        "rows": count,
        "first_pulse_id": first,
        "last_pulse_id": first + count - 1,
        "missing_pulses": 0,
        "late": 0,
        "files_closed": 0,
        "last_closed": None,
        "not_written": 0,
    }

    pulse_ids = np.arange(first, first + count)
    with h5py.File(data_dir / "bpm.h5", "r") as f:
        for name, _, _ in channels:
            assert f[f"data/{name}/pulse_id"].shape == (count,), name
        np.testing.assert_array_equal(f["data/BPM:X/pulse_id"][()], pulse_ids)
        np.testing.assert_array_equal(f["data/BPM:X/data"][:, 0], pulse_ids / 8)
        assert f["data/BPM:COUNT/data"].dtype == np.uint32
        np.testing.assert_array_equal(f["data/BPM:COUNT/data"][:, 0], pulse_ids)
        assert f["data/BPM:WAVE/data"].shape == (count, 6)
        np.testing.assert_array_equal(f["data/BPM:WAVE/data"][7], np.arange(6) * pulse_ids[7])
        assert [s.decode() for s in f["data/BPM:NAME/data"][()]] == [
            f"bpm é {p}" for p in pulse_ids
        ]
        np.testing.assert_array_equal(f["data/BPM:OK/data"][:, 0], pulse_ids % 3 != 0)
        late = f["data/BPM:LATE/data"][:, 0]
        np.testing.assert_array_equal(late[:3], 0)
        np.testing.assert_array_equal(late[3:], pulse_ids[3:] * 1.5)
        np.testing.assert_array_equal(f["data/BPM:LATE/is_data_present"][()], [0] * 3 + [1] * 27)
        np.testing.assert_array_equal(f["data/BPM:LATE/pulse_id"][:3], 0)
    logs = sup.api("GET", "/instances/writer/logs", params={"format": "text", "tail": 500}).text
    assert "0 pulse ids missing" in logs, logs[-2000:]
