"""Instances: create, inspect, start, stop, restart, delete, and their configuration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response, status

from ..nodeapi import NodeAPI
from ..nodeapi.models import ConfigResult, CreateInstance, InstanceInfo
from .body import JSONBodyRoute
from .deps import get_node

__all__ = ["router"]

router = APIRouter(prefix="/instances", tags=["instances"], route_class=JSONBodyRoute)

Sup = Annotated[NodeAPI, Depends(get_node)]


@router.get("", response_model=list[InstanceInfo])
async def list_instances(sup: Sup) -> Response:
    """Every instance of this node, with its state, process, stream and statistics."""
    # Pre-rendered per instance and cached until it changes: a monitoring page polling 200
    # instances must not cost a model round trip each time.
    return Response(content=await sup.list_instances_json(), media_type="application/json")


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_instance(sup: Sup, req: CreateInstance) -> InstanceInfo:
    """Create an instance of a registry entry (and start it, unless ``start`` is false).

    ``config`` is merged into the entry's parameters (JSON merge patch). 409 if the name is
    taken, 404 if the entry does not exist, 422 if the entry is invalid.
    """
    return await sup.create_instance(req)


@router.get("/{name}")
async def get_instance(sup: Sup, name: str) -> InstanceInfo:
    """One instance in detail."""
    return await sup.get_instance(name)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_instance(sup: Sup, name: str) -> Response:
    """Stop the instance (SIGTERM, then SIGKILL after its grace period) and forget it."""
    await sup.delete_instance(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/start")
async def start_instance(sup: Sup, name: str) -> InstanceInfo:
    """Start the instance; 409 if its entry is invalid."""
    return await sup.start_instance(name)


@router.post("/{name}/stop")
async def stop_instance(sup: Sup, name: str) -> InstanceInfo:
    """Stop the instance and wait until its process has exited."""
    return await sup.stop_instance(name)


@router.post("/{name}/restart")
async def restart_instance(sup: Sup, name: str) -> InstanceInfo:
    """Stop the instance, then start it again."""
    return await sup.restart_instance(name)


@router.get("/{name}/config")
async def get_config(sup: Sup, name: str) -> dict[str, Any]:
    """The configuration now in force."""
    return await sup.get_config(name)


@router.patch("/{name}/config")
async def update_config(
    sup: Sup,
    name: str,
    patch: Annotated[
        dict[str, Any],
        Body(
            description="JSON merge patch (RFC 7386): keys to set; null deletes a key; nested "
            "objects merge key by key.",
            media_type="application/merge-patch+json",
        ),
    ],
) -> ConfigResult:
    """Change part of the configuration; a running program gets it live.

    422 quotes the program's refusal; 409 while the instance is stopping.
    """
    return await sup.update_config(name, patch)


@router.put("/{name}/config")
async def set_config(
    sup: Sup,
    name: str,
    config: Annotated[dict[str, Any], Body(description="The whole new configuration.")],
) -> ConfigResult:
    """Replace the whole configuration; a running program gets it live."""
    return await sup.set_config(name, config)
