"""One call of the user's function away from the runner's loop, and what came of it.

Worker threads and worker processes call the function as the loop does (the same arguments,
the camera's channels split from its ``bsdata``) and hand an :class:`Outcome` back; the loop
counts and sends it in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .loader import UserCode

__all__ = ["CAMERA_CHANNELS", "ERROR_KEY", "Outcome", "invoke", "run"]

# A camera's own channels: the arguments of process_image; the others are its ``bsdata``.
CAMERA_CHANNELS = frozenset({"image", "x_axis", "y_axis", "timestamp", "width", "height"})
ERROR_KEY = "processing_error"  # CamServer's flag for a frame sent on despite an error


@dataclass(slots=True)
class Outcome:
    """What came of one message: its result (None: nothing to send) or the error it raised."""

    seq: int  # the runner's arrival number: outcomes are sent in this order
    pulse_id: int
    timestamp: Any
    result: Any = None
    seconds: float = 0.0  # in the user's function
    flagged: str | None = None  # parameters["processing_error"] after the call
    error: BaseException | None = None


def invoke(
    code: UserCode,
    data: dict[str, Any],
    pulse_id: int,
    timestamp: Any,
    parameters: dict[str, Any],
) -> Any:
    """Call the user's function on one message, as the runner's loop does."""
    if code.kind == "camera":
        bsdata = {k: v for k, v in data.items() if k not in CAMERA_CHANNELS}
        return code.function(
            data.get("image"),
            pulse_id,
            timestamp,
            data.get("x_axis"),
            data.get("y_axis"),
            parameters,
            bsdata,
        )
    return code.function(data, pulse_id, timestamp, parameters)


def run(
    code: UserCode,
    seq: int,
    pulse_id: int,
    timestamp: Any,
    data: dict[str, Any],
    parameters: dict[str, Any],
) -> Outcome:
    """Call the function, time it and catch what it raises (with its traceback)."""
    start = time.perf_counter()
    try:
        result = invoke(code, data, pulse_id, timestamp, parameters)
    except Exception as exc:
        return Outcome(seq, pulse_id, timestamp, seconds=time.perf_counter() - start, error=exc)
    seconds = time.perf_counter() - start
    flagged = parameters.get(ERROR_KEY)
    return Outcome(seq, pulse_id, timestamp, result, seconds, str(flagged) if flagged else None)
