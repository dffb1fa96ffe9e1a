"""The app factory: routes, the mapping of domain errors to HTTP, the guard and the safety net."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..audit import AuditLog
from ..nodeapi import NodeAPI
from ..nodeapi.errors import (
    ConflictError,
    InvalidConfigError,
    InvalidEntryError,
    InvalidNameError,
    InvalidValueError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
    SupervisorError,
    UnavailableError,
)
from . import (
    metrics,
    routes_acquisitions,
    routes_backgrounds,
    routes_instances,
    routes_logs,
    routes_node,
    routes_preview,
    routes_registry,
    routes_streams,
    routes_web,
)
from .auth import GuardMiddleware, host_name
from .body import MAX_JSON_BYTES
from .deps import API_PREFIX
from .metrics import NodeCollector, metrics_registry

__all__ = ["API_PREFIX", "create_app", "status_for"]

log = structlog.get_logger(__name__)

SSE_KEEPALIVE = 15.0
"""Seconds without a log entry after which a follower gets a keep-alive comment."""

_STATUS: tuple[tuple[type[SupervisorError] | tuple[type[SupervisorError], ...], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (UnavailableError, 503),
    (StorageError, 507),  # Insufficient Storage: the change was refused whole
    ((InvalidNameError, InvalidEntryError, InvalidConfigError, InvalidValueError), 422),
    (MalformedRequestError, 400),
)

_DESCRIPTION = """\
The REST API of one pipevisor node: the registry of pipelines, their running instances, their
configuration and their logs.

Errors answer with a 4xx status and `{"detail": "<what was wrong, quoting it>"}`; a body that
does not match its model answers 422 with `{"detail": [{"loc": [...], "msg": ...}, ...]}`, the
path of each bad field and why. A JSON body is at most 1 MiB (413 past it); one that is not
UTF-8 JSON or nests deeper than 64 levels is a 400, and NaN, infinities and strings with lone
surrogates are refused with 422, quoting the field. When the node has a token, every POST,
PUT, PATCH and DELETE needs `Authorization: Bearer <token>`; every one of them, allowed or
refused, is recorded in the audit log (`GET /api/v1/audit`). A change the node cannot save (a
full disk, a read-only state folder) answers 507 naming the reason, and changes nothing.
"""


def status_for(exc: SupervisorError) -> int:
    """The HTTP status code of a domain error (400 for one without a more precise code)."""
    for kinds, code in _STATUS:
        if isinstance(exc, kinds):
            return code
    return 400


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SupervisorError)
    code = status_for(exc)
    message = getattr(exc, "message", str(exc))
    log.info(
        "api_request_failed",
        method=request.method,
        path=request.url.path,
        status=code,
        error=message,
    )
    return JSONResponse({"detail": message}, status_code=code)


class _UnexpectedErrors:
    """Turns an unexpected exception into a generic 500, logged with its traceback.

    The client never sees the traceback. Unlike an ``Exception`` handler of Starlette, this
    does not re-raise to the server, so the error is logged once, through structlog.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            log.exception("api_unexpected_error", method=scope["method"], path=scope["path"])
            if started:
                raise  # too late for a 500: the server closes the connection
            response = JSONResponse(
                {"detail": "internal error of the supervisor; its log has the details"},
                status_code=500,
            )
            await response(scope, receive, send)


def create_app(
    node: NodeAPI,
    *,
    token: str | None = None,
    audit: AuditLog | None = None,
    viewer_token: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    max_json_bytes: int = MAX_JSON_BYTES,
) -> FastAPI:
    """The REST API of ``node`` under ``/api/v1``, with its docs at ``/docs``.

    Args:
        node: The node (or the manager of many) to serve: anything implementing ``NodeAPI``.
        token: Bearer token that POST, PUT, PATCH and DELETE need; None (or empty) leaves
            them open.
        audit: Where mutating calls are recorded; default: kept in memory only.
        viewer_token: Bearer token of viewers: once given, reads need it (or ``token``), and
            viewers see configs and ``env`` with their secrets redacted. Needs ``token``.
        allowed_hosts: The ``Host`` names answered (others: 421); None: any (see
            ``ServiceSettings.accepted_hosts``).
        max_json_bytes: Largest JSON request body (a config, a create request); 413 past it.
            Raw uploads (registry files, backgrounds) have the node's ``max_upload_bytes``.
    """
    app = FastAPI(
        title="pipevisor",
        version=__version__,
        description=_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.node = node
    app.state.token = token or None
    app.state.viewer_token = viewer_token or None
    if app.state.viewer_token is not None and app.state.token is None:
        raise ValueError("a viewer token needs an operator token")
    app.state.allowed_hosts = (
        None if allowed_hosts is None else frozenset(host_name(h) for h in allowed_hosts)
    )
    app.state.audit = audit if audit is not None else AuditLog(None)
    app.state.sse_keepalive = SSE_KEEPALIVE
    app.state.max_json_bytes = max_json_bytes
    app.state.metrics = NodeCollector()
    app.state.metrics_registry = metrics_registry(app.state.metrics)
    app.include_router(metrics.router)  # /metrics, where Prometheus looks by default
    for module in (
        routes_node,
        routes_registry,
        routes_instances,
        routes_logs,
        routes_backgrounds,
        routes_preview,
        routes_streams,
        routes_acquisitions,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    routes_web.mount(app)  # the operators' page at /ui/, and / leading to it
    app.add_exception_handler(SupervisorError, _domain_error)
    app.add_middleware(GuardMiddleware)  # inside: sees the answers of the routes
    app.add_middleware(_UnexpectedErrors)  # outside: a crash is a 500 the guard audits
    return app
