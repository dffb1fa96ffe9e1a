"""pulse_buffer: the last N messages of a stream, and acquisitions of exact pulse-id ranges.

sf_bsread_writer's buffer and writer in one permanent instance: it keeps the newest messages
of its input, and writes any pulse-id range to an HDF5 file on request, including pulses that
already passed if the buffer still holds them. Several acquisitions may run at once, and
overlap. Registry entry::

    {"builtin": "pulse_buffer", "input": {"camera": "simcam"}, "output": {"enabled": false},
     "permanent": true, "parameters": {"buffer_size": 1000, "pulse_id_step": 1}}

Acquisitions are asked for over REST (``POST /api/v1/instances/NAME/acquisitions``, which
adds them to this key of the config) and reported in the instance's ``report``:

====================  ================  ===================================================
key                   default           meaning
====================  ================  ===================================================
buffer_size           1000              messages kept, at most
buffer_bytes          2 GiB             bytes of values kept, at most (the newest message
                                        is always kept)
pulse_id_step         1                 the source's pulse-id step: missing pulses are
                                        counted in steps of it from the start
compression           "bitshuffle_lz4"  of images, unless an acquisition says otherwise
writer_backlog        buffer_size       messages an acquisition's writer may lag behind by;
                                        beyond, they are missing from its file (counted)
keep_finished         50                finished acquisitions (done, failed, aborted,
                                        skipped) the report keeps; older ones are pruned
acquisitions          {}                id -> ``{"start_pulse_id": P | "now",
                                        "stop_pulse_id": P | "now" | null,
                                        "output_file": "...", "general": {...},
                                        "compression": ...}``; both ends inclusive; a null
                                        stop waits for a stop; removing an id aborts it
====================  ================  ===================================================

A new acquisition whose file exists is refused (nothing is ever overwritten). When the
instance starts again with acquisitions in its config, those whose files exist are reported
``skipped``; the others start afresh. Relative files are in the data folder, as for
h5_writer. The buffer sends nothing on OUTPUT.

Finished acquisitions do not pile up. Removing one from the config (``DELETE
.../acquisitions/ID``) forgets it; removing one that is still writing aborts it, and it stays
in the report as ``aborted``. The report keeps the newest ``keep_finished`` finished ones (by
when they ended); older ones leave it, and those still in the config are listed in the
report's ``pruned``: the buffer never starts them again, and the REST edge removes them from
the config together with the next acquisition it adds (the config is the supervisor's).

The runner's input queue is deep here (``RUNNER_DEFAULTS``: ``queue_size`` 200, where other
pipelines keep 4 and drop the oldest): a moment's lag loses nothing. The config's
``queue_size`` overrides it.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Mapping
from typing import Any

from builtin_pipelines.h5_writer import resolve_output
from builtin_pipelines.lib.h5writer import SwissFelFile

from .acquisition import Acquisition, AcquisitionSpec, parse_spec
from .ring import PulseRing

__all__ = ["RUNNER_DEFAULTS", "configure", "process", "report"]

log = logging.getLogger("pipevisor.pulse_buffer")

_STATE = "_pipevisor_pulse_buffer"
_DEFAULT_BYTES = 2 * 1024**3
_KEEP_FINISHED = 50

RUNNER_DEFAULTS = {"queue_size": 200}
"""The runner's options as a buffer wants them: a deep input queue (see above)."""


def _positive(parameters: Mapping[str, Any], key: str, default: int) -> int:
    value = parameters.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def _count(parameters: Mapping[str, Any], key: str, default: int) -> int:
    value = parameters.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
    return value


def _open(spec: AcquisitionSpec) -> SwissFelFile:
    spec.output_file.parent.mkdir(parents=True, exist_ok=True)
    return SwissFelFile(spec.output_file, spec.general, compression=spec.compression)


class _Buffer:
    """The ring and the acquisitions of one instance (kept in its parameters dict)."""

    def __init__(self) -> None:
        self.ring: PulseRing | None = None
        self.acquisitions: dict[str, Acquisition] = {}
        self.specs: dict[str, AcquisitionSpec] = {}
        self.step = 1
        self.backlog = 1000
        self.keep_finished = _KEEP_FINISHED
        self.pruned: set[str] = set()  # left the report, still in the config
        self.configured = False

    def configure(self, parameters: dict[str, Any]) -> None:
        size = _positive(parameters, "buffer_size", 1000)
        nbytes = _positive(parameters, "buffer_bytes", _DEFAULT_BYTES)
        step = _positive(parameters, "pulse_id_step", 1)
        backlog = _positive(parameters, "writer_backlog", size)
        keep_finished = _count(parameters, "keep_finished", _KEEP_FINISHED)
        compression = parameters.get("compression", "bitshuffle_lz4")
        raw = parameters.get("acquisitions") or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"acquisitions must be an object of id -> acquisition, got {raw!r}")
        specs = {
            str(name): parse_spec(str(name), value, resolve_output, compression)
            for name, value in raw.items()
        }
        first = not self.configured
        for name, spec in specs.items():  # refuse before changing anything
            old = self.specs.get(name)
            if old is None and not first and spec.output_file.exists():
                raise ValueError(
                    f"acquisition {name!r}: {spec.output_file} exists; nothing is overwritten"
                )
            if old is not None and (old.start, old.output_file) != (spec.start, spec.output_file):
                raise ValueError(
                    f"acquisition {name!r}: only its stop_pulse_id may change; "
                    "start a new acquisition instead"
                )
        if self.ring is None:
            self.ring = PulseRing(size, nbytes)
        else:
            self.ring.resize(size, nbytes)
        self.step, self.backlog, self.keep_finished = step, backlog, keep_finished
        for name in set(self.specs) - set(specs):
            self._forget(name)
        for name, spec in specs.items():
            old = self.specs.get(name)
            if old is None:
                self._begin(name, spec, skip_existing=first)
            elif spec.stop != old.stop and spec.stop is not None and name not in self.pruned:
                self.acquisitions[name].request_stop(spec.stop, self.ring.newest)
            self.specs[name] = spec
        self.configured = True

    def _forget(self, name: str) -> None:
        """An acquisition removed from the config: abort it if it is writing (it stays in the
        report as aborted), else forget it."""
        del self.specs[name]
        self.pruned.discard(name)
        acquisition = self.acquisitions.get(name)
        if acquisition is None:
            return
        if acquisition.active:
            acquisition.abort("removed from the config")
        else:
            del self.acquisitions[name]

    def _prune(self) -> None:
        """Keep the newest ``keep_finished`` finished acquisitions in the report."""
        finished = [a for a in self.acquisitions.values() if not a.active]
        excess = len(finished) - self.keep_finished
        if excess <= 0:
            return
        finished.sort(key=lambda a: (a.ended_at or a.started_at, a.name))
        for acquisition in finished[:excess]:
            del self.acquisitions[acquisition.name]
            if acquisition.name in self.specs:
                self.pruned.add(acquisition.name)

    def _begin(self, name: str, spec: AcquisitionSpec, *, skip_existing: bool) -> None:
        ring = self.ring
        assert ring is not None
        if skip_existing and spec.output_file.exists():
            self.acquisitions[name] = Acquisition(
                name,
                spec,
                newest=None,
                past=(),
                step=self.step,
                open_file=_open,
                backlog=1,
                skip=f"{spec.output_file} exists (written by an earlier run)",
            )
            return
        newest = ring.newest
        start = newest if spec.start == "now" else spec.start
        stop = newest if spec.stop == "now" else spec.stop
        past = list(ring.between(start, stop)) if start is not None else []
        self.acquisitions[name] = Acquisition(
            name,
            spec,
            newest=newest,
            past=past,
            step=self.step,
            open_file=_open,
            backlog=max(self.backlog, len(past) + 1),
        )

    def process(self, data: Mapping[str, Any], pulse_id: int, timestamp: Any) -> None:
        assert self.ring is not None
        item = self.ring.append(pulse_id, timestamp, data)
        if item is None:
            return
        for acquisition in self.acquisitions.values():
            if acquisition.active:
                acquisition.offer(item)

    def report(self) -> dict[str, Any]:
        self._prune()
        ring = self.ring
        buffer = {}
        if ring is not None:
            buffer = {
                "messages": len(ring),
                "bytes": ring.nbytes,
                "oldest_pulse_id": ring.oldest,
                "newest_pulse_id": ring.newest,
                "received": ring.received,
                "evicted": ring.evicted,
                "out_of_order": ring.out_of_order,
            }
        return {
            "buffer": buffer,
            "acquisitions": {name: a.report() for name, a in self.acquisitions.items()},
            "pruned": sorted(self.pruned),
        }

    def close(self) -> None:
        for acquisition in self.acquisitions.values():
            acquisition.close(timeout=30)


def _buffer(parameters: dict[str, Any]) -> _Buffer:
    state = parameters.get(_STATE)
    if not isinstance(state, _Buffer):
        state = parameters[_STATE] = _Buffer()
        atexit.register(state.close)  # the supervisor's SIGTERM ends the runner's loop
    return state


def configure(parameters: dict[str, Any]) -> None:
    """Check the keys and start, stop or abort acquisitions; a bad one refuses the config."""
    _buffer(parameters).configure(parameters)


def process(
    data: Mapping[str, Any], pulse_id: int, timestamp: Any, parameters: dict[str, Any]
) -> None:
    """Keep the message, and hand it to the acquisitions that want it."""
    _buffer(parameters).process(data, pulse_id, timestamp)


def report(parameters: dict[str, Any]) -> dict[str, Any]:
    """The buffer and the acquisitions, for the instance's report in the API."""
    return _buffer(parameters).report()
