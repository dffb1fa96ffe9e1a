"""Output streams of a node's instances: their ports and the URLs programs bind and clients use."""

from __future__ import annotations

from .contract import SocketMode
from .instance import Instance
from .nodeapi.errors import ConflictError
from .ports import PortAllocator

__all__ = ["OutputStreams"]


class OutputStreams:
    """Hands each instance with an output its port, kept across restarts (clients reconnect to
    the same address), and says where the program binds and where the node itself reads it."""

    def __init__(self, ports: PortAllocator, stream_host: str, public_host: str) -> None:
        self._ports = ports
        self._stream_host = stream_host
        self._public_host = public_host

    def assign(self, instance: Instance) -> bool:
        """Give ``instance`` its output port and stream URL; False when it has no output."""
        if not instance.spec.output.enabled:
            return False
        if instance.output_port is None:
            instance.output_port = self._ports.acquire(instance.name, instance.spec.output.port)
            instance.stream_url = f"tcp://{self._public_host}:{instance.output_port}"
        return True

    def bind_url(self, instance: Instance) -> str | None:
        """The OUTPUT URL the program binds, None when it has no output."""
        if not self.assign(instance):
            return None
        host = self._stream_host
        bind_host = "*" if host in ("*", "0.0.0.0") else host
        return f"tcp://{bind_host}:{instance.output_port}"

    def tap_url(self, instance: Instance, purpose: str) -> str:
        """Where the node itself reads the PUB output of ``instance`` (to ``purpose`` it).

        Raises:
            ConflictError: it has no PUB output (reading a PUSH would steal its frames).
        """
        if not self.assign(instance) or instance.spec.output.mode != SocketMode.PUB:
            raise ConflictError(
                f"instance '{instance.name}' has no PUB output to {purpose} (reading a PUSH "
                "stream would take its frames from the pipelines)"
            )
        host = self._stream_host
        return f"tcp://{'127.0.0.1' if host in ('*', '0.0.0.0') else host}:{instance.output_port}"

    def release(self, instance: Instance) -> None:
        """The instance is gone: its port may go to another."""
        self._ports.release(instance.output_port)
