"""The Channel Access side of the EPICS camera source: monitored PVs, latest frame wins.

pyepics runs monitor and connection callbacks on libca's own threads (preemptive callbacks).
They only store values and return: a slow callback throttles delivery for every PV of the IOC.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import epics
import numpy as np

__all__ = ["CameraPVs", "Frame", "PVNames", "repeater_listening", "wait_for_repeater"]

log = logging.getLogger("builtin_pipelines.camera_epics")


class PVNames(NamedTuple):
    """The PVs of one camera; ``pulse_id`` is optional."""

    image: str
    width: str
    height: str
    pulse_id: str | None


class Frame(NamedTuple):
    """One image event, with the size and pulse id current when it arrived."""

    value: np.ndarray
    width: int | None
    height: int | None
    pulse_id: int | None
    seconds: int
    nanoseconds: int


class CameraPVs:
    """The camera's PVs, monitored; the generator :meth:`take` s the newest frame."""

    def __init__(self, names: PVNames, timeout: float) -> None:
        self.names = names
        self.width: int | None = None
        self.height: int | None = None
        self.pulse_id: int | None = None
        self.drops = 0  # frames replaced before the generator took them
        self._latest: Frame | None = None
        self._ready = threading.Condition()
        self._connected: dict[str, bool] = {}
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        # The size PVs first: on (re)connection their values then arrive before the image's.
        monitors = [
            (names.width, self._on_width),
            (names.height, self._on_height),
            (names.pulse_id, self._on_pulse_id),
            (names.image, self._on_image),
        ]
        # auto_monitor=True: pyepics would not monitor a waveform this large by default.
        self._pvs = [
            epics.PV(
                name,
                callback=callback,
                auto_monitor=True,
                form="time",
                connection_callback=self._on_connection,
                connection_timeout=timeout,
            )
            for name, callback in monitors
            if name is not None
        ]

    def _on_image(
        self, value: Any = None, posixseconds: Any = 0, nanoseconds: Any = 0, **_: Any
    ) -> None:
        if not isinstance(value, np.ndarray):
            return
        # The size is taken now: events of one IOC arrive in order, so a frame published
        # after a new WIDTH comes with that width.
        frame = Frame(
            value, self.width, self.height, self.pulse_id, int(posixseconds), int(nanoseconds)
        )
        with self._ready:
            if self._latest is not None:
                self.drops += 1
            self._latest = frame
            self._ready.notify()

    def _on_width(self, value: Any = None, **_: Any) -> None:
        self.width = None if value is None else int(value)

    def _on_height(self, value: Any = None, **_: Any) -> None:
        self.height = None if value is None else int(value)

    def _on_pulse_id(self, value: Any = None, **_: Any) -> None:
        self.pulse_id = None if value is None else int(value)

    def _on_connection(self, pvname: str = "", conn: bool = False, **_: Any) -> None:
        again = self._connected.get(pvname) is False
        self._connected[pvname] = conn
        if conn:
            log.info("camera PV %s connected%s", pvname, " again" if again else "")
        else:
            log.warning("camera PV %s disconnected; pyepics reconnects when it is back", pvname)
            self._deadline = time.monotonic() + self._timeout
            # An IOC may come back with another size: wait for the fresh values.
            if pvname == self.names.width:
                self.width = None
            elif pvname == self.names.height:
                self.height = None
            elif pvname == self.names.pulse_id:
                self.pulse_id = None

    def take(self, timeout: float) -> Frame | None:
        """The newest frame, waiting at most ``timeout`` seconds for one; None if none came."""
        with self._ready:
            if self._latest is None:
                self._ready.wait(timeout)
            frame, self._latest = self._latest, None
        return frame

    def check_connection(self) -> None:
        """Log the PVs still not connected ``timeout`` s after creation or a disconnect."""
        if time.monotonic() < self._deadline:
            return
        self._deadline = time.monotonic() + max(self._timeout, 60.0)  # then once a minute
        missing = [pv.pvname for pv in self._pvs if not pv.connected]
        if missing:
            log.warning(
                "camera PVs not connected after %g s: %s", self._timeout, ", ".join(missing)
            )

    def close(self) -> None:
        """Stop the monitors (pyepics keeps the CA channels cached for a later PV)."""
        for pv in self._pvs:
            pv.disconnect()


def repeater_listening(port: int) -> bool:
    """True when a UDP socket holds ``port``: then libca's bind test fails and it spawns none.

    Read from /proc/net/udp{,6}, so the probe never holds the port itself (a repeater starting
    at that instant would take it for another repeater and exit); elsewhere, libca's own test.
    """
    try:
        tables = [Path("/proc/net/udp").read_text(), Path("/proc/net/udp6").read_text()]
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                return True
        return False
    suffix = f":{port:04X}"
    return any(
        line.split()[1].endswith(suffix)
        for table in tables
        for line in table.splitlines()[1:]
        if line.strip()
    )


def wait_for_repeater(tick: float, recheck: float = 1.0) -> Iterator[None]:
    """Idle ticks until a CA repeater listens, unless libca already runs in this process.

    libca looks for a repeater once, when it creates its context, and spawns ``caRepeater``
    when the port is free; so no CA call may happen before one listens.
    """
    port = int(os.environ.get("EPICS_CA_REPEATER_PORT") or 5065)
    next_log = 0.0
    while epics.ca.libca is None and not repeater_listening(port):
        if time.monotonic() >= next_log:
            next_log = time.monotonic() + 60.0
            log.warning(
                "no Channel Access repeater listens on UDP port %d (EPICS_CA_REPEATER_PORT): "
                "waiting for one; this source never starts one",
                port,
            )
        until = time.monotonic() + recheck
        while time.monotonic() < until:
            time.sleep(tick)
            yield None
