"""h5_writer: a stream written to HDF5 in SwissFEL's layout, with a live viewer port.

Registry entries run it with ``"builtin": "h5_writer"``; it sends nothing on OUTPUT, so give
the entry ``"output": {"enabled": false}``::

    {"builtin": "h5_writer", "input": {"camera": "simcam"}, "output": {"enabled": false},
     "parameters": {"output_file": "simcam/run_0001.h5", "general": {"user": "p12345"},
                    "live_port": 9999}}

Every message becomes a row of sf_bsread_writer's layout (``/data/<channel>/data``,
``pulse_id``, ``is_data_present``, ``/general/...``; see ``builtin_pipelines.lib.h5writer``);
images are compressed with bitshuffle LZ4 (HDF5 filter 32008: read them with h5py after
``import hdf5plugin``). The file is crash-safe from its first flush: after a SIGKILL, open it
with ``h5py.File(path, "r", swmr=True)`` or run ``h5clear -s`` on it first.

=====================  ================  ==================================================
key                    default           meaning
=====================  ================  ==================================================
output_file            (required)        the file; a relative path is in the data folder
                                         (``$PIPEVISOR_DATA_DIR``, else
                                         ``~/.local/share/pipevisor/data``) and may not
                                         leave it; folders are created
if_exists              "increment"       the file exists: write ``run_1.h5``, ``run_2.h5``...
                                         instead (a restarted writer never overwrites the
                                         file it crashed in), ``"overwrite"`` or ``"fail"``
general                {}                ``/general`` strings: ``created`` (default: when
                                         the file is created), ``instrument``, ``process``,
                                         ``user`` ("not given"), and any others
compression            "bitshuffle_lz4"  of images (2-D or more), or ``"none"``
compression_threads    2                 threads compressing images, a core each (0: inline)
chunk_rows             100               rows per chunk of scalar and string datasets
flush_rows             100               flush (make crash-safe) after this many rows...
flush_seconds          1.0               ... and at least this often while rows come
pulse_id_step          None              step of the source's pulse ids: the close log
                                         counts the ones missing between first and last
live_port              None              bind a live viewer port (MAX IV streaming-receiver
                                         format: ``builtin_pipelines.lib.h5writer.live``)
live_host              "127.0.0.1"       its interface (``"*"``: all)
live_every             1                 send one image in N
live_channel           "image"           the image channel it sends
live_queue             4                 images queued per viewer before dropping
=====================  ================  ==================================================

The file is opened by the first message. A live update of a file key closes the file at once
(its summary is logged) and the next message opens a new one: a new ``output_file`` starts a
new acquisition. Live-port keys rebind the port; a port that cannot be bound refuses the
configuration (a 422 over REST; at start, the instance fails saying why). The file is closed
when the program ends (the supervisor's SIGTERM). The writer keeps its state in the
parameters dict under ``_pipevisor_h5_writer``, as beam_metrics does.

The runner's input queue is deep here (``RUNNER_DEFAULTS``: ``queue_size`` 200, where other
pipelines keep 4 and drop the oldest, as a viewer wants): a writer that lags for a moment (a
flush, a slow disk) catches up and loses nothing. That is 2 s at 100 Hz, and as many messages
may wait in ZMQ besides: with 11 MB frames, give a smaller ``queue_size`` on a node short of
memory. The config's ``queue_size`` overrides it.

Its ``report`` (``GET /api/v1/instances/NAME``, ``report``) says what it is writing: the open
``file`` (null before the first message, and between a file key's change and the next
message), its ``rows``, ``first_pulse_id`` and ``last_pulse_id``, ``missing_pulses`` (pulse
ids at ``pulse_id_step`` between the lowest and the highest written that no row has; null
without a step), ``late`` (rows whose pulse id is not above every one before: written as
they came, counted),
``files_closed``, the ``last_closed`` file's summary, and ``not_written`` (messages refused
with an error, e.g. a value bsread cannot carry; the runner counts them as errors too). The
runner's own ``drops`` (input it had no room for) are in the instance's ``stats``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import zmq

from .lib.h5writer import COMPRESSIONS, SwissFelFile, WriteProgress, WrittenFrame
from .lib.h5writer.live import LivePort

__all__ = ["RUNNER_DEFAULTS", "configure", "process", "report", "resolve_output"]

log = logging.getLogger(__name__)

STATE_KEY = "_pipevisor_h5_writer"
DATA_DIR_VAR = "PIPEVISOR_DATA_DIR"
IF_EXISTS = ("increment", "overwrite", "fail")
_MAX_INCREMENT = 10_000

RUNNER_DEFAULTS = {"queue_size": 200}
"""The runner's options as a writer wants them: a deep input queue (see above)."""


@dataclass(frozen=True, slots=True)
class FileSettings:
    """How the next file is written."""

    path: Path
    if_exists: str
    general: tuple[tuple[str, str], ...]
    compression: str
    threads: int
    chunk_rows: int
    flush_rows: int
    flush_seconds: float
    pulse_id_step: int | None


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """The live viewer port (``port`` None: none)."""

    port: int | None
    host: str
    every: int
    channel: str
    queue: int


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where relative output files go: ``$PIPEVISOR_DATA_DIR``, else the user's data folder."""
    if path := environ.get(DATA_DIR_VAR):
        return Path(path)
    home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(home) / "pipevisor" / "data"


def resolve_output(value: Any, environ: Mapping[str, str] = os.environ) -> Path:
    """The file ``output_file`` names: absolute as given, relative inside the data folder.

    Raises:
        ValueError: Not a path, or a relative path leaving the data folder (``..``, a link).
    """
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError(f"output_file must be a file path, got {value!r}")
    path = Path(value)
    if path.is_absolute():
        return path
    root = data_dir(environ).resolve()
    resolved = (root / path).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise ValueError(f"output_file {value!r} leaves the data folder {str(root)!r}")
    return resolved


@overload
def _int(parameters: Mapping[str, Any], key: str, default: int, low: int) -> int: ...
@overload
def _int(parameters: Mapping[str, Any], key: str, default: None, low: int) -> int | None: ...
def _int(parameters: Mapping[str, Any], key: str, default: int | None, low: int) -> int | None:
    value = parameters.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    return value


def _choice(parameters: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = parameters.get(key)
    if value is None:
        return choices[0]
    if not isinstance(value, str) or value not in choices:  # JSON: only a str is in choices
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def parse(
    parameters: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> tuple[FileSettings, LiveSettings]:
    """The writer's settings from the parameters (``None`` means the default).

    Raises:
        ValueError: A key has a bad value; the message quotes the key and the value.
    """
    if parameters.get("output_file") is None:
        raise ValueError("output_file is required: the HDF5 file to write")
    general = parameters.get("general") or {}
    if not isinstance(general, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in general.items()
    ):
        raise ValueError(f"general must be an object of strings, got {general!r}")
    flush_seconds = parameters.get("flush_seconds", 1.0)
    if flush_seconds is None:
        flush_seconds = 1.0
    if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, int | float):
        raise ValueError(f"flush_seconds must be a number > 0, got {flush_seconds!r}")
    if not flush_seconds > 0:
        raise ValueError(f"flush_seconds must be a number > 0, got {flush_seconds!r}")
    host = parameters.get("live_host") or "127.0.0.1"
    channel = parameters.get("live_channel") or "image"
    for key, value in (("live_host", host), ("live_channel", channel)):
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
    live_port = _int(parameters, "live_port", None, 1)
    if live_port is not None and live_port > 65535:
        raise ValueError(f"live_port must be a TCP port (1-65535), got {live_port!r}")
    file = FileSettings(
        path=resolve_output(parameters.get("output_file"), environ),
        if_exists=_choice(parameters, "if_exists", IF_EXISTS),
        general=tuple(general.items()),
        compression=_choice(parameters, "compression", COMPRESSIONS),
        threads=_int(parameters, "compression_threads", 2, 0),
        chunk_rows=_int(parameters, "chunk_rows", 100, 1),
        flush_rows=_int(parameters, "flush_rows", 100, 1),
        flush_seconds=float(flush_seconds),
        pulse_id_step=_int(parameters, "pulse_id_step", None, 1),
    )
    live = LiveSettings(
        port=live_port,
        host=host,
        every=_int(parameters, "live_every", 1, 1),
        channel=channel,
        queue=_int(parameters, "live_queue", 4, 1),
    )
    return file, live


class _Writer:
    """What the pipeline keeps between messages: the open file and the live port."""

    def __init__(self) -> None:
        self.file: SwissFelFile | None = None
        self.file_settings: FileSettings | None = None  # of the next file (and the open one)
        self.live: LivePort | None = None
        self.live_settings: LiveSettings | None = None
        self.progress: WriteProgress | None = None  # of the open file
        self.files_closed = 0
        self.last_closed: dict[str, Any] | None = None
        self.not_written = 0
        atexit.register(self.close)  # the runner has no stop hook: close at interpreter exit

    def apply(self, file_settings: FileSettings, live_settings: LiveSettings) -> None:
        """Make these settings current: rebind the live port, end the file if they changed.

        Raises:
            ValueError: The live port cannot be bound; nothing was changed.
        """
        if live_settings != self.live_settings:
            self._open_live(live_settings)
        if self.file is not None and file_settings != self.file_settings:
            self.close_file()
        self.file_settings = file_settings

    def write(self, data: Mapping[str, Any], pulse_id: int) -> None:
        try:
            if self.file is None:
                assert self.file_settings is not None
                self._open_file(self.file_settings)
            assert self.file is not None
            self.file.write(pulse_id, data)
        except Exception:
            self.not_written += 1
            raise
        assert self.progress is not None
        self.progress.add(pulse_id)

    def report(self) -> dict[str, Any]:
        """The open file's progress and what was closed, for the instance's report."""
        progress = self.progress
        return {
            **(WriteProgress.nothing() if progress is None else progress.report()),
            "files_closed": self.files_closed,
            "last_closed": self.last_closed,
            "not_written": self.not_written,
        }

    def _open_file(self, settings: FileSettings) -> None:
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "compression": settings.compression,
            "chunk_rows": settings.chunk_rows,
            "flush_rows": settings.flush_rows,
            "flush_seconds": settings.flush_seconds,
            "threads": settings.threads,
            "overwrite": settings.if_exists == "overwrite",
            "on_frame": self._frame,
        }
        path = settings.path
        for index in range(1, _MAX_INCREMENT):
            try:
                self.file = SwissFelFile(path, dict(settings.general), **options)
                break
            except FileExistsError:
                if settings.if_exists != "increment":
                    raise FileExistsError(
                        f"{str(path)!r} exists (if_exists: fail); choose another output_file"
                    ) from None
                path = settings.path.with_name(
                    f"{settings.path.stem}_{index}{settings.path.suffix}"
                )
        else:
            raise FileExistsError(f"{settings.path} and {_MAX_INCREMENT} numbered files exist")
        self.progress = WriteProgress(path, settings.pulse_id_step)
        log.info("writing %s", path)
        if self.live is not None:
            self.live.header(str(path))

    def _frame(self, frame: WrittenFrame) -> None:
        if self.live is not None:
            self.live.frame(frame)

    def _open_live(self, settings: LiveSettings) -> None:
        old, live = self.live_settings, self.live
        same_socket = old is not None and (settings.port, settings.host, settings.queue) == (
            old.port,
            old.host,
            old.queue,
        )
        if live is not None and same_socket:
            live.every, live.channel = settings.every, settings.channel
            self.live_settings = settings
            return
        new = None
        if settings.port is not None:
            try:
                new = LivePort(
                    settings.port,
                    settings.host,
                    every=settings.every,
                    channel=settings.channel,
                    queue=settings.queue,
                )
            except zmq.ZMQError as exc:
                raise ValueError(
                    f"live_port {settings.port}: cannot bind tcp://{settings.host}:"
                    f"{settings.port}: {exc}"
                ) from None
            log.info("live viewer port on %s", new.address)
        if live is not None:
            live.close()
        self.live, self.live_settings = new, settings
        if new is not None and self.file is not None:
            new.header(str(self.file.path))

    def close_file(self) -> None:
        """Close the file (logging its summary) and tell the viewers."""
        file, settings = self.file, self.file_settings
        if file is None or settings is None:
            return
        self.file = None
        progress, self.progress = self.progress, None
        summary = file.close(missing_step=settings.pulse_id_step)
        self.files_closed += 1
        self.last_closed = summary.report() | {"late": 0 if progress is None else progress.late}
        if self.live is not None:
            self.live.series_end()
        missing = ""
        if summary.missing_pulse_ids is not None:
            missing = f", {len(summary.missing_pulse_ids)} pulse ids missing"
        ratio = summary.compression_ratio
        log.info(
            "closed %s: %d rows, pulse ids %s..%s, %d channels, %d images%s%s%s",
            summary.path,
            summary.rows,
            summary.first_pulse_id,
            summary.last_pulse_id,
            len(summary.channels),
            summary.frames,
            f" (compressed {ratio:.2f}x)" if ratio else "",
            missing,
            f"; live port: {self.live.sent} sent, {self.live.dropped} dropped"
            if self.live is not None
            else "",
        )

    def close(self) -> None:
        """Close the file and the live port; never raises (it runs at interpreter exit)."""
        root = logging.getLogger()
        stderr = None
        if not root.handlers:
            # At exit the runner has taken its LOG handler away; stderr still reaches the
            # instance's log (the supervisor reads it), so the file's summary is not lost.
            stderr = logging.StreamHandler(sys.stderr)
            stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            root.addHandler(stderr)
        try:
            self.close_file()
        except Exception:
            log.exception("closing the HDF5 file failed")
        finally:
            if self.live is not None:
                self.live.close()
                self.live = None
            atexit.unregister(self.close)
            if stderr is not None:
                root.removeHandler(stderr)


def _writer(parameters: dict[str, Any]) -> _Writer:
    state = parameters.get(STATE_KEY)
    if not isinstance(state, _Writer):
        state = parameters[STATE_KEY] = _Writer()
    return state


def configure(parameters: dict[str, Any]) -> None:
    """Check the writer's keys and apply them: bind the live port, end the file if they changed.

    The runner calls this last, once its own options are accepted, so what passes here is the
    configuration in force.

    Raises:
        ValueError: A key has a bad value (the message quotes the key and the value), or the
            live port cannot be bound.
    """
    settings = parse(parameters)
    if parameters.get("parallel") not in (None, "none"):
        raise ValueError(
            f"parallel={parameters['parallel']!r}: h5_writer writes one file, one message after "
            "the other; run it without parallel"
        )
    _writer(parameters).apply(*settings)


def process(
    data: dict[str, Any],
    pulse_id: int,
    timestamp: tuple[int, int] | None,
    parameters: dict[str, Any],
) -> None:
    """Write the message as the next row of the file (opened by the first message)."""
    writer = _writer(parameters)
    if writer.file_settings is None:  # called without configure (not by the runner)
        configure(parameters)
    writer.write(data, pulse_id)


def report(parameters: dict[str, Any]) -> dict[str, Any]:
    """What is being written and what was: the instance's ``report`` in the API."""
    return _writer(parameters).report()
