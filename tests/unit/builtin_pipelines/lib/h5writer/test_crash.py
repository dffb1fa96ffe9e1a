"""A writer SIGKILLed in the middle of an acquisition leaves a file readable to its last flush."""

from __future__ import annotations

import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from .h5support import ROOT, h5clear, h5ls, image, read_all

FLUSH_ROWS = 25
LATE_FROM = 60  # a channel that first appears once the file is in SWMR mode (a reopen)
KILL_AFTER = 130  # rows the writer has reported when it is killed

WRITER = f"""
import sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from builtin_pipelines.lib.h5writer import SwissFelFile

def image(pulse_id):
    return ((np.arange(24 * 32).reshape(24, 32) % 251) + pulse_id).astype("<u2")

f = SwissFelFile(sys.argv[1], flush_rows={FLUSH_ROWS}, flush_seconds=None, threads=1)
pulse_id = 0
while True:  # until killed
    channels = {{"x": float(pulse_id), "cam": image(pulse_id), "name": f"p{{pulse_id}}"}}
    if pulse_id >= {LATE_FROM}:
        channels["late"] = np.int32(pulse_id)
    f.write(pulse_id, channels)
    pulse_id += 1
    print(f.rows, flush=True)
"""


def flushed_by(rows: int) -> int:
    """The rows flushed once the writer reported ``rows``: every 25, and at the reopen."""
    flushed = 0
    for written in range(1, rows + 1):
        if written - 1 == LATE_FROM:  # adding "late" flushed the rows before it
            flushed = LATE_FROM
        if written - flushed >= FLUSH_ROWS:
            flushed = written
    return flushed


@pytest.fixture
def killed_file(tmp_path):
    """A file whose writer was SIGKILLed while writing; and the rows it had reported."""
    path = tmp_path / "killed.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported = 0
    deadline = time.monotonic() + 60
    try:
        while reported < KILL_AFTER:
            line = writer.stdout.readline()
            assert line, f"the writer died: {writer.wait()} {writer.stderr.read()}"
            reported = int(line)
            assert time.monotonic() < deadline, f"the writer reported only {reported} rows"
    finally:
        writer.kill()  # SIGKILL, in the middle of writing rows
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -9
    return path, reported


def test_a_killed_writer_leaves_every_row_up_to_its_last_flush(killed_file):
    """Opened as a SWMR reader: all datasets hold at least the flushed rows, every one valid."""
    path, reported = killed_file
    data = read_all(path, swmr=True)
    rows = min(len(data[f"/data/{c}/pulse_id"]) for c in ("x", "cam", "name", "late"))
    assert rows >= flushed_by(reported), (rows, reported)
    pulse_ids = np.arange(rows)
    for channel in ("x", "cam", "name"):
        np.testing.assert_array_equal(data[f"/data/{channel}/pulse_id"][:rows], pulse_ids)
        assert data[f"/data/{channel}/is_data_present"][:rows].all()
    np.testing.assert_array_equal(data["/data/x/data"][:rows, 0], pulse_ids)
    assert [s.decode() for s in data["/data/name/data"][:rows]] == [f"p{p}" for p in pulse_ids]
    for row in range(rows):
        np.testing.assert_array_equal(data["/data/cam/data"][row], image(row))
    late = data["/data/late/data"][:rows, 0]
    np.testing.assert_array_equal(late[:LATE_FROM], 0)
    np.testing.assert_array_equal(late[LATE_FROM:], pulse_ids[LATE_FROM:])
    np.testing.assert_array_equal(data["/data/late/is_data_present"][:rows], pulse_ids >= LATE_FROM)


def test_a_killed_writers_file_opens_plainly_after_h5clear(killed_file):
    """HDF5 marks a file open for writing; h5clear -s lifts it for plain h5py and h5ls."""
    path, reported = killed_file
    with pytest.raises(OSError, match="h5clear"):
        h5py.File(path, "r")
    h5clear(path)
    data = read_all(path)
    assert len(data["/data/cam/pulse_id"]) >= flushed_by(reported)
    assert "/data/late/data" in h5ls(path)
