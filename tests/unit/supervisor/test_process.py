"""One run of a program: its exit is noticed at once, its whole group is stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from supervisor.process import ExitStatus, ProgramProcess, describe_exit
from tests.support import pid_alive, run


def _spawn(script: str, exits: list, tmp_path: Path) -> ProgramProcess:
    return ProgramProcess(
        ["/bin/sh", "-c", script],
        dict(os.environ),
        tmp_path,
        lambda p, s: exits.append((time.monotonic(), s)),
    )


def _close_pipes(process: ProgramProcess) -> None:
    os.close(process.stdout_fd)
    os.close(process.stderr_fd)


def test_exit_is_noticed_without_polling(tmp_path):
    """The exit callback fires within milliseconds of the exit, with the code."""

    async def main():
        exits: list = []
        process = _spawn("exit 3", exits, tmp_path)
        status = await process.wait(5)
        _close_pipes(process)
        return status, exits, process

    status, exits, process = run(main())
    assert status == ExitStatus(code=3, signal=None)
    assert len(exits) == 1
    assert exits[0][1] == status
    assert exits[0][0] - process.started_monotonic < 1.0
    assert describe_exit(status) == "exited with code 3"


def test_terminate_stops_the_whole_group(tmp_path):
    """SIGTERM reaches the program's children, which are in its process group."""

    async def main():
        exits: list = []
        process = _spawn("sleep 600 & echo $! ; wait", exits, tmp_path)
        child = None
        deadline = time.monotonic() + 5
        while child is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            try:
                child = int(os.read(process.stdout_fd, 100).split()[0])
            except (BlockingIOError, IndexError):
                pass
        status, killed = await process.terminate(5)
        _close_pipes(process)
        return child, status, killed

    child, status, killed = run(main())
    assert status.signal_name == "SIGTERM"
    assert not killed
    assert not pid_alive(child)


def test_a_program_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    """terminate() falls back to SIGKILL and says it did."""

    async def main():
        process = _spawn("trap '' TERM; echo armed; while true; do sleep 0.05; done", [], tmp_path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait until the trap is set
            await asyncio.sleep(0.01)
            try:
                if os.read(process.stdout_fd, 100):
                    break
            except BlockingIOError:
                pass
        result = await process.terminate(0.2)
        _close_pipes(process)
        return result

    status, killed = run(main())
    assert killed
    assert status.signal == signal.SIGKILL
    assert describe_exit(status) == "killed by SIGKILL"
