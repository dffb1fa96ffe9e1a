"""Live previews: the latest image of an instance's output as a colour-mapped PNG."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from ..colormaps import COLORMAP_NAMES
from ..nodeapi import NodeAPI
from .deps import get_node

__all__ = ["router"]

router = APIRouter(tags=["instances"])

Sup = Annotated[NodeAPI, Depends(get_node)]

_PNG: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}},
        "description": "The PNG; its headers say which frame and which range it shows.",
    }
}


@router.get("/instances/{name}/preview", response_class=Response, responses=_PNG)
async def preview(
    sup: Sup,
    name: str,
    channel: Annotated[
        str, Query(min_length=1, description="The channel that carries the 2-D image.")
    ] = "image",
    colormap: Annotated[str, Query(description=f"One of {', '.join(COLORMAP_NAMES)}.")] = "viridis",
    width: Annotated[
        int,
        Query(ge=16, le=4096, description="Most pixels across (block mean by a whole factor)."),
    ] = 640,
    vmin: Annotated[
        float | None,
        Query(alias="min", description="Value of the first colour (default: the image's min)."),
    ] = None,
    vmax: Annotated[
        float | None,
        Query(alias="max", description="Value of the last colour (default: the image's max)."),
    ] = None,
) -> Response:
    """The latest image of a running instance, reduced to ``width`` and colour-mapped, as PNG.

    The supervisor subscribes to the instance's PUB output for one frame, so a preview costs
    the pipeline one frame, and viewers asking within 0.15 s share it. Poll it a few times a
    second for a live view. Headers: ``X-Pulse-Id`` of the frame, ``X-Image-Shape`` of the
    frame before the reduction (``<height>x<width>``), ``X-Image-Range`` the values drawn with
    the first and last colours (``<min>,<max>``), ``Server-Timing`` the render time. 409 if the
    instance is not running, has no PUB output (reading a PUSH output would take frames from
    its consumer) or sends no such image within 5 s; 422 for an unknown colormap or a bad range.
    """
    shown = await sup.preview(
        name, channel=channel, colormap=colormap, width=width, vmin=vmin, vmax=vmax
    )
    headers = {
        "Cache-Control": "no-store",
        "X-Pulse-Id": str(shown.pulse_id),
        "X-Image-Shape": f"{shown.shape[0]}x{shown.shape[1]}",
        "X-Image-Range": f"{shown.vmin!r},{shown.vmax!r}",
        "Server-Timing": f"render;dur={shown.render_seconds * 1000:.2f}",
    }
    return Response(shown.png, media_type="image/png", headers=headers)
