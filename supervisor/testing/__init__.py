"""Helpers for tests of pipevisor and of what users build on it (as ``structlog.testing``).

- ``FakeNode``: the node API (``supervisor.nodeapi.NodeAPI``) in memory. Serve it with the real
  REST app to test a client of a node without starting a process::

      from fastapi.testclient import TestClient
      from supervisor.api import create_app
      from supervisor.testing import FakeNode

      node = FakeNode(tmp_path)
      node.add_entry("camera", {"builtin": "camera_simulation"})
      with TestClient(create_app(node)) as client:
          client.post("/api/v1/instances", json={"name": "cam1", "entry": "camera"})
      assert node.instances["cam1"].state == "running"

- ``SupervisorProcess``: a real ``pipevisor serve`` on loopback, started as a process, healthy
  or failed by a deadline, with an API client; ``stop()`` ends it and its whole tree.
- ``wait_for`` / ``wait_until``: poll with a deadline (sync / async) and fail with what was
  last seen; ``free_port``, ``port_free``, ``pid_alive``, ``kill_tree`` for real processes.

Nothing here imports a test framework: it ships with the package.
"""

from .fakenode import FakeNode
from .fakeregistry import FakeRegistry
from .processes import SupervisorProcess, free_port, kill_tree, pid_alive, port_free
from .waiting import wait_for, wait_until

__all__ = [
    "FakeNode",
    "FakeRegistry",
    "SupervisorProcess",
    "free_port",
    "kill_tree",
    "pid_alive",
    "port_free",
    "wait_for",
    "wait_until",
]
