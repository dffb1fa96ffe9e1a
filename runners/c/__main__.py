"""``python -m runners.c [--cflags]``: where the installed C headers and library sources are."""

from __future__ import annotations

import argparse

from . import C_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runners.c",
        description="Print the folder of pipevisor's C side: pipevisor.h, pipevisor_ext.h, the"
        " library's sources (src/) and Makefile, the examples. Build the library out of it with"
        ' make -C "$(python -m runners.c)" B=/your/build/folder.',
    )
    parser.add_argument(
        "--cflags", action="store_true", help="print the compiler flag for the headers: -I<folder>"
    )
    args = parser.parse_args(argv)
    print(f"-I{C_DIR}" if args.cflags else C_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
