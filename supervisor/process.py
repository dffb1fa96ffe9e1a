"""One run of a program: spawn it in its own process group, notice its exit at once, kill its tree.

Exits are noticed through a pidfd registered with the event loop: no polling interval, no thread
per child. Spawning uses ``process_group=0`` and no ``preexec_fn`` so CPython can use vfork: a
restart costs about what a bare fork+exec costs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["ExitStatus", "ProgramProcess", "describe_exit"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a run ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: int | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode < 0:
            return cls(code=None, signal=-returncode)
        return cls(code=returncode, signal=None)

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    @property
    def success(self) -> bool:
        return self.code == 0


def describe_exit(status: ExitStatus) -> str:
    """A sentence for people: 'exited with code 1', 'killed by SIGSEGV'."""
    if status.signal is not None:
        return f"killed by {status.signal_name}"
    return f"exited with code {status.code}"


class ProgramProcess:
    """A running program; ``on_exit`` is called from the loop once, when it has exited."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        on_exit: Callable[[ProgramProcess, ExitStatus], None],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self._popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                close_fds=True,
                process_group=0,
            )
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            # Only the child keeps the write ends: EOF on the read ends means all writers are gone.
            os.close(out_w)
            os.close(err_w)
        self.pid = self._popen.pid
        self.pgid = self.pid
        self.started = time.time()
        self.started_monotonic = time.monotonic()
        self.stdout_fd = out_r
        self.stderr_fd = err_r
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        self.exit_status: ExitStatus | None = None
        self._on_exit = on_exit
        self._exited = asyncio.Event()
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        returncode = self._popen.wait()
        self.exit_status = ExitStatus.from_returncode(returncode)
        # The leader is gone; whatever it left in its group goes too (no orphans, no port holders).
        self.kill_group(signal.SIGKILL)
        self._exited.set()
        self._on_exit(self, self.exit_status)

    @property
    def alive(self) -> bool:
        return self.exit_status is None

    @property
    def runtime(self) -> float:
        return time.monotonic() - self.started_monotonic

    def kill_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole process group; False when no process of it is left."""
        try:
            os.killpg(self.pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    async def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Wait for the exit; None on timeout."""
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
        except TimeoutError:
            return None
        return self.exit_status

    async def terminate(self, grace: float) -> tuple[ExitStatus, bool]:
        """SIGTERM the group, SIGKILL it after ``grace`` s; returns (status, killed)."""
        if self.alive:
            self.kill_group(signal.SIGTERM)
        status = await self.wait(grace)
        if status is not None:
            return status, False
        log.warning("instance_kill_after_grace", pid=self.pid, grace=grace)
        self.kill_group(signal.SIGKILL)
        status = await self.wait()
        assert status is not None
        return status, True
