"""Every message on, as it came: a fan-out or a fan-in, or a stream re-published elsewhere.

Run it with ``python -m runners.python --builtin passthrough``. Its uses:

- **Fan-in**: an entry whose ``input`` is a list of worker instances
  (``"input": ["worker1", "worker2"]``) gathers their outputs; the runner puts the pulses
  back in pulse-id order (its ``gather_wait`` and ``gather_buffer`` options), and this passes
  them on, one output for the whole set of workers.
- **Fan-out**: with ``"output": {"mode": "PUSH"}`` it deals a PUB stream round-robin to the
  workers that read it (their input follows the PUSH: PULL). A camera whose own output is
  PUSH does the same without the extra hop, but then serves no other reader.

Channels, values, pulse id and timestamp go out unchanged. No parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def process(
    data: Mapping[str, Any], pulse_id: int, timestamp: Any, parameters: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The message's channels, unchanged."""
    return data
