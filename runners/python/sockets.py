"""The DATA and OUTPUT sockets, and the count of the output's clients."""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from supervisor.contract import SocketMode

__all__ = ["ClientMonitor", "bind_output", "connect_data"]

_MONITORED = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


def connect_data(
    context: zmq.Context[zmq.Socket[bytes]], url: str, mode: SocketMode, queue_size: int
) -> zmq.Socket[bytes]:
    """Connect the input: a SUB subscribed to everything, or a PULL.

    ``queue_size`` is the RCVHWM: ZMQ keeps at most that many messages for us besides the
    runner's own queue of the same size, so what waits stays close to the newest data.
    """
    if mode not in (SocketMode.SUB, SocketMode.PULL):
        raise ValueError(f"data mode must be SUB or PULL, got {str(mode)!r}")
    sock = context.socket(zmq.SUB if mode == SocketMode.SUB else zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, queue_size)
    if mode == SocketMode.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(url)
    return sock


def bind_output(
    context: zmq.Context[zmq.Socket[bytes]], url: str, mode: SocketMode, queue_size: int
) -> tuple[zmq.Socket[bytes], ClientMonitor, str]:
    """Bind the output (PUB or PUSH) with its client monitor; returns the bound URL too.

    Raises:
        zmq.ZMQError: the address cannot be bound (in use, bad interface).
    """
    if mode not in (SocketMode.PUB, SocketMode.PUSH):
        raise ValueError(f"output mode must be PUB or PUSH, got {str(mode)!r}")
    sock = context.socket(zmq.PUB if mode == SocketMode.PUB else zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, queue_size)
    monitor = ClientMonitor(sock)  # before bind, so no early client is missed
    try:
        sock.bind(url)
    except zmq.ZMQError:
        monitor.close()
        sock.close()
        raise
    return sock, monitor, sock.getsockopt_string(zmq.LAST_ENDPOINT)


class ClientMonitor:
    """Counts the peers connected to a bound socket from its monitor events.

    Accepted connections are tracked by file descriptor, so a disconnect never counts twice;
    the listener closing forgets them all.
    """

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self._sock = sock
        self.socket = sock.get_monitor_socket(_MONITORED)
        """The monitor's PAIR socket: put it in a poller and call :meth:`update` when readable."""
        self._peers: set[int] = set()

    @property
    def clients(self) -> int:
        """Peers connected now."""
        return len(self._peers)

    def update(self) -> None:
        """Read the pending monitor events; never blocks."""
        while self.socket.poll(0):
            event = recv_monitor_message(self.socket)
            kind = event["event"]
            if kind == zmq.EVENT_ACCEPTED:
                self._peers.add(event["value"])
            elif kind == zmq.EVENT_DISCONNECTED:
                self._peers.discard(event["value"])
            elif kind == zmq.EVENT_CLOSED:
                self._peers.clear()

    def close(self) -> None:
        """Stop monitoring and close the monitor's socket."""
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.socket.close(linger=0)
