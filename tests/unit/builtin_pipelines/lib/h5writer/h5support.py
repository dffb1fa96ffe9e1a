"""Reading the writer's files back the way users do: plain h5py with hdf5plugin, and h5ls."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle for h5py: what users import to read the images)
import numpy as np

ROOT = Path(__file__).resolve().parents[5]


def read_all(path: Path, **options: Any) -> dict[str, Any]:
    """Every dataset of the file, by path, read in full (images decoded by the filter)."""
    found: dict[str, Any] = {}
    with h5py.File(path, "r", **options) as f:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                found["/" + name] = obj[()]

        f.visititems(visit)
    return found


def h5ls(path: Path, *args: str) -> str:
    """``h5ls -r`` of the file (Debian's hdf5-tools, installed by ``make hdf5tools``)."""
    exe = shutil.which("h5ls")
    assert exe, "h5ls is missing: run `make hdf5tools` (Debian's hdf5-tools)"
    done = subprocess.run([exe, "-r", *args, str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"h5ls failed: {done.stdout}{done.stderr}"
    return done.stdout


def h5clear(path: Path) -> None:
    """Clear the "open for writing" mark a killed writer leaves (``h5clear -s``)."""
    exe = shutil.which("h5clear")
    assert exe, "h5clear is missing: run `make hdf5tools` (Debian's hdf5-tools)"
    subprocess.run([exe, "-s", str(path)], check=True, capture_output=True, timeout=30)


def read_in_subprocess(path: Path, dataset: str) -> int | None:
    """Rows of ``dataset`` as a separate SWMR reader sees them now; None if unreadable."""
    script = (
        "import sys, h5py\n"
        "try:\n"
        f"    f = h5py.File({str(path)!r}, 'r', swmr=True)\n"
        f"    print(f[{dataset!r}].shape[0])\n"
        "except Exception as exc:\n"
        "    print('error', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    out = done.stdout.strip()
    return int(out) if out.isdigit() else None


def image(pulse_id: int, shape: tuple[int, ...] = (24, 32), dtype: str = "<u2") -> np.ndarray:
    """A frame that tells which pulse it belongs to."""
    base = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 251
    return (base + pulse_id).astype(dtype)
