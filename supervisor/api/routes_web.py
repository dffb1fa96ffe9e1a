"""The operators' web page: static files under ``/ui``, and ``/`` leading to it.

The page is plain HTML, CSS and JavaScript shipped in the package (``supervisor/web``): nothing
is built or downloaded at run time. It reads the same REST API as every other client, so what it
shows is what the API answers, and its mutating calls meet the same token and audit trail.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UI_PATH", "mount", "web_root"]

UI_PATH = "/ui"

# Only our own files: no inline script, no other origin. Frames: none.
_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # A new version of the page after an upgrade, without a stale cached script.
    (b"cache-control", b"no-cache"),
)


def web_root() -> Path:
    """The folder of the page's files inside the installed package."""
    return Path(str(resources.files("supervisor") / "web"))


class _PageHeaders:
    """Adds the page's security and caching headers to every answer under ``/ui``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    """The page, for a person who types the node's address."""
    return RedirectResponse(f"{UI_PATH}/", status_code=307)


def mount(app: FastAPI) -> None:
    """Serve the page at ``/ui/`` and send ``/`` there."""
    app.include_router(router)
    app.mount(UI_PATH, _PageHeaders(StaticFiles(directory=web_root(), html=True)), name="ui")
