"""Bearer-token protection of mutating calls, and their audit trail.

One pure ASGI middleware does both, because the audit record needs the final status code of
every mutating request, refused ones included, and a refusal must come before any body is read.
GET (and HEAD, OPTIONS) requests stay open and are not audited.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Iterable
from typing import Any

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audit import AuditRecord
from .deps import API_PREFIX

__all__ = ["AUDIT_BODY_LIMIT", "MUTATING_METHODS", "GuardMiddleware", "token_matches"]

log = structlog.get_logger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_BODY_LIMIT = 2048
"""Bytes of a config change (or creation) body kept in its audit record."""

# Bodies worth auditing: instance creation, config changes and acquisitions (never uploads:
# they are code).
_BODY_PATHS = re.compile(
    rf"^{re.escape(API_PREFIX)}/instances(/[^/]+/(config|acquisitions(/[^/]+/stop)?))?/?$"
)
_FILE_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/registry/files/(.+)$")
_INSTANCE_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/instances/([^/]+)")


def token_matches(authorization: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>``, in constant time."""
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(presented.strip(), token.encode())


def _header(scope: Scope, name: bytes) -> bytes | None:
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]  # ASGI: (name, value) pairs
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _target(scope: Scope) -> str | None:
    """The instance or registry file a request is about, read from its path."""
    path = scope["path"]
    found = _FILE_PATH.match(path) or _INSTANCE_PATH.match(path)
    return found.group(1) if found else None


async def _read_some(receive: Receive, limit: int) -> None:
    """Receive body chunks until ``limit`` bytes or the end of the body, whichever is first."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


class GuardMiddleware:
    """Refuses mutating requests without the token (401) and audits every mutating request.

    Reads ``token`` and ``audit`` from ``app.state`` at each request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING_METHODS:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        token: str | None = state.token
        arrived = time.time()
        authorization = _header(scope, b"authorization")
        valid = token is not None and token_matches(authorization, token)
        body = bytearray()
        truncated = False
        keep_body = bool(_BODY_PATHS.match(scope["path"]))

        async def receive_and_keep() -> Message:
            nonlocal truncated
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                room = AUDIT_BODY_LIMIT - len(body)
                body.extend(chunk[:room])
                truncated = truncated or len(chunk) > room
            return message

        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            recorded = True
            self._audit(scope, state, arrived, valid, status, bytes(body), truncated, keep_body)

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])  # on disk before the client learns the outcome
            await send(message)

        try:
            if token is None or valid:
                await self.app(scope, receive_and_keep if keep_body else receive, send_and_note)
            else:
                if keep_body:  # what a refused config change tried, for the record
                    await _read_some(receive_and_keep, AUDIT_BODY_LIMIT)
                detail = (
                    "the bearer token is wrong"
                    if authorization
                    else "this call needs the header 'Authorization: Bearer <token>'"
                )
                refusal = JSONResponse(
                    {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await refusal(scope, receive, send_and_note)
        finally:
            if not recorded:
                record(500)  # the app raised before answering: the client gets a 500

    @staticmethod
    def _audit(
        scope: Scope,
        state: Any,
        arrived: float,
        valid: bool,
        status: int,
        body: bytes,
        truncated: bool,
        keep_body: bool,
    ) -> None:
        target = _target(scope)
        text = body.decode("utf-8", errors="replace") if keep_body and body else None
        if target is None and text is not None and not truncated:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("name"), str):
                target = parsed["name"]  # POST /instances names the instance in its body
        record = AuditRecord.at(
            arrived,
            client=_client(scope),
            auth="token" if valid else "anonymous",
            method=scope["method"],
            path=scope["path"],
            target=target,
            body=text,
            body_truncated=truncated,
            status=status,
        )
        try:
            state.audit.record(record)
        except Exception:
            log.exception("audit_write_failed", method=record.method, path=record.path)
        if status == 401:
            log.warning(
                "api_call_refused", method=record.method, path=record.path, client=record.client
            )
