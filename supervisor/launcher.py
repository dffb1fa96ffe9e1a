"""Launching one run of an instance: its entry's command line, its wiring, the contract, a spawn."""

from __future__ import annotations

from pathlib import Path

import structlog

from .contract import ContractEnv
from .control import ControlServer
from .instance import Instance
from .loghub import LogHub
from .nodeapi.errors import ConflictError
from .outputs import OutputStreams
from .process import ProgramProcess
from .registry import Registry
from .spawner import Spawner
from .wiring import InputWiring

__all__ = ["Launcher"]

log = structlog.get_logger(__name__)


class Launcher:
    """Builds each run's environment (the four URLs, name, config) and hands it to the spawner.

    Instances call ``launch`` for every run (the first and each restart) and ``exited`` when a
    run ended; it never calls back into the node.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        spawner: Spawner,
        wiring: InputWiring,
        outputs: OutputStreams,
        control: ControlServer,
        loghub: LogHub,
        status_interval: float,
        backgrounds: Path,
    ) -> None:
        self._registry = registry
        self._spawner = spawner
        self._wiring = wiring
        self._outputs = outputs
        self._control = control
        self._loghub = loghub
        self._status_interval = status_interval
        self._backgrounds = backgrounds
        self.closing = False  # set first by the node's shutdown: nothing is spawned any more

    def launch(self, instance: Instance) -> ProgramProcess:
        """Spawn the next run of ``instance``.

        Raises:
            ConflictError: the node is shutting down, its entry is invalid, or its inputs
                cannot be wired.
        """
        if self.closing:  # before wiring, which may start the source it reads
            raise ConflictError("not started: the node is shutting down")
        entry = self._registry.get(instance.entry)
        if not entry.valid or entry.argv is None:
            raise ConflictError(f"entry '{entry.name}' is invalid: {entry.error}")
        spec = instance.spec
        output_url = self._outputs.bind_url(instance)
        instance.output_url = output_url
        inputs = self._wiring.inputs(instance)
        instance.data_url = inputs.data_url
        instance.merge_urls = [m.url for m in inputs.merge]
        instance.gather_urls = [g.url for g in inputs.gather]
        contract = ContractEnv(
            instance=instance.name,
            run=instance.run,
            config=instance.config,
            data_url=inputs.data_url,
            data_mode=inputs.data_mode,
            merge=inputs.merge,
            gather=inputs.gather,
            output_url=output_url,
            output_mode=spec.output.mode,
            config_url=self._control.url,
            log_url=self._loghub.log_url,
            status_interval=self._status_interval,
            backgrounds=str(self._backgrounds),
        )
        process = self._spawner.spawn(instance, entry.argv, contract, spec.env)
        log.info(
            "instance_launched",
            instance=instance.name,
            pid=process.pid,
            run=instance.run,
            argv=entry.argv[-1],
            output=output_url,
            data=inputs.data_url,
        )
        return process

    def exited(self, instance: Instance, process: ProgramProcess) -> None:
        """A run ended: the spawner forgets its group and looks for escaped processes."""
        self._spawner.exited(instance, process)

    def record(self, instance: Instance, level: str, message: str) -> None:
        """A supervisor event into the instance's log."""
        self._loghub.add(instance.name, instance.run, "supervisor", message, level=level)
