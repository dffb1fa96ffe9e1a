"""native: the one-pass profile kernel, its build cache and the numpy fallback."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builtin_pipelines.beam_metrics import native

INT_DTYPES = [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32]


def expected(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, object, object]:
    """What CamServer computes: int64 sums (numpy's for signed), nanmin, nanmax."""
    return image.sum(0, dtype=np.int64), image.sum(1, dtype=np.int64), image.min(), image.max()


def assert_profiles(image: np.ndarray, native_module=native.DEFAULT) -> None:
    """The kernel's profiles, extremes and their types equal numpy's exactly."""
    got = native.profiles(image, native_module)
    x, y, low, high = expected(image)
    np.testing.assert_array_equal(got.x, x)
    np.testing.assert_array_equal(got.y, y)
    assert got.x.dtype == got.y.dtype == np.int64
    assert (got.min, got.max) == (low, high)
    assert type(got.min) is type(got.max) is image.dtype.type


@pytest.fixture(scope="module")
def kernels():
    """The compiled kernels (the default cache); the suite needs a C compiler."""
    module = native.kernels()
    assert module is not None, "native kernels failed to build; see the logged warning"
    return module


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_kernel_equals_numpy_for_every_integer_dtype(kernels, dtype):
    """Full-range random pixels, C-contiguous: exact sums, min and max."""
    info = np.iinfo(dtype)
    image = np.random.default_rng(0).integers(info.min, info.max, (137, 251), dtype, endpoint=True)
    assert_profiles(image, kernels)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_kernel_reads_views_without_copying(kernels, dtype, monkeypatch):
    """ROI views (row stride > width), flipped rows and read-only buffers are read in place."""

    def no_numpy(image):
        raise AssertionError("a row-strided view went to the numpy path")

    monkeypatch.setattr(native, "_numpy_profiles", no_numpy)
    info = np.iinfo(dtype)
    base = np.random.default_rng(1).integers(info.min, info.max, (90, 120), dtype, endpoint=True)
    base.flags.writeable = False
    for view in (base[10:70, 33:101], base[::-1], base[5:6, :], base[:, 7:8], base[::3, 2:]):
        assert_profiles(view, kernels)


def test_column_strided_views_take_the_numpy_path(kernels):
    """A view whose pixels are not adjacent in a row is summed by numpy, with the same result."""
    base = np.random.default_rng(2).integers(0, 65535, (40, 60), np.uint16)
    assert_profiles(base[:, ::2], kernels)
    assert_profiles(base.T, kernels)


def test_wide_accumulators_never_overflow(kernels):
    """More rows or columns than a 32-bit block holds: the sums are still exact."""
    assert_profiles(np.full((70_000, 2), 65535, np.uint16), kernels)
    assert_profiles(np.full((2, 70_000), 65535, np.uint16), kernels)
    assert_profiles(np.full((40_000, 2), -32768, np.int16), kernels)
    assert_profiles(np.full((2, 40_000), -32768, np.int16), kernels)
    assert_profiles(np.full((3, 5), 2**32 - 1, np.uint32), kernels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_images_use_numpy_sums_and_nan_aware_extremes(kernels, dtype):
    """Float profiles are numpy's own sums (same rounding); min/max skip NaN, all-NaN gives nan."""
    image = np.random.default_rng(3).normal(100, 30, (64, 80)).astype(dtype)
    image[5, 6] = np.nan
    got = native.profiles(image, kernels)
    np.testing.assert_array_equal(got.x, image.sum(0))
    np.testing.assert_array_equal(got.y, image.sum(1))
    assert got.x.dtype == dtype
    assert (got.min, got.max) == (np.nanmin(image), np.nanmax(image))
    all_nan = native.profiles(np.full((2, 3), np.nan, dtype), kernels)
    assert np.isnan(all_nan.min)
    assert np.isnan(all_nan.max)


def test_numpy_fallback_equals_the_kernel(kernels):
    """native=None gives the same profiles, extremes and types for every integer dtype."""
    for dtype in INT_DTYPES:
        image = np.random.default_rng(4).integers(0, 100, (30, 40)).astype(dtype)
        a, b = native.profiles(image, kernels), native.profiles(image, None)
        for field in ("x", "y"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert getattr(a, field).dtype == getattr(b, field).dtype
        assert (a.min, a.max) == (b.min, b.max)
        assert type(a.min) is type(b.min)


@pytest.mark.parametrize("native_module", [native.DEFAULT, None], ids=["kernel", "numpy"])
def test_zero_size_and_non_2d_images_raise_value_error(native_module):
    """No pixels: ValueError like numpy's nanmin; a 1-D array is refused too."""
    with pytest.raises(ValueError, match="zero-size"):
        native.profiles(np.zeros((0, 4), np.uint16), native_module)
    with pytest.raises(ValueError, match="2-D"):
        native.profiles(np.zeros(4, np.uint16), native_module)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    """$PIPEVISOR_CACHE_DIR, else $XDG_CACHE_HOME/pipevisor, else ~/.cache/pipevisor."""
    monkeypatch.setenv("PIPEVISOR_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert native.cache_root() == tmp_path / "a"
    monkeypatch.delenv("PIPEVISOR_CACHE_DIR")
    assert native.cache_root() == tmp_path / "b" / "pipevisor"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert native.cache_root() == tmp_path / "home" / ".cache" / "pipevisor"


LOAD = (
    "import sys; from pathlib import Path; from builtin_pipelines.beam_metrics import native;"
    "print(native.load(Path(sys.argv[1])) is not None)"
)


def test_two_processes_building_at_once_share_one_build(tmp_path):
    """Concurrent first builds both succeed; one keyed folder stays, no temporary is left."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=100)[0].strip() for p in procs]
    assert outputs == ["True", "True"]
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert len(entries) == 1, entries
    assert entries[0].startswith("beam_metrics-"), entries
    built = list((tmp_path / entries[0]).iterdir())
    assert len(built) == 1
    assert built[0].name.startswith("_pipevisor_beam_metrics_")
    # This process finds the build and loads it without compiling again.
    module = native.load(tmp_path)
    assert module is not None
    assert native.load(tmp_path) is module
    assert sorted(p.name for p in tmp_path.iterdir()) == entries
    assert_profiles(np.arange(12, dtype=np.uint16).reshape(3, 4), module)


def test_without_a_compiler_numpy_takes_over_after_one_warning(monkeypatch, tmp_path, caplog):
    """A failing build logs one warning and returns None; the numpy path does the work."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    caplog.set_level(logging.WARNING, logger="pipevisor.beam_metrics")
    assert native.load(tmp_path / "cache") is None
    assert native.load(tmp_path / "cache") is None  # remembered: no second attempt, no warning
    warnings = [r for r in caplog.records if r.name == "pipevisor.beam_metrics"]
    assert len(warnings) == 1
    assert "using numpy" in warnings[0].getMessage()
    assert not any(Path(tmp_path / "cache").glob(".beam_metrics-*"))  # no half-built leftover
    assert_profiles(np.arange(12, dtype=np.uint16).reshape(3, 4), None)


def test_fits_use_the_c_librarys_exp_only_where_it_is_numpys(kernels):
    """exp_mode picks libm's exp only if np.exp gives the same bits on this machine."""
    args = -np.random.default_rng(5).uniform(0, 700, 50_000)
    libm = np.empty_like(args)
    ffi = kernels.ffi
    kernels.lib.bm_libm_exp(
        ffi.from_buffer("double[]", args), ffi.from_buffer("double[]", libm), args.size
    )
    same = np.array_equal(libm.view(np.uint64), np.exp(args).view(np.uint64))
    assert native.exp_mode(kernels) == (0 if same else 1)
