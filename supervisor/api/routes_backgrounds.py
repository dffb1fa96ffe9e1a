"""Background images: collected from a camera instance, uploaded, listed, fetched, deleted.

An upload is a numpy ``.npy`` file (``numpy.save``), read with ``allow_pickle=False``: nothing
is ever unpickled from a request (CamServer's ``image_bytes`` upload unpickles its body).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..nodeapi import NodeAPI
from ..nodeapi.models import BackgroundInfo
from .body import RAW_BODY, read_limited
from .deps import get_node

__all__ = ["router"]

router = APIRouter(tags=["backgrounds"])

Sup = Annotated[NodeAPI, Depends(get_node)]

_NPY: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The .npy file."}
}


@router.post(
    "/instances/{name}/backgrounds",
    status_code=status.HTTP_201_CREATED,
)
async def collect_background(
    sup: Sup,
    name: str,
    n_images: Annotated[int, Query(ge=1, le=1000, description="Images to average.")] = 10,
    timeout: Annotated[
        float | None,
        Query(gt=0, le=600, description="Seconds to wait for them (default 10 + n_images)."),
    ] = None,
) -> BackgroundInfo:
    """Average the next ``n_images`` images of a running camera instance into a new background.

    Its id is ``<name>_YYYYMMDD_HHMMSS_ffffff``. Integer images are averaged in 64 bits and
    truncated to the camera's dtype (CamServer's rule). 409 if the instance is not running, has
    no PUB output, or sends too few images in time.
    """
    return await sup.collect_background(name, n_images, timeout)


@router.get("/instances/{name}/backgrounds/latest")
async def latest_background(sup: Sup, name: str) -> BackgroundInfo:
    """The newest background collected from camera ``name`` (404 if it has none)."""
    return await sup.latest_background(name)


@router.get("/backgrounds")
async def list_backgrounds(
    sup: Sup,
    camera: Annotated[
        str | None, Query(description="Only the backgrounds collected from this camera.")
    ] = None,
) -> list[BackgroundInfo]:
    """Every background of this node, sorted by id (oldest first for one camera)."""
    return await sup.list_backgrounds(camera)


@router.get("/backgrounds/{background}")
async def get_background(sup: Sup, background: str) -> BackgroundInfo:
    """One background: its camera, time, shape and dtype."""
    return await sup.get_background(background)


@router.get("/backgrounds/{background}/data", response_class=Response, responses=_NPY)
async def download_background(sup: Sup, background: str) -> Response:
    """The background as a ``.npy`` file: ``numpy.load(io.BytesIO(body))``."""
    data = await sup.read_background(background)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{background}.npy"'},
    )


@router.put("/backgrounds/{background}/data", openapi_extra=RAW_BODY)
async def upload_background(sup: Sup, request: Request, background: str) -> BackgroundInfo:
    """Store a ``.npy`` file (``numpy.save`` of a 2-D numeric array) as ``background``.

    422 with the reason if the body is not such a file (a pickle, an object array, 3-D data);
    nothing is written then. Pipelines pick the new data up at their next frame.
    """
    data = await read_limited(request, sup.max_upload_bytes, f"background {background!r}")
    return await sup.write_background(background, data)


@router.delete("/backgrounds/{background}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_background(sup: Sup, background: str) -> Response:
    """Remove a background (pipelines that use it report an error at their next frame)."""
    await sup.delete_background(background)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
