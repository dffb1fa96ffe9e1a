"""The native kernels (``kernels.c``, ``minpack.c``): compiled through cffi on first use, cached.

The compiled module lives in ``<cache>/beam_metrics-<key>/``, where the key hashes the C
sources, the cdef, the compiler flags and the interpreter's extension ABI, so an edit or another
Python never loads a stale build. The cache is the contract's ``native_cache_dir()``
(``$PIPEVISOR_CACHE_DIR``, passed on by the supervisor, else the user's cache), kept by the
contract's build cache (``buildcache``): a build happens in a private temporary folder that is
renamed into place, so processes compiling at once never see half a module. Without a working
compiler numpy and scipy take over, after one logged warning (with the compiler's output), with
the same numbers (integer sums are exact in any order; the fits are then curve_fit's own).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from supervisor.contract import native_cache_dir
from supervisor.contract.buildcache import BuildError, CffiModule

__all__ = ["DEFAULT", "Profiles", "cache_root", "exp_mode", "kernels", "load", "profiles"]

log = logging.getLogger("pipevisor.beam_metrics")

_SOURCES = ("kernels.c", "minpack.c")  # compiled as one translation unit
_INT_TYPES = {
    np.dtype(np.uint8): "uint8",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int8): "int8",
    np.dtype(np.int16): "int16",
    np.dtype(np.int32): "int32",
}
_PROFILE_DECL = (
    "int bm_profiles_{t}(const {t}_t *image, int64_t rows, int64_t cols, int64_t row_stride,"
    " int64_t *x_profile, int64_t *y_profile, int64_t *min_max);"
)
_CDEF = "\n".join(
    [
        *(_PROFILE_DECL.format(t=t) for t in _INT_TYPES.values()),
        "int bm_lm(int model, int numpy_exp, const double *x, const double *y, int64_t m,"
        " double *p, double ftol, double xtol, int64_t maxfev, int64_t *counts,"
        " double *errors);",
        "void bm_libm_exp(const double *in, double *out, int64_t n);",
        'extern "Python" void bm_numpy_exp(const double *in, double *out, int64_t n);',
        "void bm_center_of_mass(const double *x, double *p, int64_t m, double mean, double sd,"
        " double *out);",
    ]
)
# No -march=native: the cache may be shared by machines of different generations. No FMA
# contraction: the fits must round as numpy does.
_FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unused-parameter")


class Profiles(NamedTuple):
    """Column sums, row sums, minimum and maximum of an image."""

    x: np.ndarray
    y: np.ndarray
    min: Any
    max: Any


def cache_root() -> Path:
    """The folder native builds are cached in: the contract's :func:`native_cache_dir`."""
    return native_cache_dir()


def _kernels() -> CffiModule:
    """How the kernels are compiled and cached: one translation unit of ``_SOURCES``."""
    return CffiModule(
        name="beam_metrics",
        module="_pipevisor_beam_metrics",
        cdef=_CDEF,
        source="\n".join(Path(__file__).with_name(name).read_text() for name in _SOURCES),
        label="beam_metrics kernels",
        flags=_FLAGS,
        log=log,
    )


def _load_uncached(root: Path) -> ModuleType:
    module = _kernels().load(root)
    _attach_numpy_exp(module)
    return module


def _attach_numpy_exp(module: ModuleType) -> None:
    """Give the fits numpy's exp (extern "Python" bm_numpy_exp), and decide if they need it.

    curve_fit's model runs on numpy's exp. numpy calls the C library's exp, except in builds
    with its own SIMD version (AVX-512), which may differ in the last bit; the fits follow
    curve_fit to the bit only with the very same exponentials. So the kernels use the C
    library's exp where it gives numpy's results on a large sample, and numpy's otherwise.
    """
    ffi, lib = module.ffi, module.lib

    def _numpy_exp(source: Any, target: Any, n: int) -> None:
        size = n * 8
        np.exp(
            np.frombuffer(ffi.buffer(source, size), np.float64),
            out=np.frombuffer(ffi.buffer(target, size), np.float64),
        )

    ffi.def_extern(name="bm_numpy_exp")(_numpy_exp)  # cffi's decorator, called: it is untyped

    rng = np.random.default_rng(20240110)  # the exponents of Gaussian fits: all <= 0
    args = -np.concatenate(
        [rng.exponential(1.0, 40_000), rng.uniform(0, 40, 40_000), rng.uniform(0, 746, 40_000)]
    )
    ours = np.empty_like(args)
    lib.bm_libm_exp(ffi.from_buffer("double[]", args), ffi.from_buffer("double[]", ours), args.size)
    same = np.array_equal(ours.view(np.uint64), np.exp(args).view(np.uint64))
    if not same:
        log.info("beam_metrics: numpy's exp is not the C library's here; the fits call numpy's")
    vars(module)["numpy_exp"] = 0 if same else 1  # bm_lm's numpy_exp argument


def exp_mode(module: ModuleType) -> int:
    """bm_lm's ``numpy_exp`` argument for these kernels: 1 to call numpy's exp, 0 for libm's."""
    return getattr(module, "numpy_exp", 1)


_lock = threading.Lock()
_loaded: dict[Path | None, ModuleType | None] = {}  # a per-process memo, like functools.cache


def load(root: Path | None = None) -> ModuleType | None:
    """The compiled kernels (a cffi module with ``ffi`` and ``lib``), or None without a compiler.

    Args:
        root: the cache folder; :func:`cache_root` when None.

    Returns:
        The module, built on the first call for this folder and then remembered. None when it
        cannot be built or imported; that is logged once, as a warning.
    """
    with _lock:
        key = root
        try:
            key = (root or cache_root()).expanduser().absolute()
            if key not in _loaded:
                _loaded[key] = _load_uncached(key)
        except Exception as exc:  # no compiler, no headers, an unwritable cache, no home...
            if key not in _loaded:
                # A compile error is the compiler's output, whole; anything else its last line.
                said = str(exc).strip()
                log.warning(
                    "beam_metrics: native kernels unavailable, using numpy (%s: %s)",
                    type(exc).__name__,
                    said if isinstance(exc, BuildError) else (said.splitlines() or [""])[-1],
                )
            _loaded[key] = None
        return _loaded[key]


_default: list[ModuleType | None] = []  # load() of the default folder, once resolved


def kernels() -> ModuleType | None:
    """The kernels from the default cache folder (see :func:`load`); cheap after the first call."""
    if not _default:
        module = load()
        with _lock:
            if not _default:
                _default.append(module)
    return _default[0]


DEFAULT: Any = object()  # "the kernels from the default cache", for native= arguments


def profiles(image: np.ndarray, native: Any = DEFAULT) -> Profiles:
    """Profiles of a 2-D image, with CamServer's accumulator types.

    Integer images give int64 profiles (CamServer sums unsigned ones in int64 and signed ones
    with numpy's default, also int64); float images give numpy's own ``sum`` in their dtype,
    pairwise rounding included. Min and max are ``nanmin``/``nanmax``, scalars of the image dtype.

    Args:
        image: a 2-D array; integer images with contiguous rows (any row stride, as in an ROI
            view) go through the native kernel in one pass, without a copy.
        native: the kernels module; the default ones when left out, None for numpy only.

    Raises:
        ValueError: for an image with no pixels, as numpy's ``nanmin`` does.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if image.size == 0:
        raise ValueError("zero-size array to reduction operation minimum which has no identity")
    if native is DEFAULT:
        native = kernels()
    ctype = _INT_TYPES.get(image.dtype)
    itemsize = image.itemsize
    if (
        native is None
        or ctype is None
        or image.strides[1] != itemsize
        or image.strides[0] % itemsize != 0
    ):
        return _numpy_profiles(image)
    rows, cols = image.shape
    out = np.empty(cols + rows + 2, np.int64)  # x, y, min, max: one allocation
    ffi = native.ffi
    if image.flags.c_contiguous:
        pixels = ffi.from_buffer(f"{ctype}_t[]", image, require_writable=False)
    else:  # a row-strided view: from_buffer wants a contiguous buffer, the address will do
        pixels = ffi.cast(f"{ctype}_t *", image.__array_interface__["data"][0])
    buffer = ffi.from_buffer("int64_t[]", out)
    status = getattr(native.lib, f"bm_profiles_{ctype}")(
        pixels,
        rows,
        cols,
        image.strides[0] // itemsize,
        buffer,
        buffer + cols,
        buffer + cols + rows,
    )
    if status != 0:
        raise MemoryError(f"bm_profiles_{ctype} failed with status {status}")
    low, high = out[cols + rows :].tolist()
    scalar = image.dtype.type
    return Profiles(out[:cols], out[cols : cols + rows], scalar(low), scalar(high))


def _numpy_profiles(image: np.ndarray) -> Profiles:
    with np.errstate(all="ignore"):
        if image.dtype.kind == "u":
            x, y = image.sum(0, dtype=np.int64), image.sum(1, dtype=np.int64)
        else:
            x, y = image.sum(0), image.sum(1)
        # nanmin/nanmax are fmin/fmax reductions; called directly they skip the all-NaN warning.
        return Profiles(x, y, np.fmin.reduce(image, axis=None), np.fmax.reduce(image, axis=None))
