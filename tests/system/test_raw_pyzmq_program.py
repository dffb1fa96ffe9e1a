"""A Python program that speaks the contract with raw pyzmq and the environment only."""

from __future__ import annotations

import sys

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.system

PROGRAM = (
    f"""#!{sys.executable}
"""
    + r"""import json, os, time, zmq

ctx = zmq.Context()
name, run = os.environ["PIPEVISOR_INSTANCE"], int(os.environ["PIPEVISOR_RUN"])
config = json.loads(os.environ["PIPEVISOR_CONFIG"])
control = ctx.socket(zmq.DEALER)
control.connect(os.environ["PIPEVISOR_CONFIG_URL"])
logs = ctx.socket(zmq.PUSH)
logs.connect(os.environ["PIPEVISOR_LOG_URL"])
out = ctx.socket(zmq.PUB)
out.bind(os.environ["PIPEVISOR_OUTPUT_URL"])

def send(kind, **fields):
    control.send_json({"kind": kind, "instance": name, "run": run, **fields})

def log(message, **fields):
    logs.send_json({"kind": "log", "instance": name, "run": run, "time": time.time(),
                    "level": "info", "logger": "raw", "message": message, "fields": fields})

control.send(b"not a contract message")  # counted and ignored by the supervisor
control.send_json({"kind": "status", "instance": name, "run": run + 99})  # a stale run: ignored
send("hello", pid=os.getpid(), program="raw-pyzmq-test")
update = control.recv_json()
config = update["config"]
log("configured", threshold=config.get("threshold"))
send("ready", output_url=os.environ["PIPEVISOR_OUTPUT_URL"])
sent = 0
while True:
    if control.poll(50):
        update = control.recv_json()
        threshold = update["config"].get("threshold")
        if not isinstance(threshold, (int, float)) or threshold < 0:
            reason = f"threshold must be >= 0, got {threshold!r}"
            send("config_error", seq=update["seq"], message=reason)
        else:
            config = update["config"]
            send("config_ack", seq=update["seq"])
            log("threshold changed", threshold=threshold)
    sent += 1
    send("status", messages_out=sent, bytes_out=sent * 10, clients=0)
"""
)


def test_raw_program_gets_config_acks_updates_and_logs(start_supervisor, write_entry):
    """Hello gets the config; PATCH is acked live; a refusal is a 422 quoting the program;
    malformed and stale CONFIG messages are counted and ignored."""
    write_entry("raw", PROGRAM, executable=True)
    sup = start_supervisor()
    response = sup.api(
        "POST", "/instances", json={"name": "raw", "entry": "raw", "config": {"threshold": 5}}
    )
    assert response.status_code == 201, response.text
    info = wait_for(lambda: (i := sup.instance("raw"))["ready"] and i, what="ready")
    assert info["state"] == "running"
    assert info["speaks_contract"]
    logs = wait_for(
        lambda: [e for e in sup.api("GET", "/instances/raw/logs").json() if e["source"] == "log"],
        what="structured log record",
    )
    assert logs[0]["message"] == "configured"
    assert logs[0]["fields"] == {"threshold": 5}
    assert logs[0]["logger"] == "raw"

    ok = sup.api("PATCH", "/instances/raw/config", json={"threshold": 9})
    assert ok.status_code == 200, ok.text
    assert ok.json()["applied"] == "live"
    assert ok.json()["config"] == {"threshold": 9}

    refused = sup.api("PATCH", "/instances/raw/config", json={"threshold": -1})
    assert refused.status_code == 422
    assert "threshold must be >= 0, got -1" in refused.json()["detail"]
    assert sup.instance("raw")["config"] == {"threshold": 9}

    node = sup.api("GET", "/node").json()
    assert node["malformed_control_messages"] >= 1
    assert node["stale_messages"] >= 1

    stats = wait_for(
        lambda: (s := sup.instance("raw")["stats"])["messages_out"] > 0 and s, what="status"
    )
    assert stats["bytes_out"] == stats["messages_out"] * 10


def test_program_without_config_channel_gets_new_config_at_next_restart(
    start_supervisor, write_entry
):
    """A program that ignores CONFIG gets a changed config in its environment at the next start."""
    write_entry(
        "env.sh", '#!/bin/sh\necho "config=$PIPEVISOR_CONFIG"\nexec sleep 600\n', executable=True
    )
    sup = start_supervisor()
    sup.api(
        "POST", "/instances", json={"name": "env", "entry": "env", "config": {"a": 1}}
    ).raise_for_status()
    sup.wait_state("env", "running")
    result = sup.api("PATCH", "/instances/env/config", json={"a": 2}).json()
    assert result["applied"] == "next_restart"
    assert sup.instance("env")["config_pending_restart"] is True
    sup.api("POST", "/instances/env/restart").raise_for_status()

    def second_config():
        msgs = [
            e["message"]
            for e in sup.api("GET", "/instances/env/logs").json()
            if e["source"] == "stdout"
        ]
        return msgs if len(msgs) >= 2 else None

    msgs = wait_for(second_config, what="two runs' config lines")
    assert msgs[0] == 'config={"a": 1}'
    assert msgs[-1] == 'config={"a": 2}'
    assert sup.instance("env")["config_pending_restart"] is False
