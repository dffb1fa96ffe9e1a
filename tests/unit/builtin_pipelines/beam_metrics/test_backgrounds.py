"""Background files: safe loading, the uint16 cast, the cache and the error messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from builtin_pipelines.beam_metrics.backgrounds import BackgroundError, BackgroundStore, check_id
from supervisor.contract import EnvVar


class _Planted:
    """An object whose unpickling would create a file: proof that nothing is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A background folder, named in the environment as the supervisor names it."""
    monkeypatch.setenv(EnvVar.BACKGROUNDS, str(tmp_path))
    return tmp_path


def test_loads_a_uint16_background_read_only(folder: Path) -> None:
    """A .npy file in the folder named by PIPEVISOR_BACKGROUNDS loads as a read-only array."""
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.save(folder / "cam_bg.npy", data)
    background = BackgroundStore.from_environ().load("cam_bg")
    np.testing.assert_array_equal(background, data)
    assert background.dtype == np.uint16
    assert not background.flags.writeable


def test_other_numeric_types_are_cast_to_uint16(folder: Path) -> None:
    """Float and signed backgrounds become uint16, clipped to 0..65535 rather than wrapped."""
    data = np.array([[1.9, -3.0], [70000.0, 12.0]])
    np.save(folder / "float_bg.npy", data)
    background = BackgroundStore.from_environ().load("float_bg")
    assert background.dtype == np.uint16
    np.testing.assert_array_equal(background, [[1, 0], [65535, 12]])


def test_an_unchanged_file_is_served_from_the_cache(folder: Path) -> None:
    """Loading the same unchanged file again returns the same array object."""
    np.save(folder / "bg.npy", np.ones((2, 2), np.uint16))
    store = BackgroundStore(folder)
    assert store.load("bg") is store.load("bg")


def test_a_replaced_file_is_loaded_again(folder: Path) -> None:
    """A background written again (new mtime or size) is read again."""
    path = folder / "bg.npy"
    np.save(path, np.ones((2, 2), np.uint16))
    store = BackgroundStore(folder)
    first = store.load("bg")
    np.save(path, np.full((2, 3), 7, np.uint16))
    np.testing.assert_array_equal(store.load("bg"), np.full((2, 3), 7))
    np.save(path, np.full((2, 3), 9, np.uint16))  # same size: only the mtime tells
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    np.testing.assert_array_equal(store.load("bg"), np.full((2, 3), 9))
    assert first[0, 0] == 1


def test_a_pickled_object_array_is_refused_without_unpickling(folder: Path) -> None:
    """An object array is refused, and the pickle inside it is never executed."""
    marker = folder / "unpickled"
    evil = np.empty(1, dtype=object)
    evil[0] = _Planted(marker)
    np.save(folder / "evil.npy", evil, allow_pickle=True)
    with pytest.raises(
        BackgroundError, match=r"^Invalid background image file: evil: not a numeric 2-D array"
    ):
        BackgroundStore(folder).load("evil")
    assert not marker.exists()


@pytest.mark.parametrize(
    "data",
    [np.zeros((2, 2, 2), np.uint16), np.zeros(4, np.uint16), np.array([["a", "b"]])],
    ids=["3-D", "1-D", "strings"],
)
def test_non_numeric_or_not_2d_arrays_are_refused(folder: Path, data: np.ndarray) -> None:
    """Only a numeric 2-D array is a background; the message says what the file holds."""
    np.save(folder / "odd.npy", data)
    with pytest.raises(BackgroundError, match=r"^Invalid background image file: odd: not a num"):
        BackgroundStore(folder).load("odd")


def test_non_finite_float_backgrounds_are_refused(folder: Path) -> None:
    """A float background holding NaN cannot be cast to uint16 meaningfully."""
    np.save(folder / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(BackgroundError, match="NaN or infinity"):
        BackgroundStore(folder).load("nan")


def test_an_archive_or_garbage_is_refused(folder: Path) -> None:
    """An .npz saved under a .npy name and a text file are both invalid background files."""
    with (folder / "zipped.npy").open("wb") as file:
        np.savez(file, a=np.zeros((2, 2)))
    (folder / "text.npy").write_text("not numpy")
    store = BackgroundStore(folder)
    for name in ("zipped", "text"):
        with pytest.raises(BackgroundError, match=f"^Invalid background image file: {name}: "):
            store.load(name)


def test_a_broken_file_is_not_read_again_at_every_frame(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error of an unchanged broken file is cached like a good background."""
    (folder / "text.npy").write_text("not numpy")
    store = BackgroundStore(folder)
    with pytest.raises(BackgroundError):
        store.load("text")
    monkeypatch.setattr(np, "load", _fail)
    with pytest.raises(BackgroundError, match="text"):
        store.load("text")


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("np.load called again for an unchanged file")


def test_a_missing_file_is_reported_with_the_folder(folder: Path) -> None:
    """A background id with no file says it was not found, and where it was looked for."""
    with pytest.raises(
        BackgroundError,
        match=rf"^Invalid background image file: nothing: not found in {folder}$",
    ):
        BackgroundStore.from_environ().load("nothing")


def test_no_folder_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PIPEVISOR_BACKGROUNDS every load fails with a message saying so."""
    monkeypatch.delenv(EnvVar.BACKGROUNDS, raising=False)
    with pytest.raises(BackgroundError, match=r"bg: no background folder \(PIPEVISOR_BACKGROUNDS"):
        BackgroundStore.from_environ().load("bg")


@pytest.mark.parametrize("bad", ["../outside", "a/b", "..", ".", "", "a\\b", 5, None])
def test_ids_that_are_not_one_file_name_are_refused(folder: Path, bad: object) -> None:
    """A background id cannot reach outside the folder."""
    with pytest.raises(ValueError, match="a background id is a file name"):
        check_id(bad)
    with pytest.raises(BackgroundError, match=r"^Invalid background image file: "):
        BackgroundStore(folder).load(bad)  # type: ignore[arg-type]


def test_good_ids_are_accepted() -> None:
    """Names CamServer generates (camera name plus a timestamp) are valid ids."""
    assert check_id("SARBD02-DSCR050_20240101_120000_123456") == (
        "SARBD02-DSCR050_20240101_120000_123456"
    )
