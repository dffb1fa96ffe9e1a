"""The background folder: ids, the latest of a camera, validated uploads, never a pickle."""

from __future__ import annotations

import io
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from supervisor.backgrounds import BackgroundStore, background_id
from supervisor.nodeapi.errors import (
    BackgroundNotFoundError,
    InvalidConfigError,
    InvalidNameError,
    PayloadTooLargeError,
)


def npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> BackgroundStore:
    """A store on a folder that does not exist yet."""
    return BackgroundStore(tmp_path / "backgrounds", max_bytes=2**20)


def test_a_collected_id_names_the_camera_and_the_time() -> None:
    """background_id is <camera>_YYYYMMDD_HHMMSS_ffffff, CamServer's naming."""
    when = datetime(2026, 11, 21, 14, 5, 9, 123456)
    assert background_id("SARES20-CAMS142-M5", when) == "SARES20-CAMS142-M5_20261121_140509_123456"


def test_saved_background_round_trips_with_its_metadata(store: BackgroundStore) -> None:
    """A saved array is listed with camera, time, shape and dtype, and loads back equal."""
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    name = background_id("cam", datetime(2026, 1, 2, 3, 4, 5, 6))
    info = store.save(name, image)
    assert (info.camera, info.shape, info.dtype) == ("cam", [3, 4], "uint16")
    assert info.created == datetime(2026, 1, 2, 3, 4, 5, 6).timestamp()
    np.testing.assert_array_equal(store.load(name), image)
    assert [i.id for i in store.infos()] == [name]


def test_latest_matches_the_camera_exactly(store: BackgroundStore) -> None:
    """Camera 'cam' never picks up 'cam_other' backgrounds (CamServer's prefix-match bug)."""
    image = np.zeros((2, 2), np.uint16)
    older = background_id("cam", datetime(2026, 1, 1))
    newer = background_id("cam", datetime(2026, 1, 2))
    other = background_id("cam_other", datetime(2026, 1, 3))
    for name in (newer, other, older):
        store.save(name, image)
    store.save("cam_manual", image)
    assert store.latest("cam").id == newer
    assert store.ids("cam") == [older, newer]
    assert store.latest("cam_other").id == other
    with pytest.raises(BackgroundNotFoundError, match="no background of camera 'ca'"):
        store.latest("ca")


def test_an_uploaded_npy_file_is_stored_as_given(store: BackgroundStore) -> None:
    """A .npy upload of a 2-D float array is kept with its dtype; its id needs no timestamp."""
    image = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    info = store.write("flat-field.v2", npy(image))
    assert (info.camera, info.dtype, info.shape) == (None, "float32", [4, 5])
    assert store.read("flat-field.v2") == npy(image)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True), "without pickles"),
        (pickle.dumps(np.zeros((2, 2))), "without pickles"),
        (npy(np.zeros((2, 3, 4), np.uint16)), "2-D numeric array"),
        (npy(np.array(["a", "b"]).reshape(1, 2)), "2-D numeric array"),
        (npy(np.zeros((0, 4), np.uint16)), "non-empty"),
        (b"not numpy at all", "not a numpy .npy array"),
    ],
)
def test_an_upload_that_is_not_a_numeric_image_is_refused(
    store: BackgroundStore, data: bytes, reason: str
) -> None:
    """Pickles, object arrays, 3-D data and garbage are refused with why; nothing is written."""
    with pytest.raises(InvalidConfigError, match=reason):
        store.write("bad", data)
    assert store.ids() == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "-dash", "x.npy", "", "a" * 129])
def test_ids_that_could_leave_the_folder_are_refused(store: BackgroundStore, name: str) -> None:
    """An id is one plain name: no separators, no leading dot, no traversal."""
    with pytest.raises(InvalidNameError, match="is not valid"):
        store.write(name, npy(np.zeros((2, 2), np.uint16)))


def test_an_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    """More than max_bytes is refused before it is parsed."""
    store = BackgroundStore(tmp_path, max_bytes=100)
    with pytest.raises(PayloadTooLargeError, match="more than the limit of 100"):
        store.write("big", npy(np.zeros((10, 10), np.uint16)))


def test_delete_removes_and_a_missing_background_is_not_found(store: BackgroundStore) -> None:
    """Deleted backgrounds are gone; reading or deleting a missing one is a not-found error."""
    store.save("bg", np.ones((2, 2), np.uint8))
    store.delete("bg")
    assert store.ids() == []
    for action in (store.read, store.info, store.delete):
        with pytest.raises(BackgroundNotFoundError, match="no background 'bg'"):
            action("bg")


def test_foreign_files_in_the_folder_are_not_listed(store: BackgroundStore) -> None:
    """A broken .npy or another file in the folder is skipped by the listing."""
    store.save("good", np.ones((2, 2), np.uint8))
    (store.root / "broken.npy").write_bytes(b"junk")
    (store.root / "notes.txt").write_text("hello")
    assert [i.id for i in store.infos()] == ["good"]


def test_a_header_claiming_more_data_than_the_file_holds_is_refused(store: BackgroundStore):
    """A .npy header of 100000 x 100000 float64 on a small file is refused before any
    allocation, quoting the shape and the sizes; nothing is written."""
    buffer = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}
    np.lib.format.write_array_header_1_0(buffer, header)
    buffer.write(b"\0" * 4096)
    with pytest.raises(InvalidConfigError) as info:
        store.write("huge", buffer.getvalue())
    assert info.value.message == (
        "background 'huge': its header claims shape [100000, 100000] of float64, "
        "80000000000 bytes, but the file holds 4096 bytes of data"
    )
    assert store.ids() == []
