"""C extensions: a registry entry ``NAME.c`` compiled through cffi on first use, or ``NAME.so``.

The ABI is ``runners/c/pipevisor_ext.h``: ``pv_process_image(image, ext)`` gets the image
without a copy (pointer, dtype, shape, row stride) and a ``pv_ext`` of callbacks that read the
parameters and hand out named scalar and array outputs (arrays are numpy buffers the C code
fills in place). ``pv_configure(ext)``, optional, checks a configuration.

A ``.c`` file is compiled in API mode, with the header included before it and ``#line`` set so
compiler messages name the user's file and lines. The module is cached in
``<cache>/extensions/<stem>-<key>/`` by the contract's build cache (``buildcache``), where the key
hashes the compiled text, the header, the flags, the interpreter's extension suffix and cffi's
version: an edit recompiles, a restart does not. The cache folder is the contract's
``native_cache_dir()`` (``$PIPEVISOR_CACHE_DIR``, passed on by the supervisor, else the user's
cache). A build happens in a private temporary folder renamed into place, so instances compiling
the same source at once never load half a module. A compile error raises
:class:`ExtensionError` with the compiler's output; warnings are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runners.c import EXT_HEADER
from supervisor.contract import native_cache_dir
from supervisor.contract.buildcache import BuildError, CffiModule

__all__ = ["HEADER", "Extension", "ExtensionError", "load_extension"]

log = logging.getLogger("pipevisor.extension")

HEADER = EXT_HEADER  # runners/c/pipevisor_ext.h, package data of an installed pipevisor too
ABI = 1
_FLAGS = ("-O3", "-std=gnu11", "-Wall")
_MAX_NDIM = 8
_SEND, _SKIP = 0, 1

# numpy dtypes by pv_dtype, and back.
_DTYPES = (
    np.dtype(np.bool_),
    np.dtype(np.int8),
    np.dtype(np.uint8),
    np.dtype(np.int16),
    np.dtype(np.uint16),
    np.dtype(np.int32),
    np.dtype(np.uint32),
    np.dtype(np.int64),
    np.dtype(np.uint64),
    np.dtype(np.float32),
    np.dtype(np.float64),
)
_CODES = {dtype: code for code, dtype in enumerate(_DTYPES)}

# What cffi needs of the header (cffi's parser takes no preprocessor directives, so the ABI is
# restated here; in API mode the compiler checks it against the header itself).
_CDEF_TYPES = """
typedef enum pv_dtype {
    PV_BOOL = 0, PV_INT8 = 1, PV_UINT8 = 2, PV_INT16 = 3, PV_UINT16 = 4, PV_INT32 = 5,
    PV_UINT32 = 6, PV_INT64 = 7, PV_UINT64 = 8, PV_FLOAT32 = 9, PV_FLOAT64 = 10
} pv_dtype;
typedef struct pv_image {
    const void *data;
    pv_dtype dtype;
    int64_t height;
    int64_t width;
    int64_t row_stride;
} pv_image;
typedef struct pv_ext pv_ext;
struct pv_ext {
    int abi;
    uint64_t pulse_id;
    int64_t timestamp_sec;
    int64_t timestamp_ns;
    int (*number)(const pv_ext *ext, const char *key, double *value);
    const char *(*string)(const pv_ext *ext, const char *key);
    int (*scalar)(const pv_ext *ext, const char *name, pv_dtype dtype, const void *value);
    void *(*array)(const pv_ext *ext, const char *name, pv_dtype dtype, int ndim,
                   const int64_t *shape);
    void (*log)(const pv_ext *ext, int level, const char *message);
    void (*error)(const pv_ext *ext, const char *message);
};
"""
# API mode (a .c): the shim below tells whether the optional functions exist.
_CDEF_API = (
    _CDEF_TYPES
    + """
int pv__has_process_image(void);
int pv__has_configure(void);
int pv__process_image(const pv_image *image, const pv_ext *ext);
int pv__configure(const pv_ext *ext);
"""
)
# ABI mode (a .so): the functions themselves, looked up with dlsym.
_CDEF_ABI = (
    _CDEF_TYPES
    + """
int pv_process_image(const pv_image *image, const pv_ext *ext);
int pv_configure(const pv_ext *ext);
"""
)
_PROLOGUE = """#include "pipevisor_ext.h"
#pragma weak pv_process_image
#pragma weak pv_configure
"""
# The weak symbols are read through volatile pointers: compared directly, a defined one makes
# gcc warn (-Waddress) that the test is always true, on every extension.
_SHIM = """
int pv__has_process_image(void)
{ int (*volatile f)(const pv_image *, const pv_ext *) = pv_process_image; return f != 0; }
int pv__has_configure(void)
{ int (*volatile f)(const pv_ext *) = pv_configure; return f != 0; }
int pv__process_image(const pv_image *image, const pv_ext *ext)
{ return pv_process_image(image, ext); }
int pv__configure(const pv_ext *ext) { return pv_configure(ext); }
"""


class ExtensionError(Exception):
    """A C extension cannot be built or loaded, or one of its calls failed; says why."""


def _build(path: Path) -> CffiModule:
    """How a ``.c`` extension is compiled and cached (see the module's docstring)."""
    source = path.read_text(errors="replace")
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    # #line: the compiler's messages name the user's file and its lines.
    text = f'{_PROLOGUE}#line 1 "{path.name}"\n{source}\n#line 1 "<pipevisor shim>"\n{_SHIM}'
    return CffiModule(
        name=stem,
        module=f"_pipevisor_ext_{stem}",
        cdef=_CDEF_API,
        source=text,
        label=path.name,
        flags=_FLAGS,
        include_dirs=(HEADER.parent,),
        depends=(HEADER,),
        log=log,
    )


class Extension:
    """One loaded extension: ``process_image`` and ``configure`` with the runner's signatures."""

    def __init__(
        self,
        name: str,
        ffi: Any,
        process: Callable[[Any, Any], int],
        configure: Callable[[Any], int] | None,
    ) -> None:
        self.name = name
        self._ffi = ffi
        self._process = process
        self._configure = configure
        self._parameters: Mapping[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._error: str | None = None
        self._strings: list[Any] = []  # char buffers handed out by ext->string, until return
        self._image = ffi.new("pv_image *")
        ext = self._ext = ffi.new("pv_ext *")
        ext.abi = ABI
        # Kept referenced: a cffi callback lives as long as its Python object.
        self._callbacks = [
            ffi.callback("int(*)(const pv_ext *, const char *, double *)", self._number, error=-1),
            ffi.callback("const char *(*)(const pv_ext *, const char *)", self._string),
            ffi.callback(
                "int(*)(const pv_ext *, const char *, pv_dtype, const void *)",
                self._scalar,
                error=-1,
            ),
            ffi.callback(
                "void *(*)(const pv_ext *, const char *, pv_dtype, int, const int64_t *)",
                self._array,
            ),
            ffi.callback("void(*)(const pv_ext *, int, const char *)", self._log),
            ffi.callback("void(*)(const pv_ext *, const char *)", self._set_error),
        ]
        ext.number, ext.string, ext.scalar, ext.array, ext.log, ext.error = self._callbacks

    @property
    def has_configure(self) -> bool:
        """Whether the extension defines ``pv_configure``."""
        return self._configure is not None

    # -- the runner's side ------------------------------------------------------------------

    def configure(self, parameters: dict[str, Any]) -> None:
        """Call ``pv_configure``; raises ValueError with its message when it refuses."""
        if self._configure is None:
            return
        self._begin(parameters, 0, (0, 0))
        try:
            code = self._configure(self._ext)
        finally:
            self._end()
        if code != _SEND:
            raise ValueError(self._error or f"pv_configure refused it (returned {code})")

    def process_image(
        self,
        image: np.ndarray | None,
        pulse_id: int,
        timestamp: tuple[int, int] | None,
        x_axis: Any,
        y_axis: Any,
        parameters: dict[str, Any],
        bsdata: Any = None,
    ) -> dict[str, Any] | None:
        """Call ``pv_process_image`` on the image in place; its outputs, or None to skip."""
        if image is None:
            return None
        code = _CODES.get(image.dtype)
        if image.ndim != 2 or code is None:
            raise ExtensionError(
                f"{self.name} takes a 2-D image of a plain numeric type,"
                f" got {image.dtype} of shape {image.shape}"
            )
        if image.strides[1] != image.itemsize or image.strides[0] < 0:
            image = np.ascontiguousarray(image)  # a mirrored or strided view: the C code wants rows
        c_image = self._image
        # The address of pixel (0, 0): a ROI view is not contiguous, so no from_buffer. The
        # array lives in ``image`` until the call returns.
        c_image.data = self._ffi.cast("const void *", image.__array_interface__["data"][0])
        c_image.dtype = code
        c_image.height, c_image.width = image.shape
        c_image.row_stride = image.strides[0]
        self._begin(parameters, pulse_id, timestamp or (0, 0))
        try:
            result = self._process(c_image, self._ext)
            outputs = self._outputs
        finally:
            self._end()
            c_image.data = self._ffi.NULL
        if result == _SEND:
            return outputs
        if result == _SKIP:
            return None
        raise ExtensionError(self._error or f"pv_process_image returned {result}")

    def _begin(self, parameters: Mapping[str, Any], pulse_id: int, timestamp: Any) -> None:
        self._parameters = parameters
        self._outputs = {}
        self._error = None
        ext = self._ext
        ext.pulse_id = pulse_id
        ext.timestamp_sec, ext.timestamp_ns = timestamp

    def _end(self) -> None:
        self._strings.clear()
        self._parameters = {}
        self._outputs = {}

    # -- the C side's callbacks ---------------------------------------------------------------

    def _text(self, pointer: Any) -> str:
        text: str = self._ffi.string(pointer).decode(errors="replace")
        return text

    def _number(self, ext: Any, key: Any, value: Any) -> int:
        found = self._parameters.get(self._text(key))
        if found is None:
            return 0
        if isinstance(found, bool | int | float | np.number):
            value[0] = float(found)
            return 1
        return -1

    def _string(self, ext: Any, key: Any) -> Any:
        found = self._parameters.get(self._text(key))
        if not isinstance(found, str):
            return self._ffi.NULL
        buffer = self._ffi.new("char[]", found.encode())
        self._strings.append(buffer)
        return buffer

    def _name(self, name: Any, dtype: int) -> tuple[str, np.dtype] | None:
        text = self._text(name) if name != self._ffi.NULL else ""
        if not text:
            self._error = "an output needs a name"
            return None
        if not 0 <= dtype < len(_DTYPES):
            self._error = f"output {text!r}: unknown dtype {dtype}"
            return None
        return text, _DTYPES[dtype]

    def _scalar(self, ext: Any, name: Any, dtype: int, value: Any) -> int:
        named = self._name(name, dtype)
        if named is None or value == self._ffi.NULL:
            if named is not None:
                self._error = f"output {named[0]!r}: no value"
            return -1
        text, numpy_dtype = named
        raw = self._ffi.buffer(value, numpy_dtype.itemsize)
        self._outputs[text] = np.frombuffer(raw, numpy_dtype).copy()[0]
        return 0

    def _array(self, ext: Any, name: Any, dtype: int, ndim: int, shape: Any) -> Any:
        named = self._name(name, dtype)
        if named is None:
            return self._ffi.NULL
        text, numpy_dtype = named
        if not 1 <= ndim <= _MAX_NDIM or shape == self._ffi.NULL:
            self._error = f"output {text!r}: {ndim} dimensions (1 to {_MAX_NDIM})"
            return self._ffi.NULL
        dims = tuple(shape[i] for i in range(ndim))
        if min(dims) < 0:
            self._error = f"output {text!r}: negative shape {dims}"
            return self._ffi.NULL
        array = np.zeros(dims, numpy_dtype)
        self._outputs[text] = array
        if array.size == 0:  # no memory to point at; any non-NULL pointer will do
            return self._ffi.cast("void *", 1)
        return self._ffi.cast("void *", self._ffi.from_buffer(array))

    def _log(self, ext: Any, level: int, message: Any) -> None:
        log.log(
            level if 0 < level <= 50 else logging.INFO, "%s: %s", self.name, self._text(message)
        )

    def _set_error(self, ext: Any, message: Any) -> None:
        self._error = self._text(message) if message != self._ffi.NULL else None


def load_extension(path: str | Path) -> Extension:
    """Compile (or take from the cache) a ``.c``, or load a ``.so``, as an :class:`Extension`.

    Raises:
        ExtensionError: the file is missing, does not compile (the compiler's output is in the
            message), cannot be loaded, or defines no ``pv_process_image``.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise ExtensionError(f"extension not found: {str(path)!r}")
    import cffi

    if file.suffix == ".c":
        build = _build(file)
        root = native_cache_dir() / "extensions"
        if build.is_built(root):
            log.info("%s: compiled module from the cache (%s)", file.name, build.folder(root))
        else:
            log.info("%s: compiling (cached in %s)", file.name, build.folder(root))
        try:
            module = build.load(root)
        except BuildError as exc:
            raise ExtensionError(str(exc)) from None
        lib = module.lib
        if not lib.pv__has_process_image():
            raise ExtensionError(f"{file.name} defines no pv_process_image (see pipevisor_ext.h)")
        configure = lib.pv__configure if lib.pv__has_configure() else None
        return Extension(file.name, module.ffi, lib.pv__process_image, configure)
    ffi = cffi.FFI()
    ffi.cdef(_CDEF_ABI)
    try:
        library: Any = ffi.dlopen(str(file))  # its attributes are the cdef's functions
    except OSError as exc:
        raise ExtensionError(f"cannot load {file.name}: {exc}") from None
    try:
        process = library.pv_process_image
    except AttributeError:
        raise ExtensionError(
            f"{file.name} exports no pv_process_image (see pipevisor_ext.h)"
        ) from None
    try:
        configure = library.pv_configure
    except AttributeError:
        configure = None
    return Extension(file.name, ffi, process, configure)
