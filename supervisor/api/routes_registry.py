"""The registry: its entries, and its files (download, raw upload, delete).

File names go to the registry unchanged (``{filename:path}`` lets a '/' through), so every
name, a path-traversal attempt included, is judged in one place: the registry's name check.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..nodeapi import NodeAPI
from ..nodeapi.models import Entry, RegistryFile
from .body import RAW_BODY, read_limited
from .deps import get_node
from .schemas import UploadResult

__all__ = ["router"]

router = APIRouter(prefix="/registry", tags=["registry"])

Sup = Annotated[NodeAPI, Depends(get_node)]

_BYTES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The file."}
}


@router.get("")
async def list_entries(sup: Sup) -> list[Entry]:
    """Every entry of the registry, valid or not (an invalid one says why in ``error``)."""
    return await sup.list_entries()


@router.get("/files")
async def list_files(sup: Sup) -> list[RegistryFile]:
    """Every registry file with its size and SHA-256 (a cluster manager copies only what
    differs)."""
    return await sup.list_files()


@router.get("/files/{filename:path}", response_class=Response, responses=_BYTES)
async def download_file(sup: Sup, filename: str) -> Response:
    """The raw bytes of a registry file."""
    data = await sup.read_file(filename)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.put("/files/{filename:path}", openapi_extra=RAW_BODY)
async def upload_file(
    sup: Sup,
    request: Request,
    filename: str,
    executable: Annotated[
        bool, Query(description="Make the file executable (a program of any language).")
    ] = False,
) -> UploadResult:
    """Write a registry file from the raw request body; the entry is available at once.

    The body is read as a stream and refused with 413 as soon as it passes the node's upload
    limit. A JSON entry that does not validate is refused with 422 and nothing is written.
    """
    data = await read_limited(request, sup.max_upload_bytes, repr(filename))
    entry = await sup.write_file(filename, data, executable=executable)
    return UploadResult(filename=filename, size=len(data), entry=entry)


@router.delete("/files/{filename:path}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_file(sup: Sup, filename: str) -> Response:
    """Remove a registry file; its entry disappears (running instances keep running)."""
    await sup.delete_file(filename)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}")
async def get_entry(sup: Sup, name: str) -> Entry:
    """One registry entry."""
    return await sup.get_entry(name)
