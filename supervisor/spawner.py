"""Starting programs: their environment, their process group, the orphan guard, escapees.

The guard is watched: its exit is noticed at once (a pidfd on the event loop, as for programs),
and a new guard starts and gets every live process group, so a killed guard leaves no window in
which a SIGKILL of the supervisor would leave programs behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import structlog

from .contract import ContractEnv, EnvVar
from .guard import SESSION_VAR, SPAWN_VAR, kill_run
from .instance import Instance
from .loghub import LogHub
from .nodeapi.errors import ConflictError
from .process import ProgramProcess
from .settings import Settings

__all__ = ["Spawner"]

log = structlog.get_logger(__name__)

_ESCAPEE_SCAN_DELAY = 0.2  # seconds after a run ended
_GUARD_RESTART_DELAY = 1.0  # seconds between restarts of a guard that dies at once


_SHARED = frozenset({EnvVar.CACHE_DIR, EnvVar.DATA_DIR})
"""The supervisor's own variables its programs get too."""


class Spawner:
    """Spawns the programs of one node and makes sure none outlives it.

    Every program gets its own process group, registered with a guard process that kills the
    groups if the supervisor dies; processes that leave their group are found by the session
    id in their environment.
    """

    def __init__(self, settings: Settings, loghub: LogHub, session: str) -> None:
        self.settings = settings
        self.loghub = loghub
        self.session = session
        self._guard: subprocess.Popen[bytes] | None = None
        self._spawned = 0  # spawns so far: each run's PIPEVISOR_SPAWN, unique in the session
        self._spawns: dict[int, int] = {}  # process group -> its spawn number
        self._guard_pidfd: int | None = None  # watched on the loop while the guard runs
        self._guard_started = 0.0
        self._guard_retry: asyncio.TimerHandle | None = None
        self._closed = False
        self.guard_restarts = 0

    def start(self) -> None:
        """Start the guard (before any program), and watch it."""
        self._start_guard()

    def _start_guard(self) -> None:
        self._guard = subprocess.Popen(
            [sys.executable, "-m", "supervisor.guard", self.session],
            stdin=subprocess.PIPE,
            close_fds=True,
            # A session of its own: a terminal's hangup or Ctrl-C never reaches it.
            start_new_session=True,
        )
        self._guard_started = time.monotonic()
        self._guard_pidfd = os.pidfd_open(self._guard.pid)
        asyncio.get_running_loop().add_reader(self._guard_pidfd, self._guard_exited)
        # Every live group, in one write (none at the first start).
        self._guard_write("".join(f"+{pgid}\n" for pgid in self._spawns))

    def _unwatch_guard(self) -> None:
        if self._guard_pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._guard_pidfd)
            os.close(self._guard_pidfd)
            self._guard_pidfd = None

    def _guard_exited(self) -> None:
        """The guard died while we run (killed by someone): start a new one at once."""
        self._unwatch_guard()
        assert self._guard is not None
        returncode = self._guard.wait()
        self._close_guard_pipe()
        self.guard_restarts += 1
        log.error(
            "guard_restarted",
            pid=self._guard.pid,
            returncode=returncode,
            restarts=self.guard_restarts,
            groups=len(self._spawns),
        )
        # A guard that dies as it starts is started again once a second, not in a busy loop.
        delay = _GUARD_RESTART_DELAY - (time.monotonic() - self._guard_started)
        if delay > 0:
            self._guard_retry = asyncio.get_running_loop().call_later(delay, self._restart_guard)
        else:
            self._restart_guard()

    def _restart_guard(self) -> None:
        self._guard_retry = None
        if self._closed:
            return
        try:
            self._start_guard()
        except OSError as exc:
            log.error("guard_not_started", reason=str(exc))
            self._guard_started = time.monotonic()
            self._guard_retry = asyncio.get_running_loop().call_later(
                _GUARD_RESTART_DELAY, self._restart_guard
            )

    def guard_info(self) -> dict[str, Any]:
        """The guard for ``node_info``: its pid (None while none runs) and its restarts."""
        watched = self._guard is not None and self._guard_pidfd is not None
        return {
            "pid": self._guard.pid if watched and self._guard is not None else None,
            "restarts": self.guard_restarts,
        }

    async def close(self) -> None:
        """Let the guard finish (after every program has stopped)."""
        self._closed = True
        if self._guard_retry is not None:
            self._guard_retry.cancel()
            self._guard_retry = None
        self._unwatch_guard()
        if self._guard is not None:
            self._close_guard_pipe()  # end of file: the guard kills what is left, and exits
            await asyncio.to_thread(self._guard.wait, 5)

    def _close_guard_pipe(self) -> None:
        if self._guard is not None and self._guard.stdin is not None:
            with contextlib.suppress(OSError):  # a dead guard: what is unflushed is moot
                self._guard.stdin.close()

    def spawn(
        self,
        instance: Instance,
        argv: list[str],
        contract: ContractEnv,
        extra_env: Mapping[str, str],
    ) -> ProgramProcess:
        """Start ``argv`` for ``instance`` with the contract in its environment.

        Raises:
            ConflictError: the spawner is closed (its guard is gone or going).
        """
        if self._closed:
            raise ConflictError("not started: the node is shutting down")
        # The supervisor's own PIPEVISOR_* settings (its API token above all) stay with it;
        # only the cache of compiled code and the writers' data folder are shared.
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("PIPEVISOR_") or k in _SHARED
        }
        env.update(extra_env)
        env.update(contract.to_environ())
        env[SESSION_VAR] = self.session
        self._spawned += 1
        env[SPAWN_VAR] = str(self._spawned)
        env.setdefault("PYTHONUNBUFFERED", "1")
        process = ProgramProcess(argv, env, self.settings.registry, instance.handle_exit)
        self._guard_write(f"+{process.pgid}\n")
        self._spawns[process.pgid] = self._spawned
        self.loghub.attach_pipe(instance.name, instance.run, process.stdout_fd, "stdout")
        self.loghub.attach_pipe(instance.name, instance.run, process.stderr_fd, "stderr")
        return process

    def exited(self, instance: Instance, process: ProgramProcess) -> None:
        """A run ended: forget its group, and later kill what escaped it."""
        self._guard_write(f"-{process.pgid}\n")
        spawn = self._spawns.pop(process.pgid, None)
        if spawn is None:
            return
        # The group is gone (the process killed it); what left the group with setsid is found
        # by its environment, in a thread, and a little later: the /proc scan must not compete
        # with the next run's spawn for the GIL (it only matches this run's number).
        loop = asyncio.get_running_loop()
        loop.call_later(
            _ESCAPEE_SCAN_DELAY,
            loop.run_in_executor,
            None,
            self._kill_escapees,
            instance.name,
            instance.run,
            spawn,
        )

    def _kill_escapees(self, name: str, run: int, spawn: int) -> None:
        killed = kill_run(self.session, spawn)
        if killed:
            log.warning("instance_escapees_killed", instance=name, run=run, processes=killed)

    def _guard_write(self, line: str) -> None:
        if not line or self._guard is None or self._guard.stdin is None:
            return
        try:
            self._guard.stdin.write(line.encode())
            self._guard.stdin.flush()
        except (BrokenPipeError, ValueError):
            # Dead: its watcher starts a new one, which gets every group of _spawns.
            log.warning("guard_gone", returncode=self._guard.poll())
