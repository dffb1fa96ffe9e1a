"""Starting programs: their environment, their process group, the orphan guard, escapees."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping

import structlog

from .contract import ContractEnv, EnvVar
from .guard import SESSION_VAR, SPAWN_VAR, kill_run
from .instance import Instance
from .loghub import LogHub
from .process import ProgramProcess
from .settings import Settings

__all__ = ["Spawner"]

log = structlog.get_logger(__name__)

_ESCAPEE_SCAN_DELAY = 0.2  # seconds after a run ended


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

    def start(self) -> None:
        """Start the guard (before any program)."""
        self._guard = subprocess.Popen(
            [sys.executable, "-m", "supervisor.guard", self.session],
            stdin=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )

    async def close(self) -> None:
        """Let the guard finish (after every program has stopped)."""
        if self._guard is not None:
            assert self._guard.stdin is not None
            self._guard.stdin.close()
            await asyncio.to_thread(self._guard.wait, 5)

    def spawn(
        self,
        instance: Instance,
        argv: list[str],
        contract: ContractEnv,
        extra_env: Mapping[str, str],
    ) -> ProgramProcess:
        """Start ``argv`` for ``instance`` with the contract in its environment."""
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
        if self._guard is not None and self._guard.stdin is not None:
            try:
                self._guard.stdin.write(line.encode())
                self._guard.stdin.flush()
            except (BrokenPipeError, ValueError):
                log.error("guard_gone", returncode=self._guard.poll())
