"""The orphan guard kills what the supervisor leaves when it dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.support import pid_alive, wait_for


def test_guard_kills_registered_groups_and_session_escapees_at_eof():
    """When its pipe closes, the guard SIGKILLs the groups and the processes of the session."""
    token = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PIPEVISOR_SESSION=token)
    grouped = subprocess.Popen(["sleep", "600"], process_group=0)
    escaped = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
    bystander = subprocess.Popen(["sleep", "600"], process_group=0)
    guard = subprocess.Popen(
        [sys.executable, "-m", "supervisor.guard", token], stdin=subprocess.PIPE
    )
    try:
        guard.stdin.write(f"+{grouped.pid}\n+{bystander.pid}\n-{bystander.pid}\n".encode())
        guard.stdin.close()
        assert guard.wait(10) == 0
        wait_for(
            lambda: grouped.poll() is not None and escaped.poll() is not None,
            timeout=5,
            what="guarded processes killed",
        )
        assert pid_alive(bystander.pid), "an unregistered group outside the session must survive"
    finally:
        for p in (grouped, escaped, bystander):
            p.kill()
            p.wait()
