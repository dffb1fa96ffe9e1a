"""The orphan guard: kills every instance process when the supervisor dies, even by SIGKILL.

The supervisor starts this module as a small separate process and keeps the write end of a pipe
to it. It writes ``+PGID`` and ``-PGID`` lines as process groups come and go. When the pipe reaches
end of file (the supervisor exited, however it exited: the kernel closes the pipe), the guard
SIGKILLs every registered process group, then every process whose environment carries the
supervisor's session token (programs that left their group with setsid), and exits.

Run as ``python -m supervisor.guard TOKEN``; it imports nothing heavy so it starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable

__all__ = ["SESSION_VAR", "SPAWN_VAR", "kill_run", "kill_session", "main"]

SESSION_VAR = "PIPEVISOR_SESSION"
SPAWN_VAR = "PIPEVISOR_SPAWN"


def _session_pids(token: str, *extra: str) -> list[int]:
    """Pids of processes whose environment holds ``PIPEVISOR_SESSION=token`` (and ``extra``
    variables, written ``NAME=value``)."""
    needles = [b"\0" + f"{SESSION_VAR}={token}".encode() + b"\0"]
    needles += [b"\0" + item.encode() + b"\0" for item in extra]
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = b"\0" + f.read() + b"\0"
        except OSError:
            continue
        if all(needle in env for needle in needles):
            found.append(int(name))
    return found


def _kill(kill: Callable[[int, int], None], ids: Iterable[int]) -> int:
    """SIGKILL each id with ``kill`` (os.kill or os.killpg); returns how many were there."""
    killed = 0
    for ident in ids:
        try:
            kill(ident, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    return killed


def kill_run(token: str, spawn: int) -> int:
    """SIGKILL what is left of one spawned run outside its process group (programs that
    called setsid); returns the count. Scans /proc: call it off the event loop.

    Runs are told apart by ``PIPEVISOR_SPAWN``, unique in the session: an instance deleted and
    created again under its name starts at run 1 again, and its new run must not match.
    """
    return _kill(os.kill, _session_pids(token, f"{SPAWN_VAR}={spawn}"))


def kill_session(token: str, pgids: set[int]) -> int:
    """SIGKILL the process groups, then any process of the session left; returns the count."""
    killed = _kill(os.killpg, pgids)
    # Two passes: a process forking while we scan is caught by the second.
    for _ in range(2):
        killed += _kill(os.kill, _session_pids(token))
    return killed


def main(argv: list[str]) -> int:
    """Read group registrations from stdin until EOF, then kill what is left."""
    token = argv[1]
    # Ctrl-C or a hangup of a terminal reaches the whole foreground group (the spawner starts
    # the guard in a session of its own, so neither should reach it): the supervisor handles
    # them and stops its instances; the guard must outlive it to catch what it could not.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pgids: set[int] = set()
    stdin = sys.stdin.buffer
    for line in stdin:
        line = line.strip()
        if line[:1] == b"+":
            pgids.add(int(line[1:]))
        elif line[:1] == b"-":
            pgids.discard(int(line[1:]))
    kill_session(token, pgids)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
