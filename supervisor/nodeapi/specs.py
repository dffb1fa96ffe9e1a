"""What an instance is made of: its program, parameters, input, output and restart policy.

A registry JSON entry is an ``EntrySpec``; instances are created from entries with overrides.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import Len
from pydantic import Field, StrictBool, model_validator

from ..contract import SocketMode, StrictModel

__all__ = [
    "MAX_SECONDS",
    "EntrySpec",
    "InputSpec",
    "OutputSpec",
    "RestartMode",
    "RestartPolicy",
]


MAX_SECONDS = 3600.0
"""Longest duration a spec accepts (a grace period, a backoff, a timeout): one hour."""

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
"""A duration in seconds, 0..3600, finite: a bigger one would leave a stop or a restart hanging."""


class RestartMode(StrEnum):
    """When a program that exited is started again."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class RestartPolicy(StrictModel):
    """Restart policy with exponential backoff and a crash-loop limit.

    The first restart after a stable run is immediate; each further exit within ``stable_after``
    seconds of its start doubles the delay, from ``backoff_initial`` up to ``backoff_max``. After
    ``max_restarts`` such quick exits in a row the instance is ``failed`` and is not restarted.
    """

    mode: RestartMode = Field(RestartMode.ON_FAILURE, description="never, on-failure or always.")
    backoff_initial: Seconds = Field(
        0.1, description="Delay before the 2nd quick restart, s (0..3600)."
    )
    backoff_max: Seconds = Field(30.0, description="Longest delay between restarts, s (0..3600).")
    backoff_factor: float = Field(
        2.0,
        ge=1,
        le=100,
        allow_inf_nan=False,
        description="Growth of the delay per quick exit, 1..100.",
    )
    stable_after: Seconds = Field(
        10.0,
        description="A run this long (s, 0..3600) resets the backoff and the crash-loop count.",
    )
    max_restarts: int = Field(
        10,
        ge=0,
        le=1_000_000,
        description="Quick exits in a row before the instance is failed (0: no limit).",
    )
    stop_grace: Seconds = Field(
        5.0, description="Seconds (0..3600) between SIGTERM and SIGKILL when stopping."
    )


class InputSpec(StrictModel):
    """Where DATA comes from: a camera, another instance's output, or an external stream.

    A camera or instance that does not exist yet is created from the registry entry of the
    same name, and a stopped one is started, when the instance reading it starts: one camera
    instance per camera, however many pipelines read it.
    """

    instance: str | None = Field(None, description="Name of the instance whose output to read.")
    camera: str | None = Field(
        None, description="Name of a camera: the instance of the camera-source entry of that name."
    )
    url: str | None = Field(None, description="External stream URL, e.g. tcp://host:9999.")
    mode: SocketMode | None = Field(
        None, description="SUB or PULL; default: follows the source instance (PUB->SUB), or SUB."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """Accept the shorthand ``"camera1"`` (an instance) or ``"tcp://host:port"`` (a URL)."""
        if isinstance(value, str):
            return {"url": value} if "://" in value else {"instance": value}
        return value

    @property
    def source(self) -> str | None:
        """The name of the source instance (of a camera or another pipeline), if any."""
        return self.instance or self.camera

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if sum(x is not None for x in (self.instance, self.camera, self.url)) != 1:
            raise ValueError("input needs exactly one of 'instance', 'camera' or 'url'")
        if self.mode not in (None, SocketMode.SUB, SocketMode.PULL):
            raise ValueError(f"input mode must be SUB or PULL, not {self.mode}")
        return self


class OutputSpec(StrictModel):
    """How the program publishes its output stream."""

    mode: Literal[SocketMode.PUB, SocketMode.PUSH] = Field(
        SocketMode.PUB, description="PUB (default, any number of viewers) or PUSH."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Fixed port; default: the next free one of the range."
    )
    enabled: StrictBool = Field(True, description="False for a program with no output stream.")


class EntrySpec(StrictModel):
    """A registry JSON entry: a program (or builtin) with its defaults."""

    description: str = Field("", description="One line for people.")
    program: str | None = Field(
        None, description="A file of the registry: a *.py script or an executable."
    )
    builtin: str | None = Field(None, description="A builtin pipeline, e.g. 'camera_simulation'.")
    args: list[str] = Field(default_factory=list, description="Extra command-line arguments.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Default configuration handed to the program."
    )
    input: InputSpec | Annotated[list[InputSpec], Len(2, 16)] | None = Field(
        None,
        description="The DATA stream; None for a source. A list is a fan-in: the outputs of "
        "several instances (workers fed by one PUSH) read as one input, put back in pulse-id "
        "order by the Python runner (its gather_* options).",
    )
    merge: list[InputSpec] = Field(
        default_factory=list,
        max_length=8,
        description="More streams aligned with DATA by pulse id (a camera and a bsread stream "
        "of scalars, say); resolved and started like 'input'. The Python runner delivers each "
        "pulse with the channels of every stream (see its merge_* options).",
    )
    output: OutputSpec = Field(default_factory=OutputSpec, description="The OUTPUT stream.")
    restart: RestartPolicy = Field(default_factory=RestartPolicy, description="Restart policy.")
    permanent: StrictBool = Field(
        False, description="Start an instance of the same name with the supervisor."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the program."
    )
    stall_timeout: Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)] | None = (
        Field(
            10.0,
            description="Seconds (0..3600) of output standing still while input flows before "
            "the instance is marked stalled (None: never).",
        )
    )
    restart_on_stall: StrictBool = Field(
        False, description="Restart a stalled instance (it is only marked and logged otherwise)."
    )
    start_timeout: Seconds = Field(
        60.0,
        description="A program that said hello but sends no ready message within this many "
        "seconds (0..3600) of its start has failed: it is stopped and restarted per its restart "
        "policy (0: wait for ever). A program that never says hello counts as running after "
        "the node's start_seconds.",
    )
    restart_on_unresponsive: StrictBool = Field(
        False,
        description="Restart (per the restart policy) an instance whose status heartbeat went "
        "silent; it is only marked unresponsive and logged otherwise.",
    )
    no_client_timeout: Seconds = Field(
        10.0,
        description="An on-demand instance stops after this many seconds (0..3600) without a "
        "connected client (0: never).",
    )

    @model_validator(mode="after")
    def _one_program(self) -> EntrySpec:
        if (self.program is None) == (self.builtin is None):
            raise ValueError("an entry needs exactly one of 'program' or 'builtin'")
        return self
