"""Roles, origins and host names of API calls, and the audit trail of mutating calls.

One pure ASGI middleware does all of it, because the audit record needs the final status code of
every mutating request, refused ones included, and a refusal must come before any body is read.

The rules, in the order they are checked:

1. **Host** (when the API is bound to loopback): a ``Host`` header whose name is not 127.0.0.1,
   localhost, [::1] or one of the allowed extra names is refused 421, against DNS rebinding
   (``ServiceSettings.accepted_hosts``).
2. **Origin** (mutating methods): an ``Origin`` header other than the API's own
   (``http://`` or ``https://`` and the request's ``Host``) is refused 403.
3. **Content type** (mutating methods): ``text/plain``, ``application/x-www-form-urlencoded``
   and ``multipart/form-data``, the types a cross-site form or "simple" fetch can send without
   a preflight, are refused 415. A body-less call needs no content type.
4. **Role**: the operator token allows everything; the viewer token allows reads and the
   viewer's calls (``POST /streams/NAME``). Without an operator token, mutations are open;
   without a viewer token, reads are open (``/metrics``, ``/health``, ``/version``, the docs and
   the web page always are). A refusal is 401.
5. **Redaction**: a viewer's JSON answers carry ``<redacted>`` for the value of every key that
   looks like a secret (``is_secret_key``): configs, entries' ``env``, the audit log's bodies.

Every POST, PUT, PATCH and DELETE is audited; GET (and HEAD, OPTIONS) requests are not.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audit import AuditRecord
from .deps import API_PREFIX

__all__ = [
    "AUDIT_BODY_LIMIT",
    "MUTATING_METHODS",
    "REDACTED",
    "GuardMiddleware",
    "Role",
    "host_name",
    "is_secret_key",
    "redact",
    "token_matches",
]

log = structlog.get_logger(__name__)

Role = Literal["operator", "viewer", "anonymous"]

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_BODY_LIMIT = 2048
"""Bytes of a config change (or creation) body kept in its audit record."""
REDACTED = "<redacted>"
"""What a viewer sees in place of a secret."""

# Bodies worth auditing: instance creation, config changes and acquisitions (never uploads:
# they are code).
_BODY_PATHS = re.compile(
    rf"^{re.escape(API_PREFIX)}/instances(/[^/]+/(config|acquisitions(/[^/]+/stop)?))?/?$"
)
_FILE_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/registry/files/(.+)$")
_INSTANCE_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/instances/([^/]+)")
_VIEWER_CALLS = re.compile(rf"^{re.escape(API_PREFIX)}/streams/[^/]+/?$")
_OPEN_READS = frozenset(f"{API_PREFIX}/{p}" for p in ("health", "version", "openapi.json"))
_SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_SECRET_KEY = re.compile(
    r"passw(or)?d|passphrase|(^|[^a-z])pass($|[^a-z])|secret|token|credential|authorization"
    r"|api_?key|private_?key|(^|[^a-z])key($|[^a-z])|cookie|session_?id",
    re.IGNORECASE,
)


def token_matches(authorization: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>``, in constant time."""
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(presented.strip(), token.encode())


def is_secret_key(key: str) -> bool:
    """Whether a config or ``env`` key names a secret, whose value viewers do not see.

    The rule: the key contains ``password``/``passwd``/``passphrase``, ``secret``, ``token``,
    ``credential``, ``authorization``, ``api_key``/``apikey``, ``private_key``, ``cookie`` or
    ``session_id``, or has ``pass`` or ``key`` as a word of its own (``DB_PASS``, ``ssh_key``,
    ``key``, not ``keyframe`` or ``bypass``), in any case.
    """
    return _SECRET_KEY.search(key) is not None


def redact(value: Any) -> Any:
    """``value`` (parsed JSON) with every secret's value replaced by ``REDACTED``.

    An audit record's ``body`` (JSON text) is redacted as JSON; one that is not JSON (truncated)
    is redacted whole.
    """
    if isinstance(value, list):
        return [redact(v) for v in value]
    if not isinstance(value, dict):
        return value
    redacted: dict[str, Any] = {}
    for key, item in value.items():
        if item is not None and is_secret_key(str(key)):
            redacted[key] = REDACTED
        elif key == "body" and isinstance(item, str):
            try:
                redacted[key] = json.dumps(redact(json.loads(item)))
            except ValueError:
                redacted[key] = REDACTED
        else:
            redacted[key] = redact(item)
    return redacted


def host_name(host: str) -> str:
    """The name in a ``Host`` header value, lower case, without its port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value is not None else ""


def _refusal(status: int, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class GuardMiddleware:
    """Applies the rules of this module and audits every mutating request.

    Reads ``token``, ``viewer_token``, ``allowed_hosts`` (None: any ``Host``) and ``audit`` from
    ``app.state`` at each request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        token: str | None = state.token
        viewer_token: str | None = getattr(state, "viewer_token", None)
        authorization = _header(scope, b"authorization")
        role: Role = "anonymous"
        if token is not None and token_matches(authorization, token):
            role = "operator"
        elif viewer_token is not None and token_matches(authorization, viewer_token):
            role = "viewer"
        refusal = self._host_refusal(scope, state)
        if scope["method"] not in MUTATING_METHODS:
            protected = scope["path"].startswith(API_PREFIX + "/") and (
                scope["path"] not in _OPEN_READS
            )
            if refusal is None and viewer_token is not None and role == "anonymous" and protected:
                refusal = _refusal(401, self._needs(authorization, "this read"))
            if refusal is not None:
                await refusal(scope, receive, send)
            elif role == "viewer":
                await self.app(scope, receive, _redacting(send))
            else:
                await self.app(scope, receive, send)
            return
        if refusal is None:
            refusal = self._request_refusal(scope)
        if refusal is None:
            if _VIEWER_CALLS.match(scope["path"]):
                allowed = role != "anonymous" or (token is None and viewer_token is None)
            else:
                allowed = role == "operator" or token is None
            if not allowed:
                refusal = _refusal(401, self._needs(authorization, "this call"))
        await self._audited(scope, receive, send, state, role, refusal)

    @staticmethod
    def _needs(authorization: bytes | None, what: str) -> str:
        if authorization:
            return "the bearer token is wrong (or lacks the role this call needs)"
        return f"{what} needs the header 'Authorization: Bearer <token>'"

    @staticmethod
    def _host_refusal(scope: Scope, state: Any) -> JSONResponse | None:
        allowed: frozenset[str] | None = getattr(state, "allowed_hosts", None)
        if allowed is None:
            return None
        host = _text(_header(scope, b"host"))
        if host_name(host) in allowed:
            return None
        return _refusal(
            421,
            f"unknown Host header {host!r}: this API answers to {', '.join(sorted(allowed))} "
            "(see --allow-host)",
        )

    @staticmethod
    def _request_refusal(scope: Scope) -> JSONResponse | None:
        """403 for a cross-site origin, 415 for a content type a cross-site form can send."""
        origin = _header(scope, b"origin")
        if origin is not None:
            host = _text(_header(scope, b"host")).lower()
            own = {f"http://{host}", f"https://{host}"}
            if _text(origin).lower().rstrip("/") not in own:
                return _refusal(
                    403,
                    f"cross-site call refused: Origin {_text(origin)!r} is not this API's "
                    f"own ('http://{host}')",
                )
        kind = _text(_header(scope, b"content-type")).split(";", 1)[0].strip().lower()
        if kind in _SIMPLE_TYPES:
            return _refusal(
                415,
                f"content type {kind!r} refused for {scope['method']} (what a cross-site form "
                "can send): send 'application/json', 'application/octet-stream' or no body",
            )
        return None

    async def _audited(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        state: Any,
        role: Role,
        refusal: JSONResponse | None,
    ) -> None:
        arrived = time.time()
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
            self._audit(scope, state, arrived, role, status, bytes(body), truncated, keep_body)

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])  # on disk before the client learns the outcome
            await send(message)

        try:
            if refusal is None:
                await self.app(scope, receive_and_keep if keep_body else receive, send_and_note)
            else:
                if keep_body:  # what a refused config change tried, for the record
                    await _read_some(receive_and_keep, AUDIT_BODY_LIMIT)
                await refusal(scope, receive, send_and_note)
        finally:
            if not recorded:
                record(500)  # the app raised before answering: the client gets a 500

    @staticmethod
    def _audit(
        scope: Scope,
        state: Any,
        arrived: float,
        role: Role,
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
            auth={"operator": "token", "viewer": "viewer", "anonymous": "anonymous"}[role],
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
        if status in (401, 403, 415, 421):
            log.warning(
                "api_call_refused",
                method=record.method,
                path=record.path,
                client=record.client,
                status=status,
            )


def _redacting(send: Send) -> Send:
    """``send`` with a JSON answer's secrets redacted (``redact``); other answers pass as they
    are, streamed."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def redacting_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            kind = next(
                (v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b""
            )
            if b"json" in kind.lower():
                start = message
                return
        elif message["type"] == "http.response.body" and start is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            payload = b"".join(chunks)
            try:
                payload = json.dumps(redact(json.loads(payload)), separators=(",", ":")).encode()
            except ValueError:
                pass  # not JSON after all: as it was
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await send(message)

    return redacting_send
