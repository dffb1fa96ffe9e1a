"""The operators' page: served from the package, with its security headers, under /ui."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from supervisor.api.routes_web import web_root


def test_the_root_leads_to_the_page(client: TestClient) -> None:
    """A person typing the node's address lands on the page."""
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"
    assert client.get("/").url.path == "/ui/"


def test_the_page_and_its_files_are_served_with_a_strict_policy(client: TestClient) -> None:
    """Every file the page names is served, each with a policy that allows only our origin."""
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>pipevisor</title>" in page.text
    named = re.findall(r'(?:src|href)="([^":]+)"', page.text)
    assert set(named) == {"app.js", "app.css", "favicon.svg"}
    for name in named:
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.content == (web_root() / name).read_bytes()
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-cache"
    assert client.get("/ui/app.js").headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )


def test_the_page_has_no_inline_script_or_style(client: TestClient) -> None:
    """The policy forbids inline code, so the page must not need any."""
    text = client.get("/ui/").text
    assert "<script>" not in text
    assert "<style" not in text
    assert not re.search(r"\son[a-z]+\s*=", text)  # no onclick= and the like


def test_nothing_outside_the_page_folder_is_served(client: TestClient) -> None:
    """The static route stays inside the page's folder."""
    for path in ("/ui/../api/__init__.py", "/ui/%2e%2e/node.py", "/ui/..%2fnode.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"Supervisor" not in response.content


def test_the_page_needs_no_token_to_load(secured: TestClient) -> None:
    """With a token configured the page still loads: reading is open, changes need the token."""
    assert secured.get("/ui/").status_code == 200
    assert secured.post("/api/v1/instances/cam1/start").status_code == 401
