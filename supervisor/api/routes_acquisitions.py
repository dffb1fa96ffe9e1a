"""Acquisitions of a buffer instance: exact pulse-id ranges written to files, over REST.

A thin edge over the instance's config: an acquisition is an entry of its ``acquisitions``
key, which the program (``pulse_buffer``, or any program that follows the same convention)
checks and acts on; its answer is the config's ack or refusal (422, quoting the program). What
each acquisition wrote comes back in the program's report.

Finished acquisitions do not pile up in the config: the program keeps the newest of them in
its report and lists the ids it pruned from the report in its ``pruned``; adding an
acquisition removes those from the config in the same patch (the config is the supervisor's,
so the edge edits it, not the program). DELETE of a finished one removes it at once.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Response, status
from pydantic import Field

from ..contract import StrictModel
from ..nodeapi import NodeAPI
from ..nodeapi.errors import ConflictError, NotFoundError
from ..nodeapi.models import InstanceInfo
from .body import JSONBodyRoute
from .deps import get_node

__all__ = ["AcquisitionRequest", "router"]

router = APIRouter(
    prefix="/instances/{name}/acquisitions", tags=["acquisitions"], route_class=JSONBodyRoute
)

Sup = Annotated[NodeAPI, Depends(get_node)]
PulseRef = Annotated[int, Field(ge=0)] | Literal["now"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AcquisitionRequest(StrictModel):
    """Body of POST .../acquisitions."""

    id: str | None = Field(None, pattern=_ID, description="Its id; default: made from the time.")
    start_pulse_id: PulseRef = Field(
        "now", description="First pulse written (inclusive), or 'now': the newest buffered."
    )
    stop_pulse_id: PulseRef | None = Field(
        None, description="Last pulse written (inclusive), 'now', or null: until a stop."
    )
    output_file: str = Field(description="The file; relative paths are in the data folder.")
    general: dict[str, str] = Field(
        default_factory=dict, description="/general metadata: user, process, instrument..."
    )
    compression: Literal["bitshuffle_lz4", "none"] | None = Field(
        None, description="Of images; default: the buffer's."
    )


class StopRequest(StrictModel):
    """Body of POST .../acquisitions/{id}/stop."""

    stop_pulse_id: PulseRef = Field("now", description="Last pulse written, or 'now'.")


def _pruned(report: dict[str, Any]) -> set[str]:
    """Ids the program pruned from its report (finished long ago) that the config still has."""
    pruned = report.get("pruned")
    return {str(key) for key in pruned} if isinstance(pruned, list) else set()


async def _acquisitions(sup: NodeAPI, name: str) -> dict[str, Any]:
    """Every acquisition of the instance: as reported, or as requested if not reported yet."""
    return _merged(await sup.get_instance(name))


def _merged(info: InstanceInfo) -> dict[str, Any]:
    """The acquisitions of an instance's view (its config and its program's report)."""
    reported = info.report.get("acquisitions")
    reported = reported if isinstance(reported, dict) else {}
    requested = info.config.get("acquisitions")
    requested = requested if isinstance(requested, dict) else {}
    pruned = _pruned(info.report)
    merged: dict[str, Any] = {}
    for key, spec in requested.items():
        if key in pruned and key not in reported:
            continue  # finished, and pruned from the report by the program: not "requested"
        merged[key] = reported.get(key) or {"state": "requested", "requested": spec}
    for key, report in reported.items():
        merged.setdefault(key, report)
    return merged


@router.get("")
async def list_acquisitions(sup: Sup, name: str) -> dict[str, Any]:
    """The instance's acquisitions by id: state, range, pulses written, missing pulse ids."""
    return await _acquisitions(sup, name)


@router.get("/{acquisition}")
async def get_acquisition(sup: Sup, name: str, acquisition: str) -> dict[str, Any]:
    """One acquisition; 404 if the instance has none of that id."""
    found: dict[str, Any] | None = (await _acquisitions(sup, name)).get(acquisition)
    if found is None:
        raise NotFoundError(f"instance '{name}' has no acquisition '{acquisition}'")
    return found


@router.post("", status_code=status.HTTP_201_CREATED)
async def start_acquisition(sup: Sup, name: str, req: AcquisitionRequest) -> dict[str, Any]:
    """Write pulses ``start_pulse_id`` to ``stop_pulse_id`` (both inclusive) of the buffered
    stream to ``output_file``; past pulses come from the buffer. 409 if the id is taken, 422
    quoting the program if it refuses (a file that exists, a bad range). Finished
    acquisitions the program pruned from its report leave the config in the same patch."""
    acquisition = req.id or datetime.datetime.now().strftime("acq_%Y%m%d_%H%M%S_") + (
        secrets.token_hex(2)
    )
    info = await sup.get_instance(name)
    if acquisition in _merged(info):
        raise ConflictError(f"instance '{name}' already has an acquisition '{acquisition}'")
    spec = req.model_dump(exclude={"id"}, exclude_none=True, exclude_defaults=False)
    spec.setdefault("stop_pulse_id", None)
    configured = info.config.get("acquisitions")
    configured = configured if isinstance(configured, dict) else {}
    patch: dict[str, Any] = {old: None for old in sorted(_pruned(info.report)) if old in configured}
    patch[acquisition] = spec
    result = await sup.update_config(name, {"acquisitions": patch})
    return {
        "id": acquisition,
        "instance": name,
        "config_seq": result.seq,
        "applied": result.applied,
        "acquisition": (await _acquisitions(sup, name)).get(acquisition),
    }


@router.post("/{acquisition}/stop")
async def stop_acquisition(
    sup: Sup,
    name: str,
    acquisition: str,
    req: Annotated[StopRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Stop at a pulse id, or at the newest buffered ('now', the default)."""
    if acquisition not in ((await sup.get_config(name)).get("acquisitions") or {}):
        raise NotFoundError(f"instance '{name}' has no acquisition '{acquisition}'")
    stop = (req or StopRequest()).stop_pulse_id
    await sup.update_config(name, {"acquisitions": {acquisition: {"stop_pulse_id": stop}}})
    stopped: dict[str, Any] = (await _acquisitions(sup, name))[acquisition]
    return stopped


@router.delete("/{acquisition}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_acquisition(sup: Sup, name: str, acquisition: str) -> Response:
    """Forget an acquisition; one still writing is aborted (its file keeps what it has, and
    the report shows it as aborted until it is pruned)."""
    if acquisition not in ((await sup.get_config(name)).get("acquisitions") or {}):
        raise NotFoundError(f"instance '{name}' has no acquisition '{acquisition}'")
    await sup.update_config(name, {"acquisitions": {acquisition: None}})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
