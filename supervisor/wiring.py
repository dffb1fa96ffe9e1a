"""Input wiring: where an instance reads its data, its sources created and started if needed.

An input names a URL, or an instance or registry entry (its source). A source that does not exist
yet is created from its registry entry as an on-demand instance (it stops when no reader is
left); a stopped one is started. Cycles (a -> b -> a) are refused with the chain quoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from .contract import ExtraInput, SocketMode
from .instance import Instance
from .nodeapi.errors import ConflictError, NotFoundError
from .nodeapi.models import InstanceState
from .nodeapi.specs import InputSpec
from .outputs import OutputStreams
from .registry import Registry
from .table import InstanceTable

__all__ = ["InputWiring", "Inputs"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Inputs:
    """What one run of an instance reads."""

    data_url: str | None = None
    data_mode: SocketMode = SocketMode.SUB
    gather: list[ExtraInput] = field(default_factory=list)  # the rest of a fan-in
    merge: list[ExtraInput] = field(default_factory=list)  # streams merged by pulse id


class InputWiring:
    """Resolves the inputs of the instances of one table."""

    def __init__(self, table: InstanceTable, registry: Registry, outputs: OutputStreams) -> None:
        self._table = table
        self._registry = registry
        self._outputs = outputs
        self._launching: list[str] = []  # instances whose inputs are being resolved: cycles

    def inputs(self, instance: Instance) -> Inputs:
        """The inputs of the next run of ``instance``; its sources are running afterwards.

        Raises:
            ConflictError: a cycle, a source that cannot start or has no output, or a spec that
                both gathers and merges.
        """
        spec = instance.spec
        self._launching.append(instance.name)
        try:
            if spec.merge and isinstance(spec.input, list):  # before any source is started
                raise ConflictError(
                    f"instance '{instance.name}' cannot both gather (a list as input) and merge"
                )
            data_url, data_mode, gather = self._data_input(instance)
            if spec.merge and data_url is None:
                raise ConflictError(
                    f"instance '{instance.name}' merges streams but has no input to merge them with"
                )
            merge = [ExtraInput(url=url, mode=mode) for url, mode in map(self._resolve, spec.merge)]
        finally:
            self._launching.pop()
        return Inputs(data_url, data_mode, gather, merge)

    def _data_input(self, instance: Instance) -> tuple[str | None, SocketMode, list[ExtraInput]]:
        """DATA's URL and mode, and the other inputs of a fan-in (a list as input)."""
        spec = instance.spec.input
        camera = instance.config.get("camera_name")
        if spec is None and isinstance(camera, str) and camera:
            spec = InputSpec(camera=camera)  # a CamServer pipeline config names its camera
        if spec is None:
            return None, SocketMode.SUB, []
        if isinstance(spec, list):
            (url, mode), *rest = map(self._resolve, spec)
            return url, mode, [ExtraInput(url=u, mode=m) for u, m in rest]
        return *self._resolve(spec), []

    def _resolve(self, spec: InputSpec) -> tuple[str, SocketMode]:
        """The URL and socket mode of one input, its source created and started if needed."""
        if spec.url is not None:
            return spec.url, spec.mode or SocketMode.SUB
        source = self._source(spec.source or "")
        if not self._outputs.assign(source) or source.stream_url is None:
            raise ConflictError(f"input '{source.name}' has no output stream to read")
        default = SocketMode.SUB if source.spec.output.mode == SocketMode.PUB else SocketMode.PULL
        return source.stream_url, spec.mode or default

    def _source(self, name: str) -> Instance:
        """The instance an input names, created from its registry entry and started if needed."""
        if name in self._launching:
            cycle = " -> ".join([*self._launching[self._launching.index(name) :], name])
            raise ConflictError(f"input cycle: {cycle}")
        source = self._table.find(name)
        if source is None:
            try:
                entry = self._registry.get(name)
            except NotFoundError:
                raise ConflictError(
                    f"input '{name}' is neither an instance nor a registry entry"
                ) from None
            if not entry.valid or entry.spec is None:
                raise ConflictError(f"input '{name}': entry '{name}' is invalid: {entry.error}")
            source = self._table.add_on_demand(name, entry.spec)  # stops when no reader is left
            log.info("source_created", instance=name)
        if source.desired != "running":
            log.info("source_started", instance=name, reader=self._launching[-1])
            source.spec = self._table.spec_for(name)
            source.start()  # its own input is resolved here, with the cycle check
            if source.state == InstanceState.FAILED:
                raise ConflictError(f"input '{name}' did not start: {source.reason}")
        return source
