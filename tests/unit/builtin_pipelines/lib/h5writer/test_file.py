"""SwissFelFile: sf_bsread_writer's layout, read back with plain h5py + hdf5plugin and h5ls."""

from __future__ import annotations

import logging
import re

import h5py
import numpy as np
import pytest

from builtin_pipelines.lib.h5writer import SwissFelFile, WrittenFrame
from supervisor.contract.bsread import BSREAD_TYPES
from supervisor.contract.bsread.compression import bitshuffle_decompress

from .h5support import h5ls, image, read_all, read_in_subprocess
from .test_layout import NUMERIC

ROWS = 7


def value_of(type_name: str, pulse_id: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """A value of a bsread type that tells its pulse id (bool alternates)."""
    dtype = BSREAD_TYPES[type_name]
    count = int(np.prod(shape)) if shape else 1
    raw = (np.arange(count) + pulse_id) % 100
    array = (raw % 2 == 0) if dtype.kind == "b" else raw.astype(dtype)
    return array.reshape(shape) if shape else array[0]


def every_type(pulse_id: int) -> dict[str, object]:
    """One scalar, one waveform and one image of every bsread type, and a string."""
    channels: dict[str, object] = {}
    for name in NUMERIC:
        channels[f"S:{name}"] = value_of(name, pulse_id)
        channels[f"W:{name}"] = value_of(name, pulse_id, (5,))
        channels[f"I:{name}"] = value_of(name, pulse_id, (3, 4))
    channels["STR"] = f"pulse é {pulse_id}"
    return channels


@pytest.mark.parametrize(
    ("compression", "threads"), [("bitshuffle_lz4", 0), ("bitshuffle_lz4", 2), ("none", 1)]
)
def test_every_bsread_type_reads_back_exactly(tmp_path, compression, threads):
    """Scalars (N, 1), waveforms (N, L), images (N, H, W), strings (N,): values and dtypes."""
    path = tmp_path / "types.h5"
    with SwissFelFile(path, compression=compression, threads=threads, flush_rows=3) as f:
        for row in range(ROWS):
            f.write(1000 + row, every_type(1000 + row))
    data = read_all(path)
    for name in NUMERIC:
        dtype = BSREAD_TYPES[name]
        for prefix, shape in (("S", (1,)), ("W", (5,)), ("I", (3, 4))):
            stored = data[f"/data/{prefix}:{name}/data"]
            assert stored.dtype == dtype, (prefix, name)
            assert stored.shape == (ROWS, *shape), (prefix, name)
            for row in range(ROWS):
                want = value_of(name, 1000 + row, () if prefix == "S" else shape)
                np.testing.assert_array_equal(stored[row].reshape(np.shape(want)), want)
    strings = data["/data/STR/data"]
    assert strings.shape == (ROWS,)
    assert [s.decode() for s in strings] == [f"pulse é {1000 + r}" for r in range(ROWS)]
    for channel in every_type(0):
        np.testing.assert_array_equal(data[f"/data/{channel}/pulse_id"], np.arange(1000, 1007))
        assert data[f"/data/{channel}/pulse_id"].dtype == np.int64
        np.testing.assert_array_equal(data[f"/data/{channel}/is_data_present"], np.ones(ROWS))
        assert data[f"/data/{channel}/is_data_present"].dtype == np.uint8


def test_images_are_one_frame_per_chunk_with_the_bitshuffle_filter(tmp_path):
    """Each frame is one chunk of filter 32008, the standard cd_values, and it compressed."""
    path = tmp_path / "img.h5"
    with SwissFelFile(path) as f:
        for pulse_id in range(4):
            f.write(pulse_id, {"image": image(pulse_id, (48, 64))})
    summary = f.close()
    with h5py.File(path, "r") as h:
        dataset = h["data/image/data"]
        assert dataset.chunks == (1, 48, 64)
        fid, _, values, _ = dataset.id.get_create_plist().get_filter(0)
        assert (fid, values[2:]) == (32008, (2, 0, 2))  # element size, default block, LZ4
        assert dataset.id.get_num_chunks() == 4
        np.testing.assert_array_equal(dataset[3], image(3, (48, 64)))
    assert summary.frames == 4
    assert summary.compression_ratio > 1.5


def test_missing_values_leave_zero_rows_and_zero_pulse_ids(tmp_path):
    """None, or a channel left out of a message: data 0 / "", pulse_id 0, is_data_present 0."""
    path = tmp_path / "missing.h5"
    rows = [
        {"x": 1.5, "s": "a", "img": image(10)},
        {"x": None, "s": None, "img": None},
        {},  # none of them in this message
        {"x": 4.5, "s": "d", "img": image(13)},
    ]
    with SwissFelFile(path) as f:
        for index, channels in enumerate(rows):
            f.write(10 + index, channels)
    data = read_all(path)
    np.testing.assert_array_equal(data["/data/x/data"][:, 0], [1.5, 0, 0, 4.5])
    assert list(data["/data/s/data"]) == [b"a", b"", b"", b"d"]
    np.testing.assert_array_equal(data["/data/img/data"][1], np.zeros((24, 32)))
    np.testing.assert_array_equal(data["/data/img/data"][3], image(13))
    for channel in ("x", "s", "img"):
        np.testing.assert_array_equal(data[f"/data/{channel}/pulse_id"], [10, 0, 0, 13])
        np.testing.assert_array_equal(data[f"/data/{channel}/is_data_present"], [1, 0, 0, 1])


def test_a_channel_whose_first_value_is_missing_still_gets_its_data(tmp_path):
    """sf_bsread_writer never created `data` for such a channel; here it comes with its value."""
    path = tmp_path / "late.h5"
    with SwissFelFile(path, flush_rows=2) as f:  # SWMR before the value: the file is reopened
        for pulse_id in range(6):
            f.write(pulse_id, {"late": None if pulse_id < 3 else np.int16(pulse_id), "x": 1})
    summary = f.close()
    data = read_all(path)
    np.testing.assert_array_equal(data["/data/late/data"][:, 0], [0, 0, 0, 3, 4, 5])
    assert data["/data/late/data"].dtype == np.int16
    np.testing.assert_array_equal(data["/data/late/is_data_present"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data["/data/late/pulse_id"], [0, 0, 0, 3, 4, 5])
    assert summary.channels == {"late": 3, "x": 6}
    assert summary.reopens == 1


def test_a_channel_that_appears_later_is_zero_before(tmp_path):
    """A channel new at row 5 has rows 0-4 empty in all three datasets, like all its columns."""
    path = tmp_path / "new.h5"
    with SwissFelFile(path, flush_rows=2, chunk_rows=3) as f:
        for pulse_id in range(9):
            channels: dict[str, object] = {"x": float(pulse_id)}
            if pulse_id >= 5:
                channels["new"] = np.arange(4, dtype=np.float32) + pulse_id
                channels["cam"] = image(pulse_id)
            f.write(pulse_id, channels)
    summary = f.close()
    data = read_all(path)
    assert data["/data/new/data"].shape == (9, 4)
    np.testing.assert_array_equal(data["/data/new/data"][:5], np.zeros((5, 4)))
    np.testing.assert_array_equal(data["/data/new/data"][8], np.arange(4) + 8)
    np.testing.assert_array_equal(data["/data/new/pulse_id"], [0] * 5 + [5, 6, 7, 8])
    assert data["/data/cam/data"].shape == (9, 24, 32)
    np.testing.assert_array_equal(data["/data/cam/data"][:5], np.zeros((5, 24, 32)))
    np.testing.assert_array_equal(data["/data/cam/data"][6], image(6))
    assert summary.reopens == 1  # both channels in one reopen


def test_a_definition_change_moves_the_old_values_to_data_1(tmp_path):
    """As sf_bsread_writer: data(1), data(2)... trimmed to their rows; new data zero before."""
    path = tmp_path / "change.h5"
    values = [1, 2, 2.5, 3.5, np.arange(3.0), np.arange(3.0) + 1, "x"]
    with SwissFelFile(path, flush_rows=2) as f:
        for pulse_id, value in enumerate(values):
            f.write(100 + pulse_id, {"ch": value, "img": image(pulse_id, (4, 5 + pulse_id // 4))})
    summary = f.close()
    data = read_all(path)
    np.testing.assert_array_equal(data["/data/ch/data(1)"], [[1], [2]])
    assert data["/data/ch/data(1)"].dtype == np.int64
    np.testing.assert_array_equal(data["/data/ch/data(2)"][:, 0], [0, 0, 2.5, 3.5])
    np.testing.assert_array_equal(
        data["/data/ch/data(3)"][4:], [np.arange(3.0), np.arange(3.0) + 1]
    )
    assert data["/data/ch/data(3)"].shape == (6, 3)
    assert list(data["/data/ch/data"]) == [b""] * 6 + [b"x"]
    np.testing.assert_array_equal(data["/data/ch/pulse_id"], np.arange(100, 107))
    np.testing.assert_array_equal(data["/data/img/data(1)"][3], image(3, (4, 5)))
    assert data["/data/img/data(1)"].shape == (4, 4, 5)
    assert data["/data/img/data"].shape == (7, 4, 6)
    np.testing.assert_array_equal(data["/data/img/data"][:4], np.zeros((4, 4, 6)))
    np.testing.assert_array_equal(data["/data/img/data"][6], image(6, (4, 6)))
    assert summary.renamed == (
        "/data/ch/data(1)", "/data/ch/data(2)", "/data/img/data(1)", "/data/ch/data(3)",
    )  # fmt: skip


def test_missing_values_never_count_as_a_definition_change(tmp_path):
    """None between values of one type changes nothing: no data(1)."""
    path = tmp_path / "nochange.h5"
    with SwissFelFile(path) as f:
        for pulse_id, value in enumerate([1.0, None, 2.0, np.zeros(0), 3.0]):
            f.write(pulse_id, {"ch": value})
    assert f.close().renamed == ()
    assert "/data/ch/data(1)" not in read_all(path)


def test_every_dataset_is_trimmed_to_the_rows_written(tmp_path):
    """Datasets grow in steps and chunks; after close each is exactly as long as the rows."""
    path = tmp_path / "trim.h5"
    with SwissFelFile(path, chunk_rows=4, flush_rows=1000, flush_seconds=None) as f:
        for pulse_id in range(11):
            f.write(pulse_id, {"x": pulse_id, "w": np.ones(3), "img": image(pulse_id), "s": "a"})
    for name, array in read_all(path).items():
        if name.startswith("/data/"):
            assert array.shape[0] == 11, name
    with h5py.File(path, "r") as h:
        assert h["data/x/data"].chunks == (4, 1)
        assert h["data/x/data"].maxshape == (None, 1)


def test_general_holds_scalar_byte_strings(tmp_path):
    """/general/{created,instrument,process,user} as sf_bsread_writer writes them."""
    path = tmp_path / "general.h5"
    SwissFelFile(path, {"user": "p12345", "instrument": "Alvra", "created": "then"}).close()
    with h5py.File(path, "r") as h:
        assert h["general/user"].shape == ()
        assert h["general/user"].dtype.kind == "S"
        assert h["general/user"][()] == b"p12345"
        assert h["general/instrument"][()] == b"Alvra"
        assert h["general/created"][()] == b"then"
        assert h["general/process"][()] == b"not given"
        assert list(h["data"]) == []


def test_h5ls_lists_the_layout(tmp_path):
    """Debian's h5ls (HDF5 1.10) reads the file: groups, datasets, their shapes, the filter."""
    path = tmp_path / "ls.h5"
    with SwissFelFile(path, {"user": "me"}) as f:
        for pulse_id in range(3):
            f.write(pulse_id, {"CAM:FPICTURE": image(pulse_id), "BPM:X": 0.5, "CAM:NAME": "n"})
    listing = h5ls(path)
    expected = {
        "/data/CAM:FPICTURE/data": "Dataset {3/Inf, 24, 32}",
        "/data/CAM:FPICTURE/pulse_id": "Dataset {3/Inf}",
        "/data/CAM:FPICTURE/is_data_present": "Dataset {3/Inf}",
        "/data/BPM:X/data": "Dataset {3/Inf, 1}",
        "/data/CAM:NAME/data": "Dataset {3/Inf}",
        "/general/user": "Dataset {SCALAR}",
    }
    found = dict(re.findall(r"^(\S+)\s+(.+?)\s*$", listing, re.MULTILINE))
    for name, kind in expected.items():
        assert found.get(name) == kind, listing
    assert re.search(r"Filter-0: .*32008", h5ls(path, "-v"))


def test_a_value_that_cannot_be_stored_writes_nothing(tmp_path):
    """A bad value raises before anything of its message is written; writing goes on."""
    path = tmp_path / "bad.h5"
    with SwissFelFile(path) as f:
        f.write(1, {"x": 1.0})
        with pytest.raises(TypeError, match=r"'y'.*complex"):
            f.write(2, {"x": 2.0, "y": np.zeros(2, np.complex64)})
        with pytest.raises(ValueError, match="channel name"):
            f.write(2, {"x": 2.0, "a/b": 1})
        f.write(3, {"x": 3.0})
        assert f.rows == 2
    data = read_all(path)
    np.testing.assert_array_equal(data["/data/x/pulse_id"], [1, 3])
    assert "/data/y/pulse_id" not in data


def test_an_existing_file_is_refused_unless_overwriting(tmp_path):
    """Data is never replaced by accident."""
    path = tmp_path / "exists.h5"
    SwissFelFile(path).close()
    with pytest.raises(FileExistsError):
        SwissFelFile(path)
    SwissFelFile(path, overwrite=True).close()


def test_writing_after_close_is_an_error(tmp_path):
    """A closed file says so; closing twice gives the same summary."""
    f = SwissFelFile(tmp_path / "closed.h5")
    f.write(1, {"x": 1})
    first = f.close()
    with pytest.raises(ValueError, match="closed"):
        f.write(2, {"x": 2})
    assert f.close() == first


def test_the_summary_counts_rows_channels_and_missing_pulse_ids(tmp_path):
    """First and last pulse id, values per channel, the pulse ids the source skipped."""
    f = SwissFelFile(tmp_path / "summary.h5")
    for pulse_id in (10, 12, 13, 16):
        f.write(pulse_id, {"a": 1.0, "b": None if pulse_id == 12 else 2.0})
    summary = f.close(missing_step=1)
    assert (summary.rows, summary.first_pulse_id, summary.last_pulse_id) == (4, 10, 16)
    assert summary.channels == {"a": 4, "b": 3}
    assert summary.missing_pulse_ids == (11, 14, 15)
    assert f.close(missing_step=2).missing_pulse_ids == (14,)
    assert f.close().missing_pulse_ids is None


@pytest.mark.parametrize("compression", ["bitshuffle_lz4", "none"])
def test_each_written_frame_is_reported_with_its_chunk(tmp_path, compression):
    """on_frame gets every image chunk in row order: the bytes the file holds."""
    frames: list[WrittenFrame] = []
    with SwissFelFile(tmp_path / "cb.h5", compression=compression, on_frame=frames.append) as f:
        for pulse_id in range(5):
            f.write(pulse_id, {"cam": image(pulse_id) if pulse_id != 2 else None, "x": 1})
    assert [(w.channel, w.row, w.pulse_id) for w in frames] == [
        ("cam", 0, 0), ("cam", 1, 1), ("cam", 3, 3), ("cam", 4, 4),
    ]  # fmt: skip
    for written in frames:
        assert written.shape == (24, 32)
        assert written.dtype == np.dtype("<u2")
        if compression == "none":
            assert written.compression == "none"
            decoded = np.frombuffer(written.chunk, "<u2")
        else:
            assert written.compression == "bslz4"
            decoded = bitshuffle_decompress(written.chunk.tobytes(), np.dtype("<u2"))
        np.testing.assert_array_equal(decoded.reshape(24, 32), image(written.pulse_id))


def test_a_failing_frame_callback_is_logged_once_and_writing_goes_on(tmp_path, caplog):
    """A broken live port never costs data."""

    def broken(frame: WrittenFrame) -> None:
        raise RuntimeError("viewer gone")

    path = tmp_path / "broken.h5"
    with caplog.at_level(logging.ERROR), SwissFelFile(path, on_frame=broken) as f:
        for pulse_id in range(3):
            f.write(pulse_id, {"cam": image(pulse_id)})
    assert len([r for r in caplog.records if "frame callback" in r.message]) == 1
    np.testing.assert_array_equal(read_all(path)["/data/cam/data"][2], image(2))


def test_a_paused_stream_is_flushed_after_flush_seconds(tmp_path):
    """Rows written before a pause reach the file (SWMR readers see them) without more rows."""
    from tests.support import wait_for

    path = tmp_path / "paused.h5"
    f = SwissFelFile(path, flush_rows=1000, flush_seconds=0.2)
    try:
        for pulse_id in range(3):
            f.write(pulse_id, {"x": float(pulse_id), "cam": image(pulse_id)})
        assert wait_for(
            lambda: read_in_subprocess(path, "/data/x/pulse_id") == 3,
            timeout=20,
            what="3 rows visible to a SWMR reader",
        )
    finally:
        f.close()
