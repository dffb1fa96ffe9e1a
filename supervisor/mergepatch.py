"""JSON merge patch (RFC 7386): how partial config updates combine with the current config."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["merge_patch"]


def merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` with ``patch`` applied; ``None`` in the patch deletes a key.

    Nested objects merge key by key (so a patch of ``{"roi": {"x": 10}}`` keeps the other ROI
    keys); anything else replaces. Neither argument is modified.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
