"""The ``pipevisor`` CLI against a real uvicorn server running the app around a fake supervisor."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from supervisor.cli import CliError, format_table, parse_assignments
from supervisor.cli.client import error_detail
from supervisor.settings import Settings
from tests.live_server import TOKEN, UPLOAD_LIMIT, LiveServer, Run
from tests.support import free_port, wait_for


@pytest.fixture
def cam1(live: LiveServer, run: Run) -> None:
    """A running instance ``cam1`` with three log entries."""
    assert run("create", "cam1", "camera")[0] == 0
    for message in ("first", "second", "third"):
        live.fake.add_log("cam1", message)


# -- tables and --json -----------------------------------------------------------------------


def test_ls_prints_an_aligned_instance_table(live: LiveServer, run: Run, cam1: None) -> None:
    """`ls` prints a header and one row per instance, columns aligned under their headers."""
    run("create", "second-camera", "camera", "--no-start")
    code, out, _ = run("ls")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME",
        "ENTRY",
        "STATE",
        "PID",
        "RESTARTS",
        "IN/S",
        "OUT/S",
        "DROPS",
        "CPU%",
        "MIB",
        "STREAM",
        "REASON",
    ]
    assert len(rows) == 2
    assert rows[0].split()[:4] == ["cam1", "camera", "running", "4242"]
    assert header.index("STATE") == rows[0].index("running") == rows[1].index("stopped")
    assert header.index("STREAM") == rows[0].index("tcp://")


def test_ls_json_prints_the_instances(live: LiveServer, run: Run, cam1: None) -> None:
    """`ls --json` prints the API's instance list."""
    code, out, _ = run("ls", "--json")
    assert code == 0
    assert [i["name"] for i in json.loads(out)] == ["cam1"]


def test_ls_with_no_instances_says_so(live: LiveServer, run: Run) -> None:
    """`ls` on an empty node prints 'no instances'."""
    assert run("ls") == (0, "no instances\n", "")


def test_ls_registry_lists_entries_with_validity(live: LiveServer, run: Run) -> None:
    """`ls --registry` lists entries: valid ones as yes, broken ones as NO with their error."""
    code, out, _ = run("ls", "--registry")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["camera"].split()[1:3] == ["config", "yes"]
    assert lines["broken"].split()[1:3] == ["config", "NO"]


def test_options_work_before_the_command_too(live: LiveServer, run: Run, cam1: None) -> None:
    """`--json` and `--url` are accepted before the command as well as after it."""
    code, out, _ = run("--url", live.url, "--json", "ls")
    assert code == 0
    assert json.loads(out)[0]["name"] == "cam1"


# -- instance commands -----------------------------------------------------------------------


def test_create_with_set_overrides_config(live: LiveServer, run: Run) -> None:
    """`create NAME ENTRY --set` creates and starts it with the overrides (dotted keys nest)."""
    code, out, _ = run("create", "cam2", "camera", "--set", "roi.y=5", "--set", "exposure=2.5")
    assert code == 0
    assert out.startswith("cam2: running (pid 4242), stream tcp://127.0.0.1:")
    assert live.fake.instances["cam2"].config == {"exposure": 2.5, "roi": {"x": 0, "y": 5}}


def test_create_no_start_leaves_it_stopped(live: LiveServer, run: Run) -> None:
    """`create --no-start` creates a stopped instance; --json prints it."""
    code, out, _ = run("create", "cam3", "camera", "--no-start", "--json")
    assert code == 0
    assert json.loads(out)["state"] == "stopped"


def test_create_conflict_prints_the_detail_and_exits_1(
    live: LiveServer, run: Run, cam1: None
) -> None:
    """A refused call prints the status and the server's detail on stderr and exits 1."""
    code, out, err = run("create", "cam1", "camera")
    assert (code, out) == (1, "")
    assert err == "pipevisor: 409 Conflict: an instance named 'cam1' already exists\n"


def test_create_with_a_bad_name_prints_the_field_and_reason(live: LiveServer, run: Run) -> None:
    """A validation error names the field and the reason."""
    code, _, err = run("create", "bad name!", "camera")
    assert code == 1
    assert "422" in err
    assert "name: String should match pattern" in err


def test_start_stop_restart_print_the_new_state(live: LiveServer, run: Run, cam1: None) -> None:
    """`stop`, `start` and `restart` print the instance's state after the action."""
    assert (
        run("stop", "cam1")[1]
        == "cam1: stopped, stream tcp://127.0.0.1:11101; stopped by request\n"
    )
    assert run("start", "cam1")[1].startswith("cam1: running (pid 4242)")
    code, out, _ = run("restart", "cam1", "--json")
    assert (code, json.loads(out)["restarts"]) == (0, 1)


def test_delete_removes_the_instance(live: LiveServer, run: Run, cam1: None) -> None:
    """`delete NAME` deletes it."""
    assert run("delete", "cam1") == (0, "deleted cam1\n", "")
    assert "cam1" not in live.fake.instances


def test_unknown_instance_exits_1_with_the_detail(live: LiveServer, run: Run) -> None:
    """Acting on an instance that does not exist exits 1 quoting the name."""
    code, _, err = run("stop", "ghost")
    assert code == 1
    assert err == "pipevisor: 404 Not Found: no instance named 'ghost'\n"


def test_status_without_name_shows_the_node(live: LiveServer, run: Run, cam1: None) -> None:
    """`status` prints the node info as aligned key: value lines."""
    code, out, _ = run("status")
    assert code == 0
    assert "hostname:  fakehost" in out.splitlines()
    assert "states:    running=1" in out.splitlines()


def test_status_of_an_instance_shows_its_details(live: LiveServer, run: Run, cam1: None) -> None:
    """`status NAME` prints the instance in detail; --json prints the API's view."""
    code, out, _ = run("status", "cam1")
    assert code == 0
    assert "state:           running" in out.splitlines()
    assert 'config:          {"exposure": 1, "roi": {"x": 0}}' in out.splitlines()
    assert json.loads(run("status", "cam1", "--json")[1])["entry"] == "camera"


# -- logs ------------------------------------------------------------------------------------


def test_logs_prints_the_newest_entries(live: LiveServer, run: Run, cam1: None) -> None:
    """`logs NAME -n 2` prints 'time source level message' for the newest two entries."""
    code, out, _ = run("logs", "cam1", "-n", "2")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" stdout INFO second")
    assert lines[1].endswith(" stdout INFO third")


def test_logs_json_prints_one_entry_per_line(live: LiveServer, run: Run, cam1: None) -> None:
    """`logs --json` prints JSON lines with the entries' seq."""
    out = run("logs", "cam1", "--json")[1]
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]


def test_logs_follow_prints_streamed_entries(
    live: LiveServer, run: Run, cam1: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`logs -f` prints the tail, then the entries after it from the event stream."""

    async def no_tail(name: str, n: int = 100, since_seq: int | None = None) -> list:
        return []

    monkeypatch.setattr(live.fake, "tail_logs", no_tail)
    code, out, _ = run("logs", "cam1", "-f")
    assert code == 0
    assert [line.rsplit(" ", 1)[1] for line in out.splitlines()] == ["first", "second", "third"]


def test_logs_follow_resumes_after_the_tail(live: LiveServer, run: Run, cam1: None) -> None:
    """`logs -n 1 -f` follows from the last entry it printed, so nothing repeats."""
    code, out, _ = run("logs", "cam1", "-n", "1", "-f", "--json")
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [3]


def test_follow_stops_when_the_client_disconnects(live: LiveServer, cam1: None) -> None:
    """Closing an SSE connection closes the server's log follower (no follower left behind)."""
    live.fake.follow_forever = True
    url = f"{live.url}/api/v1/instances/cam1/logs/follow"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.readline() == b"id: 1\n"
    wait_for(lambda: live.fake.follow_closed == 1, timeout=5, what="follower closed")


# -- config ----------------------------------------------------------------------------------


def test_config_get_prints_json(live: LiveServer, run: Run, cam1: None) -> None:
    """`config get NAME` prints the configuration as JSON."""
    code, out, _ = run("config", "get", "cam1")
    assert (code, json.loads(out)) == (0, {"exposure": 1, "roi": {"x": 0}})


def test_config_set_sends_a_nested_merge_patch(live: LiveServer, run: Run, cam1: None) -> None:
    """`config set` parses JSON values, keeps other strings, and nests dotted keys."""
    code, out, _ = run(
        "config", "set", "cam1", "roi.y=10", "roi.w=2.5", "mode=fast", "flag=true", "exposure=null"
    )
    assert code == 0
    assert out.startswith("cam1: config seq 1, applied live\n")
    assert live.fake.instances["cam1"].config == {
        "roi": {"x": 0, "y": 10, "w": 2.5},
        "mode": "fast",
        "flag": True,
    }


def test_config_set_refused_by_the_program_exits_1(live: LiveServer, run: Run, cam1: None) -> None:
    """A refused config prints the program's refusal and exits 1."""
    code, _, err = run("config", "set", "cam1", "exposure=-3", "--json")
    assert code == 1
    assert "'cam1' refused the config: exposure -3 < 0" in err


def test_config_set_with_a_malformed_assignment_exits_2(run: Run) -> None:
    """An assignment without '=' is a usage error (exit 2), before anything is sent."""
    code, _, err = run("--url", "http://127.0.0.1:9", "config", "set", "cam1", "gain")
    assert code == 2
    assert "expected key=value" in err


# -- upload ----------------------------------------------------------------------------------


def test_upload_sends_the_file(live: LiveServer, run: Run, tmp_path: Path) -> None:
    """`upload FILE --executable` stores the bytes and reports the entry."""
    program = tmp_path / "tool.sh"
    program.write_bytes(b"#!/bin/sh\nexec sleep 1\n")
    code, out, _ = run("upload", str(program), "--executable")
    assert code == 0
    assert out == "uploaded tool.sh (23 bytes): entry tool (executable), valid\n"
    assert live.fake.registry.files["tool.sh"] == program.read_bytes()


def test_upload_over_the_limit_exits_1_with_413(live: LiveServer, run: Run, tmp_path: Path) -> None:
    """An upload over the server's limit is refused: 413 and the limit on stderr."""
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (UPLOAD_LIMIT + 1))
    code, _, err = run("upload", str(big))
    assert code == 1
    assert "413" in err
    assert f"upload limit of {UPLOAD_LIMIT} bytes" in err


def test_background_collect_ls_get_and_put(
    live: LiveServer, run: Run, cam1: None, tmp_path: Path
) -> None:
    """`background collect/ls/get/put` drive the background routes end to end."""
    live.fake.camera_images["cam1"] = [np.full((2, 3), 40, np.uint16)] * 4
    code, out, _ = run("background", "collect", "cam1", "-n", "4")
    assert code == 0
    assert out.startswith("collected cam1_")
    assert out.endswith(" from 4 images\n")
    collected = out.split()[1]
    code, out, _ = run("background", "ls", "--camera", "cam1")
    assert code == 0
    assert collected in out
    assert "3x2" in out
    assert "uint16" in out
    target = tmp_path / "bg.npy"
    assert run("background", "get", collected, "-o", str(target))[0] == 0
    np.testing.assert_array_equal(np.load(target), np.full((2, 3), 40))
    np.save(tmp_path / "mine.npy", np.ones((4, 5), np.float32))
    code, out, _ = run("background", "put", "mine", str(tmp_path / "mine.npy"), "--json")
    assert code == 0
    assert json.loads(out)["shape"] == [4, 5]


def test_background_put_of_a_pickle_exits_1_with_the_reason(
    live: LiveServer, run: Run, tmp_path: Path
) -> None:
    """A .npy that needs pickle is refused by the node; the CLI prints its reason."""
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run("background", "put", "evil", str(evil))
    assert code == 1
    assert "422" in err
    assert "without pickles" in err


def test_upload_of_a_missing_file_exits_2(run: Run, tmp_path: Path) -> None:
    """Uploading a file that does not exist is a usage error."""
    code, _, err = run("upload", str(tmp_path / "nope.py"))
    assert code == 2
    assert "cannot read" in err


# -- token and reachability ------------------------------------------------------------------


def test_token_from_option_or_environment_is_sent(
    secured: LiveServer, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a token a change exits 1 with 401; --token or PIPEVISOR_TOKEN makes it pass."""
    code, _, err = run("create", "a", "camera")
    assert code == 1
    assert "401" in err
    assert run("create", "a", "camera", "--token", TOKEN)[0] == 0
    monkeypatch.setenv("PIPEVISOR_TOKEN", TOKEN)
    assert run("create", "b", "camera")[0] == 0
    assert run("ls")[0] == 0


def test_connection_refused_prints_a_hint_and_exits_2(run: Run) -> None:
    """With nothing listening at --url, one line says so and names `pipevisor serve`."""
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run("ls", "--url", url)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert url in err
    assert "is `pipevisor serve` running there?" in err


def test_url_that_is_not_http_is_a_usage_error(run: Run) -> None:
    """Only http(s) URLs are used: a file: URL is refused with exit 2, nothing is opened."""
    code, _, err = run("ls", "--url", "file:///etc/passwd")
    assert code == 2
    assert "http://" in err


# -- serve -----------------------------------------------------------------------------------


def test_serve_builds_settings_and_calls_the_server(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` turns its options (and PIPEVISOR_TOKEN) into Settings for server.serve."""
    import supervisor.server

    seen: list[Settings] = []
    monkeypatch.setattr(supervisor.server, "serve", lambda settings: seen.append(settings) or 7)
    monkeypatch.setenv("PIPEVISOR_TOKEN", "from-env")
    code, _, _ = run(
        "serve",
        "--registry",
        str(tmp_path),
        "--port",
        "0",
        "--host",
        "0.0.0.0",
        "--port-range",
        "12000:12010",
        "--stream-host",
        "0.0.0.0",
        "--advertise-host",
        "node1.psi.ch",
        "--log-format",
        "json",
    )
    assert code == 7
    (settings,) = seen
    assert settings.registry == tmp_path
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 0)
    assert settings.port_range == (12000, 12010)
    assert settings.public_host == "node1.psi.ch"
    assert settings.token == "from-env"
    assert settings.log_format == "json"
    assert settings.state_dir == tmp_path / ".pipevisor"


def test_serve_refuses_a_missing_registry(run: Run, tmp_path: Path) -> None:
    """`serve` with a registry folder that does not exist exits 2 naming it."""
    code, _, err = run("serve", "--registry", str(tmp_path / "missing"))
    assert code == 2
    assert "missing" in err


@pytest.mark.parametrize("bad", ["12000", "a:b", "12010:12000"])
def test_serve_refuses_a_bad_port_range(run: Run, tmp_path: Path, bad: str) -> None:
    """A port range that is not FIRST:LAST with FIRST < LAST is a usage error (exit 2)."""
    try:
        code = run("serve", "--registry", str(tmp_path), "--port-range", bad)[0]
    except SystemExit as exc:
        code = exc.code
    assert code == 2


def test_python_m_runs_the_cli() -> None:
    """`python -m supervisor.cli` is the same command line (the system tests start it so)."""
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "serve" in result.stdout


def test_client_commands_do_not_import_the_server_stack() -> None:
    """Importing the CLI loads no FastAPI, uvicorn or pydantic: client commands start fast."""
    probe = (
        "import sys, supervisor.cli; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'pydantic', 'zmq') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# -- helpers ---------------------------------------------------------------------------------


def test_parse_assignments_nests_dotted_keys_and_parses_json() -> None:
    """Dotted keys nest; values are JSON when they parse, else strings."""
    assert parse_assignments(["roi.x=10", "roi.y=-2", "name=cam 1", "l=[1,2]", 'q="7"']) == {
        "roi": {"x": 10, "y": -2},
        "name": "cam 1",
        "l": [1, 2],
        "q": "7",
    }


@pytest.mark.parametrize("items", [["a"], ["=1"], ["a..b=1"], ["a=1", "a.b=2"], ["a.b=1", "a=2"]])
def test_parse_assignments_refuses_malformed_items(items: list[str]) -> None:
    """Items without '=', with empty key parts, or setting a key both ways are usage errors."""
    with pytest.raises(CliError) as info:
        parse_assignments(items)
    assert info.value.code == 2


def test_format_table_aligns_columns() -> None:
    """Columns are padded to the widest cell; right-aligned columns pad on the left."""
    table = format_table(["name", "n"], [["a", 5], ["long-name", 12], ["b", None]], right=[1])
    assert table.splitlines() == [
        "NAME        N",
        "a           5",
        "long-name  12",
        "b           -",
    ]


def test_client_error_detail_of_a_validation_error_names_fields() -> None:
    """A FastAPI validation body becomes 'field: reason' parts."""
    body = json.dumps({"detail": [{"loc": ["body", "roi", "x"], "msg": "bad", "type": "t"}]})
    assert error_detail(body.encode()) == "roi.x: bad"
    assert error_detail(b"not json") == "not json"
