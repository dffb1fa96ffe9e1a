"""Output ports: fixed ones honoured, others from the range, never twice."""

from __future__ import annotations

import socket

import pytest

from supervisor.nodeapi.errors import ConflictError
from supervisor.ports import PortAllocator
from tests.support import free_port


def test_ports_come_from_the_range_and_are_not_reused_while_held():
    """Two owners get two different ports of the range; a released port comes back."""
    first = free_port()
    ports = PortAllocator(first, first + 50)
    a, b = ports.acquire("a"), ports.acquire("b")
    assert a != b
    assert first <= a < first + 50
    assert first <= b < first + 50
    with pytest.raises(ConflictError):
        ports.acquire("c", a)
    ports.release(a)
    assert ports.acquire("c", a) == a


def test_a_port_bound_by_someone_else_is_skipped():
    """A port already bound on the host is not handed out."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        busy.listen()
        ports = PortAllocator(port, port + 2)
        assert ports.acquire("x") == port + 1


def test_fixed_port_held_by_another_instance_is_a_conflict():
    """Two instances cannot be pinned to the same port."""
    ports = PortAllocator(20000, 20010)
    ports.acquire("a", 20005)
    with pytest.raises(ConflictError, match="20005 is already used by instance 'a'"):
        ports.acquire("b", 20005)


def test_exhausted_range_is_a_clear_error():
    """When every port is held the message says so and names the range."""
    port = free_port()
    ports = PortAllocator(port, port + 1)
    ports.acquire("a")
    with pytest.raises(ConflictError, match="all 1 ports"):
        ports.acquire("b")
