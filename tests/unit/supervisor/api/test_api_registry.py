"""Registry routes: entries, download, raw upload with a size cap, delete, name checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from supervisor.testing import FakeNode
from tests.live_server import UPLOAD_LIMIT

API = "/api/v1"


def test_list_entries_shows_valid_and_broken_entries(client: TestClient) -> None:
    """GET /registry lists every entry; a broken one is listed with valid=false and its error."""
    entries = {e["name"]: e for e in client.get(f"{API}/registry").json()}
    assert entries["camera"]["valid"] is True
    assert entries["camera"]["spec"]["builtin"] == "camera_simulation"
    assert entries["broken"]["valid"] is False
    assert entries["broken"]["error"]


def test_get_entry_returns_one_entry(client: TestClient) -> None:
    """GET /registry/{name} returns the entry."""
    body = client.get(f"{API}/registry/camera").json()
    assert body["name"] == "camera"
    assert body["kind"] == "config"


def test_get_unknown_entry_is_404_quoting_the_name(client: TestClient) -> None:
    """GET /registry/{name} of an unknown entry is a 404 whose detail quotes the name."""
    response = client.get(f"{API}/registry/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "no registry entry named 'nope'"}


def test_download_returns_the_raw_bytes(fake: FakeNode, client: TestClient) -> None:
    """GET /registry/files/{filename} returns the file's bytes as application/octet-stream."""
    fake.registry.files["data.bin"] = bytes(range(256))
    response = client.get(f"{API}/registry/files/data.bin")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == bytes(range(256))


def test_download_unknown_file_is_404(client: TestClient) -> None:
    """Downloading a file that does not exist is a 404."""
    assert client.get(f"{API}/registry/files/none.py").status_code == 404


def test_upload_writes_raw_bytes_and_returns_the_entry(fake: FakeNode, client: TestClient) -> None:
    """PUT /registry/files/{filename} stores the raw body and answers with the new entry."""
    code = b"def process(data, pulse_id, timestamp, parameters):\n    return data\n"
    response = client.put(f"{API}/registry/files/double.py", content=code)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "double.py"
    assert body["size"] == len(code)
    assert body["entry"]["name"] == "double"
    assert fake.registry.files["double.py"] == code


def test_upload_with_executable_flag_makes_an_executable_entry(
    fake: FakeNode, client: TestClient
) -> None:
    """?executable=true reaches the registry: the file becomes an executable entry."""
    response = client.put(
        f"{API}/registry/files/tool", params={"executable": "true"}, content=b"#!"
    )
    assert response.json()["entry"]["kind"] == "executable"
    assert "tool" in fake.registry.executables


def test_upload_of_a_plain_file_returns_no_entry(client: TestClient) -> None:
    """A file that is not an entry by itself is stored; entry is null."""
    response = client.put(f"{API}/registry/files/table.csv", content=b"1,2\n")
    assert response.status_code == 200
    assert response.json()["entry"] is None


def test_upload_of_an_invalid_json_entry_is_422(fake: FakeNode, client: TestClient) -> None:
    """A JSON entry that does not parse is refused with 422 quoting the file; nothing is kept."""
    response = client.put(f"{API}/registry/files/bad.json", content=b"{not json")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("bad.json: not valid JSON")
    assert "bad.json" not in fake.registry.files


def test_upload_over_the_limit_with_content_length_is_413(
    fake: FakeNode, client: TestClient
) -> None:
    """A body declared larger than the limit is refused with 413 before it is stored."""
    response = client.put(f"{API}/registry/files/big.bin", content=b"x" * (UPLOAD_LIMIT + 1))
    assert response.status_code == 413
    assert f"upload limit of {UPLOAD_LIMIT} bytes" in response.json()["detail"]
    assert "big.bin" not in fake.registry.files


def test_streamed_upload_over_the_limit_is_413_without_reading_it_all(
    fake: FakeNode, app: FastAPI
) -> None:
    """A chunked body with no length is cut off with 413 as soon as it passes the limit."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1024)
            yield b"y" * 1024

    async def upload() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.put(f"{API}/registry/files/big.bin", content=chunks())

    response = asyncio.run(upload())
    assert response.status_code == 413
    assert "big.bin" not in fake.registry.files
    assert sum(sent) <= UPLOAD_LIMIT + 1024  # reading stopped at the first chunk past the limit


def test_upload_at_the_limit_is_accepted(client: TestClient) -> None:
    """A body of exactly the limit is accepted."""
    response = client.put(f"{API}/registry/files/ok.bin", content=b"z" * UPLOAD_LIMIT)
    assert response.status_code == 200
    assert response.json()["size"] == UPLOAD_LIMIT


@pytest.mark.parametrize(
    "path", ["..%2Fescape.py", "..%2F..%2Fetc%2Fpasswd", ".hidden.py", "sub%2Ffile.py"]
)
def test_path_traversal_names_are_refused_with_422(
    fake: FakeNode, client: TestClient, path: str
) -> None:
    """Names with '/', '..' or a leading dot reach the registry and come back as 422."""
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, f"{API}/registry/files/{path}", content=b"x")
        assert response.status_code == 422, (method, response.text)
        assert response.json()["detail"].startswith("invalid file name")
    assert fake.registry.files.keys() == {"camera.json", "broken.json"}


def test_delete_file_removes_it_with_204(fake: FakeNode, client: TestClient) -> None:
    """DELETE /registry/files/{filename} removes the file and answers 204 without a body."""
    response = client.delete(f"{API}/registry/files/camera.json")
    assert response.status_code == 204
    assert response.content == b""
    assert "camera.json" not in fake.registry.files


def test_delete_unknown_file_is_404(client: TestClient) -> None:
    """Deleting a file that does not exist is a 404."""
    response = client.delete(f"{API}/registry/files/ghost.py")
    assert response.status_code == 404
    assert "ghost.py" in response.json()["detail"]


def test_uploaded_json_entry_is_listed(client: TestClient) -> None:
    """An uploaded JSON entry shows up in GET /registry."""
    spec = {"builtin": "merge", "description": "merges"}
    client.put(f"{API}/registry/files/merger.json", content=json.dumps(spec).encode())
    names = [e["name"] for e in client.get(f"{API}/registry").json()]
    assert "merger" in names
