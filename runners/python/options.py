"""The runner's own options: keys of the instance's config, next to the user's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from supervisor.contract import StrictModel

__all__ = ["OptionError", "RunnerOptions"]

Compression = Literal["none", "bitshuffle_lz4"]
_MAX_WORKERS = 64


class OptionError(ValueError):
    """A runner option in the config is invalid; the message quotes the key and the value."""


class RunnerOptions(StrictModel):
    """Options the runner reads from the config; every other key is the user's."""

    # Attribute docstrings are the field descriptions; pydantic is left to the contract.
    model_config = StrictModel.model_config | {"use_attribute_docstrings": True}

    abort_on_error: bool = False
    """False: log the traceback, count it in ``errors`` and go on. True: exit with code 2."""
    output_compression: Compression = "none"
    """Compression of the output's data blobs: ``none`` or ``bitshuffle_lz4``."""
    output_header_compression: Compression = "none"
    """Compression of the output's data header: ``none`` or ``bitshuffle_lz4``."""
    queue_size: int = 4
    """Input messages that may wait, processed in order; when more have come, processing is
    slower than input and the oldest are dropped (counted). 1: only the newest is processed.
    Also the RCVHWM of DATA."""
    output_queue_size: int = 10
    """Output messages ZMQ may queue (SNDHWM of OUTPUT) before it drops (PUB) or refuses (PUSH)."""
    output_wait: float = 1.0
    """PUSH only: seconds to wait for a connected peer (a writer, a buffer) to take a message
    before dropping it; 0 never waits. With no peer connected nothing waits: never frozen."""

    merge_wait: float = 0.5
    """With merged inputs (the entry's ``merge``): seconds a pulse is held for a stream that
    has not delivered it yet, at most. A pulse is settled at once when every missing stream
    has moved past it."""
    merge_missing: Literal["drop", "deliver"] = "drop"
    """With merged inputs: an incomplete pulse is dropped (CamServer's rule), or delivered
    without the missing streams' channels. A camera pipeline never gets a pulse without its
    image."""
    merge_buffer: int = 200
    """With merged inputs: pulses held at most while waiting for their other parts; beyond it
    the oldest is settled at once (counted as ``merge_overflow``)."""

    gather_wait: float = 1.0
    """A fan-in (a list as input): seconds a pulse waits for a silent input (a worker that
    stopped or restarts) before it goes on without knowing whether that input had an earlier
    one; a pulse older than one gone on is dropped as late (``gather_late``)."""
    gather_buffer: int = 100
    """A fan-in: pulses held at most to put the inputs back in pulse-id order; beyond it the
    oldest goes on at once (``gather_overflow``)."""

    parallel: Literal["none", "threads", "processes"] = "none"
    """Call the function on ``workers`` messages at once: ``threads`` (I/O-bound code, or code
    that releases the GIL), ``processes`` (CPU-bound Python; big arrays go through shared
    memory), or ``none``. The output stays in input order. A live change restarts the workers
    (the messages in flight are finished first)."""
    workers: int = 2
    """With ``parallel``: how many threads or processes call the function (1 to 64)."""
    reorder_buffer: int | None = None
    """With ``parallel``: results held at most while an earlier message is still being
    processed; beyond it that one is given up (counted in ``drops``) and its result discarded
    when it comes. None: ``2 * workers + 2``."""

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> RunnerOptions:
        """Validate the runner's keys of ``config``; ``None`` means the default (CamServer's rule).

        Args:
            config: The instance's configuration (the user's keys are ignored here).
            defaults: The user code's own defaults for runner options (its
                ``RUNNER_DEFAULTS``, e.g. a writer's deep ``queue_size``), used where
                ``config`` leaves a key out or null.

        Raises:
            OptionError: a runner option is invalid.
        """
        own: dict[str, Any] = {}
        for source in (defaults or {}, config):  # the config's keys win
            own.update(
                {key: source[key] for key in cls.model_fields if source.get(key) is not None}
            )
        try:
            options = cls.model_validate(own)
        except ValueError as exc:  # pydantic's ValidationError
            errors = getattr(exc, "errors", None)
            if errors is None:
                raise OptionError(str(exc)) from exc
            reasons = (
                f"invalid runner option {key}={own.get(key)!r}: {err['msg']}"
                for err in errors()
                for key in err["loc"][:1]
            )
            raise OptionError("; ".join(reasons)) from exc
        for key in ("queue_size", "output_queue_size", "merge_buffer", "gather_buffer"):
            if getattr(options, key) < 1:
                raise OptionError(f"invalid runner option {key}={own[key]!r}: must be at least 1")
        for key in ("merge_wait", "gather_wait"):
            if getattr(options, key) < 0:
                raise OptionError(f"invalid runner option {key}={own[key]!r}: must be >= 0")
        if not 1 <= options.workers <= _MAX_WORKERS:
            raise OptionError(
                f"invalid runner option workers={own['workers']!r}: must be 1 to {_MAX_WORKERS}"
            )
        if options.reorder_buffer is not None and options.reorder_buffer < 1:
            raise OptionError(
                f"invalid runner option reorder_buffer={own['reorder_buffer']!r}: "
                "must be at least 1"
            )
        if options.output_wait < 0:
            raise OptionError(
                f"invalid runner option output_wait={own['output_wait']!r}: must be >= 0"
            )
        return options
