"""Request bodies: read as a stream and refused past a limit; JSON bodies parsed strictly.

Every route that takes a JSON body goes through ``JSONBodyRoute`` (its router's
``route_class``): the body is read up to the app's ``max_json_bytes`` (413 past it, without
buffering more), then parsed by ``supervisor.jsontext`` (400 for bytes that are not UTF-8 JSON
or nest too deep, 422 for NaN, infinities and lone surrogates, quoting the field path) before
FastAPI validates it against the route's model. Raw uploads keep the node's upload limit.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute

from ..jsontext import parse_json
from ..nodeapi.errors import PayloadTooLargeError

__all__ = ["MAX_JSON_BYTES", "RAW_BODY", "JSONBodyRoute", "read_limited"]

MAX_JSON_BYTES = 2**20
"""Default limit of a JSON request body (a config, a create request): 1 MiB."""

RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def read_limited(request: Request, limit: int, what: str, kind: str = "upload") -> bytes:
    """The whole body; 413 as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"{what} is {int(declared)} bytes, more than the {kind} limit of {limit} bytes"
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise PayloadTooLargeError(f"{what} is more than the {kind} limit of {limit} bytes")
    return bytes(data)


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body of this content type as JSON (none counts)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class JSONBodyRoute(APIRoute):
    """A route whose JSON body is read within the limit and parsed strictly before FastAPI."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handler

        async def checked(request: Request) -> Response:
            limit: int = getattr(request.app.state, "max_json_bytes", MAX_JSON_BYTES)
            body = await read_limited(request, limit, "the JSON body", kind="JSON body")
            # FastAPI reads the body and the JSON through these caches of Starlette's Request:
            # what it validates is what was checked here, parsed once.
            request._body = body
            if body and _is_json(request.headers.get("content-type")):
                request._json = parse_json(body, "body")
            return await handler(request)

        return checked
