"""The models of the node API: what a node (or a manager) shows of itself and what it takes.

Response models are built from live state on demand; ``CreateInstance`` is a request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from annotated_types import Len
from pydantic import ConfigDict, Field, StrictBool

from ..contract import StrictModel
from .specs import EntrySpec, InputSpec, OutputSpec, RestartPolicy

__all__ = [
    "BackgroundInfo",
    "ConfigResult",
    "CreateInstance",
    "Entry",
    "EntryKind",
    "InstanceInfo",
    "InstanceState",
    "InstanceStats",
    "LogEntry",
    "LogStats",
    "NodeResources",
    "Preview",
    "RegistryChanges",
    "RegistryFile",
    "ResourceStats",
]


class InstanceState(StrEnum):
    """Lifecycle state of an instance."""

    STARTING = (
        "starting"  # spawned, not yet ready (no Ready; one that never said hello: start_seconds)
    )
    RUNNING = "running"
    STOPPING = "stopping"  # SIGTERM sent, waiting for the exit (SIGKILL after the grace period)
    STOPPED = "stopped"
    BACKOFF = "backoff"  # exited, waiting to be restarted
    FAILED = "failed"  # exited and will not be restarted (policy, or crash loop)


class InstanceStats(StrictModel):
    """The program's last Status message, with rates over the last interval."""

    messages_in: int = Field(0, description="Messages received on DATA since the program started.")
    bytes_in: int = Field(0, description="Bytes received on DATA.")
    messages_out: int = Field(0, description="Messages sent on OUTPUT.")
    bytes_out: int = Field(0, description="Bytes sent on OUTPUT.")
    drops: int = Field(0, description="Input messages skipped because processing lagged.")
    output_drops: int = Field(0, description="Output messages no peer could take.")
    errors: int = Field(0, description="Messages whose processing raised.")
    malformed: int = Field(0, description="Undecodable input messages.")
    log_drops: int = Field(0, description="Log records the program could not send.")
    processing_time_avg: float = Field(0.0, description="Mean processing time, s.")
    processing_time_max: float = Field(0.0, description="Longest processing time, s.")
    clients: int | None = Field(None, description="Peers connected to the output.")
    last_pulse_id: int | None = Field(None, description="Last pulse id handled.")
    last_error: str | None = Field(None, description="The program's last processing error.")
    counters: dict[str, float] = Field(
        default_factory=dict, description="The program's own counters and gauges, by name."
    )
    rate_in: float = Field(0.0, description="Input messages per second.")
    rate_out: float = Field(0.0, description="Output messages per second.")
    byte_rate_in: float = Field(0.0, description="Input bytes per second.")
    byte_rate_out: float = Field(0.0, description="Output bytes per second.")
    updated: float | None = Field(None, description="Unix time of the last Status message.")
    last_input_at: float | None = Field(
        None, description="Unix time input was last seen moving (messages_in grew)."
    )
    last_output_at: float | None = Field(
        None, description="Unix time output was last seen moving (messages_out grew)."
    )


class ResourceStats(StrictModel):
    """What the instance's process tree costs, sampled by the supervisor (psutil)."""

    sampled_at: float | None = Field(None, description="Unix time of the sample; None: never.")
    processes: int = Field(0, description="Processes in the tree (the program and its children).")
    cpu_percent: float = Field(0.0, description="CPU since the previous sample, % of one core.")
    rss_bytes: int = Field(0, description="Resident memory of the tree, bytes.")
    threads: int = Field(0, description="Threads of the tree.")
    fds: int = Field(0, description="Open file descriptors of the tree.")


class NodeResources(StrictModel):
    """The machine the supervisor runs on, sampled with psutil."""

    sampled_at: float = Field(description="Unix time of the sample.")
    cpu_percent: float = Field(description="CPU of the whole machine since the previous sample, %.")
    cpu_count: int = Field(description="Logical CPUs.")
    load: list[float] = Field(description="Load average over 1, 5 and 15 minutes.")
    memory_total: int = Field(description="Bytes of memory.")
    memory_available: int = Field(description="Bytes available without swapping.")
    memory_percent: float = Field(description="Memory in use, %.")
    net_rx_bytes_per_s: float = Field(description="Received over all interfaces, bytes/s.")
    net_tx_bytes_per_s: float = Field(description="Sent over all interfaces, bytes/s.")
    link_rx_bytes_per_s: float = Field(
        0.0, description="Received over the links (loopback left out), bytes/s."
    )
    link_tx_bytes_per_s: float = Field(
        0.0, description="Sent over the links (loopback left out), bytes/s."
    )
    net_rx_bytes: int = Field(description="Received since boot, bytes.")
    net_tx_bytes: int = Field(description="Sent since boot, bytes.")


class LogStats(StrictModel):
    """Counters of the instance's log ring."""

    received: int = Field(0, description="Lines and records seen.")
    stored: int = Field(0, description="Entries stored in the ring.")
    dropped: int = Field(0, description="Lines dropped by the rate limit.")
    evicted: int = Field(0, description="Entries pushed out of the ring by newer ones.")


class InstanceInfo(StrictModel):
    """One instance as the API shows it."""

    name: str = Field(description="Instance name.")
    entry: str = Field(description="Registry entry it runs.")
    node: str | None = Field(
        None, description="The cluster node that runs it (set by a manager; None on a node)."
    )
    state: InstanceState = Field(description="Lifecycle state.")
    desired: str = Field(description="'running' or 'stopped': what the supervisor steers towards.")
    reason: str = Field("", description="Why it is in this state, for a person.")
    pid: int | None = Field(None, description="Process id of the running program.")
    run: int = Field(0, description="Run number; increases at every start.")
    restarts: int = Field(0, description="Restarts since the instance was created or started.")
    exit_code: int | None = Field(None, description="Exit code of the last run (None if signal).")
    exit_signal: str | None = Field(None, description="Signal that ended the last run, if any.")
    started_at: float | None = Field(None, description="Unix time the current run started.")
    next_start_at: float | None = Field(None, description="In backoff: when it starts again.")
    ready: bool = Field(False, description="The program sent its Ready message.")
    speaks_contract: bool = Field(False, description="The program connected to CONFIG (hello).")
    stream: str | None = Field(None, description="URL of the output stream, for clients.")
    output_mode: str | None = Field(None, description="PUB or PUSH.")
    input: InputSpec | list[InputSpec] | None = Field(None, description="Where DATA comes from.")
    data_url: str | None = Field(None, description="Resolved DATA URL.")
    merge_urls: list[str] = Field(
        default_factory=list, description="Resolved URLs of the streams merged with DATA."
    )
    gather_urls: list[str] = Field(
        default_factory=list,
        description="A fan-in: resolved URLs of the inputs read besides DATA (data_url).",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Current configuration.")
    config_seq: int = Field(0, description="Sequence number of the current configuration.")
    config_pending_restart: bool = Field(
        False,
        description="The config changed but the program does not speak the config channel: "
        "it applies at the next restart.",
    )
    restart_policy: RestartPolicy = Field(description="Restart policy.")
    stats: InstanceStats = Field(default_factory=InstanceStats, description="Program status.")
    resources: ResourceStats = Field(
        default_factory=ResourceStats, description="CPU, memory, threads and descriptors."
    )
    stalled: bool = Field(
        False,
        description="Input flows but the output has not moved for the entry's stall_timeout.",
    )
    unresponsive: bool = Field(
        False,
        description="The program's status heartbeat is silent (none for 1.5 status intervals): "
        "frozen (SIGSTOP), blocked or busy in one call; its rates show 0 until it answers.",
    )
    permanent: bool = Field(
        False, description="Starts with the supervisor and always runs (registry or REST)."
    )
    on_demand: bool = Field(
        False, description="Started for a client or a reader; stops when none is left."
    )
    idle_since: float | None = Field(
        None, description="On demand: Unix time the last client left (None: clients connected)."
    )
    stops_at: float | None = Field(
        None, description="On demand: Unix time it stops if no client connects before."
    )
    logs: LogStats = Field(default_factory=LogStats, description="Log counters.")
    report: dict[str, Any] = Field(
        default_factory=dict,
        description="The program's own state, as it last reported it (e.g. a buffer's "
        "acquisitions); kept across runs until the next report.",
    )


class CreateInstance(StrictModel):
    """Body of POST /api/v1/instances."""

    name: str = Field(description="Instance name.", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    entry: str = Field(description="Registry entry to run.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the entry's parameters (JSON merge patch)."
    )
    input: InputSpec | Annotated[list[InputSpec], Len(2, 16)] | None = Field(
        None, description="Override of the entry's input (a list: a fan-in)."
    )
    merge: list[InputSpec] | None = Field(
        None, max_length=8, description="Override of the entry's merged inputs ([] for none)."
    )
    output: OutputSpec | None = Field(None, description="Override of the entry's output.")
    restart: RestartPolicy | None = Field(None, description="Override of the restart policy.")
    start: StrictBool = Field(True, description="Start it right away.")
    permanent: StrictBool = Field(
        False,
        description="Start it with the supervisor and keep it running: restart policy "
        "'always' (unless 'restart' says otherwise), never stopped for lack of clients.",
    )


class ConfigResult(StrictModel):
    """Answer to a config change."""

    name: str = Field(description="Instance name.")
    config: dict[str, Any] = Field(description="The configuration now in force (or pending).")
    seq: int = Field(description="Its sequence number.")
    applied: str = Field(
        description="'live' (acknowledged by the program), 'next_start' (instance not running) "
        "or 'next_restart' (the program does not speak the config channel)."
    )


class BackgroundInfo(StrictModel):
    """What the API shows of one background."""

    id: str = Field(description="The background id: the file name without '.npy'.")
    camera: str | None = Field(
        None, description="The camera it was collected from, if its id says so."
    )
    created: float = Field(description="Unix time it was collected (from the id) or written.")
    shape: list[int] = Field(description="Array shape, numpy order: [height, width].")
    dtype: str = Field(description="Array dtype, e.g. 'uint16'.")
    size: int = Field(description="File size in bytes.")


@dataclass(slots=True)
class LogEntry:
    """One stored log line or record of an instance.

    ``source`` is "stdout", "stderr", "log" (the LOG channel) or "supervisor" (events the
    supervisor records for the instance). Pipe lines get level "info" from stdout and "warning"
    from stderr: stderr carries warnings and tracebacks more often than normal output, but not
    always errors.
    """

    seq: int
    time: float
    instance: str
    run: int
    source: str
    level: str
    message: str
    logger: str = ""
    fields: dict[str, Any] | None = None
    exc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict (the PUB and REST form)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "instance": self.instance,
            "run": self.run,
            "source": self.source,
            "level": self.level,
            "message": self.message,
            "logger": self.logger,
            "fields": self.fields,
            "exc": self.exc,
        }


@dataclass(frozen=True, slots=True)
class Preview:
    """One rendered preview.

    Attributes:
        png: The PNG file.
        pulse_id: The pulse id of the frame.
        shape: The frame's shape before the reduction, numpy order: (height, width).
        vmin: The value drawn with the colormap's first colour (lower values too).
        vmax: The value drawn with its last colour (higher values too).
        time: Unix time the frame was received.
        render_seconds: How long the reduction, mapping and encoding took.
    """

    png: bytes
    pulse_id: int
    shape: tuple[int, int]
    vmin: float
    vmax: float
    time: float
    render_seconds: float


class EntryKind(StrEnum):
    """What kind of file defines an entry."""

    EXECUTABLE = "executable"
    SCRIPT = "script"
    CONFIG = "config"
    EXTENSION = "extension"


class Entry(StrictModel):
    """A pipeline of the registry, valid or not."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Entry name: the file stem.")
    kind: EntryKind = Field(description="executable, script, config or extension.")
    filename: str = Field(description="The registry file that defines the entry.")
    valid: bool = Field(description="False when the entry cannot be started; see error.")
    error: str | None = Field(None, description="Why the entry is invalid, quoting the file.")
    modified: float = Field(
        description="Last modification of the entry's files (a config's JSON or its program), "
        "Unix seconds."
    )
    spec: EntrySpec | None = Field(
        None, description="The parsed JSON of a config; a default spec for a script or executable."
    )
    argv: list[str] | None = Field(None, description="The resolved command line; None if invalid.")
    description: str = Field("", description="One line for people.")


class RegistryChanges(StrictModel):
    """Entry names that a scan found added, changed or removed; false when nothing changed."""

    model_config = ConfigDict(frozen=True)

    added: list[str] = Field(default_factory=list, description="New entry names.")
    changed: list[str] = Field(default_factory=list, description="Entries whose files changed.")
    removed: list[str] = Field(default_factory=list, description="Entry names that are gone.")

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class RegistryFile(StrictModel):
    """One registry file, as ``GET /api/v1/registry/files`` lists it."""

    filename: str = Field(description="File name in the registry.")
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="SHA-256 of the content, hex.")
    executable: bool = Field(description="It has an execute bit (a program).")
