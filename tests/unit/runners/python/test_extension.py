"""C extensions in the runner: compiled through cffi or loaded as a .so, run on images in place."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from runners.python.extension import HEADER, Extension, ExtensionError, load_extension

# Both projections of any integer image, through a macro per pixel type.
PROJECTIONS = r"""
#define PROJECT(T)                                                                       \
    for (int64_t r = 0; r < h; r++) {                                                    \
        const T *row = (const T *)((const char *)image->data + r * image->row_stride);  \
        for (int64_t c = 0; c < w; c++) { x[c] += row[c]; y[r] += row[c]; }              \
    }

int pv_process_image(const pv_image *image, const pv_ext *ext)
{
    int64_t w = image->width, h = image->height;
    double skip = 0;
    if (ext->number(ext, "skip", &skip) == 1 && skip != 0)
        return PV_SKIP;
    int64_t *x = ext->array(ext, "x_profile", PV_INT64, 1, &w);
    int64_t *y = ext->array(ext, "y_profile", PV_INT64, 1, &h);
    if (!x || !y)
        return PV_ERROR;
    switch (image->dtype) {
    case PV_UINT8: PROJECT(uint8_t) break;
    case PV_INT16: PROJECT(int16_t) break;
    case PV_UINT16: PROJECT(uint16_t) break;
    case PV_INT32: PROJECT(int32_t) break;
    case PV_UINT32: PROJECT(uint32_t) break;
    default:
        ext->error(ext, "integer images only");
        return PV_ERROR;
    }
    const char *label = ext->string(ext, "label");
    if (label)
        ext->log(ext, PV_INFO, label);
    double seconds = (double)ext->timestamp_sec + ext->timestamp_ns * 1e-9;
    ext->scalar(ext, "seconds", PV_FLOAT64, &seconds);
    uint64_t pulse = ext->pulse_id;
    ext->scalar(ext, "pulse", PV_UINT64, &pulse);
    return PV_SEND;
}
"""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test compiles into its own cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIPEVISOR_CACHE_DIR", str(folder))
    return folder


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.uint32])
def test_projections_equal_numpy_s_for_every_integer_type(tmp_path: Path, dtype) -> None:
    """The image reaches C in place, whatever its type; the outputs are numpy arrays."""
    extension = load_extension(write(tmp_path, "proj.c", PROJECTIONS))
    info = np.iinfo(dtype)
    image = np.random.default_rng(3).integers(info.min, info.max, (37, 53), dtype=dtype)
    out = extension.process_image(image, 42, (1_700_000_000, 500_000_000), None, None, {})
    assert out is not None
    assert list(out) == ["x_profile", "y_profile", "seconds", "pulse"]
    np.testing.assert_array_equal(out["x_profile"], image.sum(axis=0, dtype=np.int64))
    np.testing.assert_array_equal(out["y_profile"], image.sum(axis=1, dtype=np.int64))
    assert out["pulse"] == np.uint64(42)
    assert out["pulse"].dtype == np.uint64
    assert out["seconds"] == 1_700_000_000.5


def test_views_reach_c_with_their_row_stride_and_mirrors_as_a_copy(tmp_path: Path) -> None:
    """A ROI view keeps its row stride; a mirrored view (negative stride) is made contiguous."""
    extension = load_extension(write(tmp_path, "proj.c", PROJECTIONS))
    image = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    for view in (image[5:30, 7:50], image[::-1, ::-1], image[::2, :]):
        out = extension.process_image(view, 1, None, None, None, {})
        np.testing.assert_array_equal(out["x_profile"], view.sum(axis=0, dtype=np.int64))
        np.testing.assert_array_equal(out["y_profile"], view.sum(axis=1, dtype=np.int64))


def test_skip_error_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """PV_SKIP sends nothing; PV_ERROR raises with ext->error's words; ext->log is logged."""
    extension = load_extension(write(tmp_path, "proj.c", PROJECTIONS))
    image = np.ones((4, 4), np.uint16)
    assert extension.process_image(image, 1, None, None, None, {"skip": True}) is None
    with pytest.raises(ExtensionError, match="integer images only"):
        extension.process_image(image.astype(np.float32), 1, None, None, None, {})
    with caplog.at_level("INFO", logger="pipevisor.extension"):
        extension.process_image(image, 1, None, None, None, {"label": "hello from C"})
    assert "proj.c: hello from C" in caplog.text
    assert extension.process_image(None, 1, None, None, None, {}) is None
    with pytest.raises(ExtensionError, match="2-D image"):
        extension.process_image(np.ones(5, np.uint16), 1, None, None, None, {})


def test_bad_outputs_are_errors_naming_the_output(tmp_path: Path) -> None:
    """A bad dtype or shape gets NULL or -1 and an error naming the channel, never a crash."""
    source = r"""
    int pv_process_image(const pv_image *image, const pv_ext *ext)
    {
        int64_t shape[2] = {3, -1};
        if (ext->array(ext, "bad_shape", PV_INT64, 2, shape) != 0) return PV_SEND;
        return PV_ERROR;
    }
    """
    extension = load_extension(write(tmp_path, "bad.c", source))
    with pytest.raises(ExtensionError, match=r"output 'bad_shape': negative shape \(3, -1\)"):
        extension.process_image(np.ones((2, 2), np.uint8), 1, None, None, None, {})
    source = r"""
    int pv_process_image(const pv_image *image, const pv_ext *ext)
    {
        int v = 1;
        return ext->scalar(ext, "odd", (pv_dtype)99, &v) == 0 ? PV_SEND : PV_ERROR;
    }
    """
    extension = load_extension(write(tmp_path, "odd.c", source))
    with pytest.raises(ExtensionError, match="output 'odd': unknown dtype 99"):
        extension.process_image(np.ones((2, 2), np.uint8), 1, None, None, None, {})


def test_configure_is_optional_and_its_refusal_is_a_value_error(tmp_path: Path) -> None:
    """pv_configure's PV_ERROR becomes ValueError with its message; without it, all is fine."""
    plain = load_extension(write(tmp_path, "proj.c", PROJECTIONS))
    assert not plain.has_configure
    plain.configure({"anything": 1})
    source = r"""
    int pv_configure(const pv_ext *ext)
    {
        double gain;
        if (ext->number(ext, "gain", &gain) != 1 || gain <= 0) {
            ext->error(ext, "gain must be a number > 0");
            return PV_ERROR;
        }
        return PV_SEND;
    }
    int pv_process_image(const pv_image *image, const pv_ext *ext) { return PV_SKIP; }
    """
    checked = load_extension(write(tmp_path, "checked.c", source))
    assert checked.has_configure
    checked.configure({"gain": 2})
    with pytest.raises(ValueError, match="gain must be a number > 0"):
        checked.configure({"gain": "high"})


def test_a_compile_error_quotes_the_compiler_with_the_user_s_lines(tmp_path: Path) -> None:
    """#line makes gcc name the user's file and line; nothing half-built stays in the cache."""
    path = write(tmp_path, "typo.c", "int pv_process_image(const pv_image *i, const pv_ext *e)\n{\n"
                 "    return nope;\n}\n")  # fmt: skip
    with pytest.raises(ExtensionError) as failure:
        load_extension(path)
    message = str(failure.value)
    assert message.startswith("cannot compile typo.c:")
    assert "typo.c:3:12: error:" in message
    assert "nope" in message


def test_no_entry_point_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtensionError, match=r"empty\.c defines no pv_process_image"):
        load_extension(write(tmp_path, "empty.c", "int unrelated(void) { return 0; }\n"))
    with pytest.raises(ExtensionError, match="extension not found"):
        load_extension(tmp_path / "missing.c")


def test_the_cache_is_keyed_by_the_source(tmp_path: Path, cache: Path) -> None:
    """Loading again reuses the build; an edit makes a new one."""
    path = write(tmp_path, "proj.c", PROJECTIONS)
    load_extension(path)
    builds = sorted(p.name for p in (cache / "extensions").iterdir())
    load_extension(path)
    assert sorted(p.name for p in (cache / "extensions").iterdir()) == builds
    path.write_text(PROJECTIONS + "\n/* edited */\n")
    load_extension(path)
    assert len(list((cache / "extensions").iterdir())) == len(builds) + 1
    assert all(not p.name.startswith(".") for p in (cache / "extensions").iterdir())


def test_a_shared_library_is_loaded_as_given(tmp_path: Path) -> None:
    """A .so built by the user's own compiler exposes the same ABI."""
    source = write(tmp_path, "lib.c", '#include "pipevisor_ext.h"\n' + PROJECTIONS)
    library = tmp_path / "libproj.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", f"-I{HEADER.parent}", str(source), "-o", str(library)],
        check=True,
        timeout=60,
    )
    extension = load_extension(library)
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    out = extension.process_image(image, 9, None, None, None, {})
    np.testing.assert_array_equal(out["x_profile"], image.sum(axis=0, dtype=np.int64))
    assert not extension.has_configure
    with pytest.raises(ExtensionError, match="cannot load"):
        load_extension(write(tmp_path, "junk.so", "not a library"))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Extension:
    """runners/c/projections_ext.c, compiled once for the module."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PIPEVISOR_CACHE_DIR", str(tmp_path_factory.mktemp("example-cache")))
        return load_extension(HEADER.parent / "projections_ext.c")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("shape", [(217, 131), (5, 3), (1, 1)])
def test_the_example_extension_matches_numpy_exactly(example: Extension, dtype, shape) -> None:
    """runners/c/projections_ext.c: profiles, min and max equal numpy's, with a threshold too."""
    extension = example
    info = np.iinfo(dtype)
    image = np.random.default_rng(17).integers(info.min, info.max, shape, dtype, endpoint=True)
    for threshold in (0, 50):
        out = extension.process_image(image, 1, None, None, None, {"threshold": threshold})
        kept = np.where(image < threshold, 0, image) if threshold else image
        np.testing.assert_array_equal(out["x_profile"], kept.sum(axis=0, dtype=np.int64))
        np.testing.assert_array_equal(out["y_profile"], kept.sum(axis=1, dtype=np.int64))
        assert (out["min_value"], out["max_value"]) == (image.min(), image.max())
        assert out["max_value"].dtype == dtype
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 65535, got -3"):
        extension.configure({"threshold": -3})


def test_compiler_warnings_reach_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A build that succeeds with warnings says so, with the compiler's words."""
    source = "int pv_process_image(const pv_image *i, const pv_ext *e)\n{\n    int unused;\n"
    source += "    return PV_SKIP;\n}\n"
    with caplog.at_level("WARNING", logger="pipevisor.extension"):
        load_extension(write(tmp_path, "noisy.c", source))
    assert "noisy.c compiled with warnings" in caplog.text
    assert "unused" in caplog.text


def test_the_runner_s_own_code_adds_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The example compiles silently: the shim's checks of the weak symbols warn about nothing."""
    with caplog.at_level("WARNING", logger="pipevisor.extension"):
        load_extension(HEADER.parent / "projections_ext.c")
    assert "compiled with warnings" not in caplog.text
