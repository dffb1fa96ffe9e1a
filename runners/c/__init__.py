"""The C side, shipped as files: headers, the library's sources, its Makefile, the examples.

An installed pipevisor carries this folder whole (it is package data), so a user compiles against
it without a checkout; ``python -m runners.c`` prints where it is::

    make -C "$(python -m runners.c)" B="$PWD/pvbuild"    # libpipevisor.a/.so and the examples
    gcc mine.c $(python -m runners.c --cflags) pvbuild/libpipevisor.a \\
        $(pkg-config --cflags --libs libzmq jansson libmd) -lm

Nothing here is imported by the supervisor; the Python runner reads :data:`EXT_HEADER` to compile
C extensions.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["C_DIR", "EXT_HEADER", "HEADER"]

C_DIR = Path(__file__).resolve().parent
HEADER = C_DIR / "pipevisor.h"  # native programs: libpipevisor's API
EXT_HEADER = C_DIR / "pipevisor_ext.h"  # C extensions of the Python runner (self-contained)
