"""Raw request bodies (uploads), read as a stream and refused past the node's limit."""

from __future__ import annotations

from fastapi import Request

from ..nodeapi.errors import PayloadTooLargeError

__all__ = ["RAW_BODY", "read_limited"]

RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The whole body; 413 as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"{what} is {int(declared)} bytes, more than the upload limit of {limit} bytes"
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise PayloadTooLargeError(f"{what} is more than the upload limit of {limit} bytes")
    return bytes(data)
