"""A POSIX shell script supervised like any pipeline: lifecycle, exit codes, logs."""

from __future__ import annotations

import pytest

from tests.support import pid_alive, wait_for

from .conftest import shell

pytestmark = pytest.mark.system


def _create(sup, name, entry, **body):
    response = sup.api("POST", "/instances", json={"name": name, "entry": entry, **body})
    assert response.status_code == 201, response.text
    return response.json()


def _log_messages(sup, name):
    return [
        e["message"] for e in sup.api("GET", f"/instances/{name}/logs", params={"tail": 500}).json()
    ]


def test_shell_script_runs_and_its_output_becomes_logs(start_supervisor, write_entry):
    """A shell script's stdout and stderr lines reach the instance log, tagged by stream."""
    write_entry(
        "hello.sh",
        shell(
            'echo "hello from $PIPEVISOR_INSTANCE run $PIPEVISOR_RUN"\n'
            'echo "to stderr" >&2\nexec sleep 600'
        ),
        executable=True,
    )
    sup = start_supervisor()
    _create(sup, "greeter", "hello")
    info = sup.wait_state("greeter", "running")
    assert info["pid"]
    assert info["run"] == 1
    entries = wait_for(
        lambda: (
            [
                e
                for e in sup.api("GET", "/instances/greeter/logs").json()
                if e["source"] in ("stdout", "stderr")
            ]
            if len(
                [
                    e
                    for e in sup.api("GET", "/instances/greeter/logs").json()
                    if e["source"] in ("stdout", "stderr")
                ]
            )
            >= 2
            else None
        ),
        what="two output lines",
    )
    by_source = {e["source"]: e["message"] for e in entries}
    assert by_source["stdout"] == "hello from greeter run 1"
    assert by_source["stderr"] == "to stderr"


def test_stop_sends_sigterm_to_the_group_and_reports_it(start_supervisor, write_entry):
    """Stop ends the script, its children, and a child that left the group with setsid."""
    script = "sleep 600 &\necho child $!\nsetsid sleep 600 &\necho escaped $!\nwait"
    write_entry("tree.sh", shell(script), executable=True)
    sup = start_supervisor()
    _create(sup, "tree", "tree")
    sup.wait_state("tree", "running")

    def pids():
        found = {
            m.split()[0]: int(m.split()[1])
            for m in _log_messages(sup, "tree")
            if m.split()[0] in ("child", "escaped")
        }
        return found if len(found) == 2 else None

    children = wait_for(pids, what="child pid lines")
    assert all(pid_alive(p) for p in children.values())
    response = sup.api("POST", "/instances/tree/stop")
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["state"] == "stopped"
    assert info["exit_signal"] == "SIGTERM"
    assert "stopped on request" in info["reason"]
    wait_for(
        lambda: not any(pid_alive(p) for p in children.values()),
        timeout=5,
        what=f"children {children} gone",
    )


def test_sigterm_ignoring_program_is_killed_after_the_grace_period(start_supervisor, write_entry):
    """A program that ignores SIGTERM is SIGKILLed after its grace period, and the API says so."""
    write_entry("stubborn.json", '{"program": "stubborn.sh", "restart": {"stop_grace": 0.5}}')
    write_entry(
        "stubborn.sh", shell("trap '' TERM\nwhile true; do sleep 0.1; done"), executable=True
    )
    sup = start_supervisor()
    _create(sup, "stubborn", "stubborn")
    sup.wait_state("stubborn", "running")
    info = sup.api("POST", "/instances/stubborn/stop").json()
    assert info["state"] == "stopped"
    assert info["exit_signal"] == "SIGKILL"
    assert "killed after 0.5 s grace" in info["reason"]


def test_failing_script_is_restarted_then_stopped_by_the_crash_loop_limit(
    start_supervisor, write_entry
):
    """on-failure restarts a failing script with backoff until the crash-loop limit fails it."""
    write_entry(
        "crash.json",
        '{"program": "crash.sh", "restart": {"mode": "on-failure", '
        '"backoff_initial": 0.05, "max_restarts": 3, "stable_after": 5}}',
    )
    write_entry("crash.sh", shell('echo "attempt $PIPEVISOR_RUN"\nexit 3'), executable=True)
    sup = start_supervisor()
    _create(sup, "crash", "crash")
    info = sup.wait_state("crash", "failed", timeout=20)
    assert info["exit_code"] == 3
    assert info["run"] == 4  # the first run and three restarts
    assert info["restarts"] == 3
    assert "crash loop" in info["reason"]
    assert "exited with code 3" in info["reason"]
    attempts = [m for m in _log_messages(sup, "crash") if m.startswith("attempt")]
    assert attempts == ["attempt 1", "attempt 2", "attempt 3", "attempt 4"]
    # A manual start clears the crash loop and tries again.
    sup.api("POST", "/instances/crash/start").raise_for_status()
    info = wait_for(lambda: (i := sup.instance("crash"))["run"] >= 5 and i, what="a new run")


def test_exit_zero_under_on_failure_means_finished(start_supervisor, write_entry):
    """A script that exits 0 under on-failure is finished: stopped, not restarted."""
    write_entry("once.sh", shell("echo done"), executable=True)
    sup = start_supervisor()
    _create(sup, "once", "once")
    info = sup.wait_state("once", "stopped")
    assert info["exit_code"] == 0
    assert info["run"] == 1
    assert info["reason"].startswith("finished")
    assert info["desired"] == "stopped"


def test_policy_never_leaves_a_failed_instance_failed(start_supervisor, write_entry):
    """With restart policy never, a failure is shown as failed with the exit code."""
    write_entry("never.json", '{"program": "never.sh", "restart": {"mode": "never"}}')
    write_entry("never.sh", shell("exit 7"), executable=True)
    sup = start_supervisor()
    _create(sup, "never", "never")
    info = sup.wait_state("never", "failed")
    assert info["exit_code"] == 7
    assert info["run"] == 1
    assert "exited with code 7" in info["reason"]


def test_always_restarts_even_a_clean_exit(start_supervisor, write_entry):
    """Policy always restarts a program that exits 0."""
    write_entry(
        "loop.json", '{"program": "loop.sh", "restart": {"mode": "always", "stable_after": 0}}'
    )
    write_entry("loop.sh", shell("sleep 0.05"), executable=True)
    sup = start_supervisor()
    _create(sup, "loop", "loop")
    wait_for(lambda: sup.instance("loop")["run"] >= 4, what="four runs")
    sup.api("POST", "/instances/loop/stop").raise_for_status()
