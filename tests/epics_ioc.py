"""The EPICS test bed: a simulated camera IOC (caproto), a CA repeater, loopback-only env.

``python -m tests.epics_ioc --prefix CAM --width 64 --height 48 --rate 100`` serves a
SwissFEL-style camera: ``CAM:FPICTURE`` (DBR_SHORT waveform holding uint16 pixels),
``CAM:WIDTH`` and ``CAM:HEIGHT`` (writable: the next frames take the new size), ``CAM:INIT``
(``"INIT"``). Frame ``n`` is :func:`expected_frame` ``(n, width, height)``: a precomputed
pattern with ``n`` in its first two pixels. It prints ``epics_ioc ready`` once serving.
``python -m tests.epics_ioc --repeater`` runs caproto's CA repeater bound to 127.0.0.1.

Both run with the loopback-only environment of :func:`server_env` (see
/work/shared/reference/epics.md); clients get :func:`client_env`. :class:`CameraIoc` and
:class:`Repeater` start them on their own ports and stop them by PID. Whatever holds a CA client
longer than a few seconds runs in ``tests.netns.private_network_namespace``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "RING",
    "CameraIoc",
    "Repeater",
    "client_env",
    "expected_frame",
    "frame_counter",
    "repeater_listening",
    "server_env",
]

ROOT = Path(__file__).resolve().parent.parent
READY = "epics_ioc ready"
RING = 4  # distinct patterns: frame n is pattern n % RING; more would only cost start-up
_EPICS_PREFIX = "EPICS_"


def _pattern(index: int, width: int, height: int) -> np.ndarray:
    # A hash-like spread over all 16 bits: pixels above 32767 prove the uint16 reinterpretation.
    pixels = np.arange(width * height, dtype=np.uint32) * np.uint32(40503)
    pixels += np.uint32(index * 9973)
    return (pixels & 0xFFFF).astype(np.uint16).reshape(height, width)


def expected_frame(counter: int, width: int, height: int) -> np.ndarray:
    """The uint16 image (height x width) the IOC publishes as frame ``counter``."""
    frame = _pattern(counter % RING, width, height)
    _stamp(frame.reshape(-1), counter)
    return frame


def frame_counter(image: np.ndarray) -> int:
    """The frame number the IOC wrote into the first two pixels."""
    flat = image.reshape(-1)[:2].view(np.uint16)
    return int(flat[0]) | int(flat[1]) << 16


def _stamp(flat: np.ndarray, counter: int) -> None:
    flat[0] = counter & 0xFFFF
    flat[1] = (counter >> 16) & 0xFFFF


def repeater_listening(port: int) -> bool:
    """True when something holds UDP ``port``: libca's own test before it spawns a repeater."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return True
    return False


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_EPICS_PREFIX)}


def server_env(port: int, repeater_port: int) -> dict[str, str]:
    """The environment of a loopback-only caproto IOC (or repeater) on ``port``."""
    return {
        **_clean_environ(),
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        # By default beacons go to 255.255.255.255; keep them on loopback, to our repeater.
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_BEACON_PORT": str(repeater_port),
        "EPICS_CA_REPEATER_PORT": str(repeater_port),
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        # caproto holds a monitor update up to 10 ms to batch it with the next: at 100 Hz two
        # frames would then arrive as one burst, and the client would keep only the second.
        "CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC": "0.001",
        "PYTHONUNBUFFERED": "1",
    }


def client_env(
    ioc_ports: list[int], repeater_port: int, max_array_bytes: int = 1 << 24
) -> dict[str, str]:
    """The EPICS_CA_* variables of a client that sees only these IOCs, on loopback."""
    return {
        "EPICS_CA_ADDR_LIST": " ".join(f"127.0.0.1:{port}" for port in ioc_ports),
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_REPEATER_PORT": str(repeater_port),
        "EPICS_CA_MAX_ARRAY_BYTES": str(max_array_bytes),
    }


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Repeater:
    """caproto's CA repeater on 127.0.0.1:``port``, so that libca never spawns one."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Repeater:
        env = server_env(0, self.port)
        args = [sys.executable, "-m", "tests.epics_ioc", "--repeater"]
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not repeater_listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"CA repeater not listening on UDP {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop it by its PID."""
        _stop(self.proc)


@dataclass
class CameraIoc:
    """One simulated camera IOC process on its own port; restartable on the same port."""

    prefix: str
    port: int
    repeater_port: int
    log_dir: Path
    width: int = 64
    height: int = 48
    rate: float = 100.0
    max_pixels: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0, init=False)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"ioc-{self.prefix}-{self.port}-{self.starts}.log"

    def start(self, timeout: float = 20.0) -> CameraIoc:
        """Start it and wait for its readiness line; raises with its output on failure."""
        self.starts += 1
        args = [sys.executable, "-m", "tests.epics_ioc", "--prefix", self.prefix,
                "--width", str(self.width), "--height", str(self.height),
                "--rate", str(self.rate), "--max-pixels", str(self.max_pixels or 0)]  # fmt: skip
        env = server_env(self.port, self.repeater_port)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while READY not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"IOC did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop it by its PID (the port stays reserved for a restart)."""
        _stop(self.proc)


# -- the IOC process -------------------------------------------------------------------------


def _camera_group(max_pixels: int, width: int, height: int, rate: float) -> type:
    from caproto import ChannelType
    from caproto.server import PVGroup, pvproperty

    class SimulatedCamera(PVGroup):
        """A SwissFEL-style camera: FPICTURE, WIDTH, HEIGHT, INIT."""

        fpicture = pvproperty(
            name="FPICTURE",
            value=np.zeros(max_pixels, np.int16),
            dtype=ChannelType.INT,  # DBR_SHORT: CA has no unsigned 16-bit type
            max_length=max_pixels,
            read_only=True,
        )
        width_pv = pvproperty(name="WIDTH", value=width, dtype=ChannelType.LONG)
        height_pv = pvproperty(name="HEIGHT", value=height, dtype=ChannelType.LONG)
        init = pvproperty(name="INIT", value="INIT", dtype=ChannelType.STRING, read_only=True)

        @width_pv.putter
        async def width_pv(self, instance, value):
            return self._checked_size(value, self.height_pv.value)[0]

        @height_pv.putter
        async def height_pv(self, instance, value):
            return self._checked_size(self.width_pv.value, value)[1]

        def _checked_size(self, new_width: int, new_height: int) -> tuple[int, int]:
            if not (0 < new_width * new_height <= max_pixels):
                raise ValueError(f"{new_width}x{new_height} exceeds {max_pixels} pixels")
            return new_width, new_height

        @fpicture.startup
        async def fpicture(self, instance, async_lib):
            rings: dict[tuple[int, int], list[np.ndarray]] = {}
            print(f"{READY}: {self.prefix} on 127.0.0.1:{os.environ['EPICS_CA_SERVER_PORT']}")
            period, counter, due = 1.0 / rate, 0, time.monotonic()
            while True:
                size = (int(self.width_pv.value), int(self.height_pv.value))
                if size not in rings:
                    rings[size] = [_pattern(k, *size).reshape(-1) for k in range(RING)]
                frame = rings[size][counter % RING]
                # caproto converts the value when it publishes, so the ring frame may be
                # stamped in place for the next round.
                _stamp(frame, counter)
                await instance.write(frame.view(np.int16))
                counter += 1
                due = max(due + period, time.monotonic() - period)  # late: no catching up
                await asyncio.sleep(max(0.0, due - time.monotonic()))

    return SimulatedCamera


def main() -> None:
    """Serve one camera, or run the repeater (``--repeater``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeater", action="store_true", help="run a CA repeater instead")
    parser.add_argument("--prefix", default="SIM-CAM")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--rate", type=float, default=100.0, help="frames per second")
    parser.add_argument("--max-pixels", type=int, default=0, help="default: width x height")
    args = parser.parse_args()
    if args.repeater:
        from caproto.sync.repeater import run as run_repeater

        run_repeater(host="127.0.0.1")
        return
    from caproto.server import run

    max_pixels = args.max_pixels or args.width * args.height
    group = _camera_group(max_pixels, args.width, args.height, args.rate)(prefix=args.prefix + ":")
    run(group.pvdb, interfaces=["127.0.0.1"])


if __name__ == "__main__":
    main()
