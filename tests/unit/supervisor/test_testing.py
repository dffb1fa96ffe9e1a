"""supervisor.testing: the fake node is the node API exactly, and its helpers do what they say."""

from __future__ import annotations

import asyncio
import inspect
import io
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from supervisor.api import create_app
from supervisor.nodeapi import (
    BackgroundNotFoundError,
    CreateInstance,
    EntryNotFoundError,
    InstanceNotFoundError,
    InstanceState,
    InvalidConfigError,
    InvalidNameError,
    NodeAPI,
    PayloadTooLargeError,
)
from supervisor.testing import (
    FakeNode,
    free_port,
    kill_tree,
    pid_alive,
    port_free,
    wait_for,
    wait_until,
)

PROPERTIES = {n for n, v in vars(NodeAPI).items() if isinstance(v, property)}
METHODS = sorted(
    n for n, v in vars(NodeAPI).items() if inspect.isfunction(v) and not n.startswith("_")
)


def test_the_protocol_is_what_this_test_expects() -> None:
    """A guard for the two lists below: the Protocol has its properties and many methods."""
    assert {"started_at", "max_upload_bytes"} == PROPERTIES
    assert {"list_instances", "follow_logs", "write_file", "collect_background"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_is_a_coroutine_with_the_protocols_signature(name: str) -> None:
    """Same parameters (names, kinds, defaults, annotations) and return annotation: a client
    written against the fake runs against a node."""
    method = getattr(FakeNode, name, None)
    assert method is not None, f"FakeNode lacks {name}"
    assert inspect.iscoroutinefunction(method), f"FakeNode.{name} is not async"
    assert inspect.signature(method) == inspect.signature(getattr(NodeAPI, name))


def test_the_properties_are_there(tmp_path: Path) -> None:
    node = FakeNode(tmp_path, max_upload_bytes=1234)
    assert node.max_upload_bytes == 1234
    assert time.time() - 60 < node.started_at <= time.time()


def test_nothing_public_is_async_beyond_the_protocol() -> None:
    """An extra coroutine on the fake would be a method the node lacks."""
    extra = {
        n
        for n, v in vars(FakeNode).items()
        if inspect.iscoroutinefunction(v) and not n.startswith("_")
    }
    assert extra == set(METHODS)


def test_a_client_of_the_rest_api_drives_the_fake(tmp_path: Path) -> None:
    """The real app around the fake: what a user's test of a client does."""
    node = FakeNode(tmp_path)
    node.add_entry("camera", {"builtin": "camera_simulation", "parameters": {"exposure": 1}})

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            created = await client.post("/api/v1/instances", json={"name": "c", "entry": "camera"})
            assert created.status_code == 201, created.text
            refused = await client.patch("/api/v1/instances/c/config", json={"exposure": -1})
            assert refused.status_code == 422, refused.text
            assert (await client.get("/api/v1/instances/nope")).status_code == 404

    asyncio.run(scenario())
    assert node.instances["c"].state is InstanceState.RUNNING
    assert node.instances["c"].config == {"exposure": 1}


def test_instances_config_and_logs(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = FakeNode(tmp_path)
        node.add_entry("camera", {"builtin": "camera_simulation", "parameters": {"gain": 2}})
        info = await node.create_instance(
            CreateInstance(name="cam1", entry="camera", config={"exposure": 3})
        )
        assert info.state is InstanceState.RUNNING
        assert await node.get_config("cam1") == {"gain": 2, "exposure": 3}
        with pytest.raises(InvalidConfigError):
            await node.update_config("cam1", {"exposure": -1})
        assert (await node.set_config("cam1", {"gain": 5})).applied == "live"
        assert (await node.stop_instance("cam1")).state is InstanceState.STOPPED
        with pytest.raises(InstanceNotFoundError):
            await node.get_instance("cam2")
        with pytest.raises(InstanceNotFoundError):
            await node.follow_logs("cam2")  # raised when awaited, before any iteration
        for text in ("a", "b", "c"):
            node.add_log("cam1", text)
        assert [e.message for e in await node.tail_logs("cam1", 2)] == ["b", "c"]
        followed = [e.seq async for e in await node.follow_logs("cam1", since_seq=1)]
        assert followed == [2, 3]
        assert node.follow_closed == 1
        assert b'"name":"cam1"' in await node.list_instances_json()

    asyncio.run(scenario())


def test_registry_and_backgrounds_through_the_methods(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = FakeNode(tmp_path, max_upload_bytes=1000)
        entry = await node.write_file("tool", b"#!/bin/sh\n", executable=True)
        assert entry is not None
        assert entry.name == "tool"
        assert [f.filename for f in await node.list_files()] == ["tool"]
        assert await node.read_file("tool") == b"#!/bin/sh\n"
        assert (await node.get_entry("tool")).valid
        with pytest.raises(InvalidNameError):
            await node.read_file("../etc/passwd")
        with pytest.raises(PayloadTooLargeError):
            await node.write_file("big.bin", b"x" * 1001)
        await node.delete_file("tool")
        with pytest.raises(EntryNotFoundError):
            await node.get_entry("tool")

        node.add_entry("cam", {"builtin": "camera_simulation"})
        await node.create_instance(CreateInstance(name="cam", entry="cam"))
        node.camera_images["cam"] = [np.full((2, 3), v, np.uint16) for v in (10, 13)]
        collected = await node.collect_background("cam", 2)
        assert collected.camera == "cam"
        assert collected.shape == [2, 3]
        assert (await node.latest_background("cam")).id == collected.id
        assert [b.id for b in await node.list_backgrounds("cam")] == [collected.id]
        data = await node.read_background(collected.id)
        assert np.load(io.BytesIO(data)).tolist() == [[11] * 3] * 2
        await node.delete_background(collected.id)
        with pytest.raises(BackgroundNotFoundError):
            await node.get_background(collected.id)
        preview = await node.preview("cam", width=3)
        assert preview.pulse_id == 1001
        assert preview.png.startswith(b"\x89PNG")

    asyncio.run(scenario())


def test_wait_for_returns_the_first_truthy_value_and_fails_with_the_last_seen() -> None:
    calls = iter([None, ValueError("not yet"), 0, "up"])

    def probe() -> object:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_for(probe, interval=0) == "up"
    with pytest.raises(AssertionError, match=r"waiting for the moon; last seen: 0"):
        wait_for(lambda: 0, timeout=0.05, what="the moon")


def test_wait_until_fails_at_its_deadline_with_what_it_shows() -> None:
    with pytest.raises(AssertionError, match="never"):
        asyncio.run(wait_until(lambda: False, lambda: "never", timeout=0.05))


def test_ports_and_process_trees() -> None:
    port = free_port()
    assert port_free(port)
    shell = "sleep 60 & sleep 60 & wait"
    proc = subprocess.Popen(["/bin/sh", "-c", shell], start_new_session=True)
    wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2, timeout=5)
    children = [c.pid for c in psutil.Process(proc.pid).children()]
    assert pid_alive(proc.pid)
    assert kill_tree([proc]) == 3
    assert proc.returncode is not None
    assert not any(pid_alive(pid) for pid in children)
    assert not pid_alive(proc.pid)


def test_the_package_imports_without_a_test_framework() -> None:
    """It ships in the wheel: importing it must not need pytest (nor import it)."""
    code = "import sys, supervisor.testing; assert 'pytest' not in sys.modules, 'pytest'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
