"""Background routes: collect from a camera instance, upload .npy, list, fetch, delete."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from supervisor.testing import FakeNode
from tests.live_server import TOKEN, UPLOAD_LIMIT

API = "/api/v1"


def npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_collect_averages_a_running_camera_and_becomes_its_latest(
    fake: FakeNode, client: TestClient, running: dict[str, Any]
) -> None:
    """POST .../backgrounds averages n_images frames; the result is the camera's latest."""
    fake.camera_images["cam1"] = [np.full((2, 3), v, np.uint16) for v in (10, 13, 20)]
    response = client.post(f"{API}/instances/cam1/backgrounds", params={"n_images": 2})
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["id"].startswith("cam1_")
    assert (info["camera"], info["shape"], info["dtype"]) == ("cam1", [2, 3], "uint16")
    latest = client.get(f"{API}/instances/cam1/backgrounds/latest").json()
    assert latest["id"] == info["id"]
    data = client.get(f"{API}/backgrounds/{info['id']}/data")
    assert data.headers["content-type"] == "application/octet-stream"
    np.testing.assert_array_equal(np.load(io.BytesIO(data.content)), np.full((2, 3), 11))


def test_collect_from_a_camera_without_images_is_a_conflict(
    client: TestClient, running: dict[str, Any]
) -> None:
    """Too few images is a 409 that says how many arrived."""
    response = client.post(f"{API}/instances/cam1/backgrounds", params={"n_images": 5})
    assert response.status_code == 409
    assert "only 0 of 5 images" in response.json()["detail"]


def test_collect_with_a_bad_count_is_refused(client: TestClient, running: dict[str, Any]) -> None:
    """n_images must be 1..1000."""
    response = client.post(f"{API}/instances/cam1/backgrounds", params={"n_images": 0})
    assert response.status_code == 422


def test_upload_list_get_and_delete(client: TestClient) -> None:
    """A .npy upload is listed, described, downloadable byte for byte, and deletable."""
    image = np.arange(6, dtype=np.uint16).reshape(2, 3)
    put = client.put(f"{API}/backgrounds/manual-1/data", content=npy(image))
    assert put.status_code == 200, put.text
    assert put.json()["shape"] == [2, 3]
    assert [b["id"] for b in client.get(f"{API}/backgrounds").json()] == ["manual-1"]
    assert client.get(f"{API}/backgrounds", params={"camera": "manual"}).json() == []
    assert client.get(f"{API}/backgrounds/manual-1").json()["dtype"] == "uint16"
    assert client.get(f"{API}/backgrounds/manual-1/data").content == npy(image)
    assert client.delete(f"{API}/backgrounds/manual-1").status_code == 204
    missing = client.get(f"{API}/backgrounds/manual-1")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no background 'manual-1'"


def test_a_pickle_upload_is_refused_and_nothing_is_stored(client: TestClient) -> None:
    """An object array (a pickle inside .npy) gets a 422 quoting why; nothing is unpickled."""
    evil = npy(np.array([{"x": 1}], dtype=object), allow_pickle=True)
    response = client.put(f"{API}/backgrounds/evil/data", content=evil)
    assert response.status_code == 422
    assert "without pickles" in response.json()["detail"]
    assert client.get(f"{API}/backgrounds").json() == []


def test_a_traversal_id_is_refused(client: TestClient) -> None:
    """An id with a dot-dot or a leading dot is a 422, never a file outside the folder."""
    response = client.put(f"{API}/backgrounds/..secret/data", content=npy(np.zeros((2, 2))))
    assert response.status_code == 422
    assert "is not valid" in response.json()["detail"]


def test_an_oversized_upload_is_413(client: TestClient) -> None:
    """A background larger than the node's upload limit is refused with 413."""
    big = npy(np.zeros((UPLOAD_LIMIT, 2), np.uint8))
    assert client.put(f"{API}/backgrounds/big/data", content=big).status_code == 413


def test_changing_backgrounds_needs_the_token(secured: TestClient) -> None:
    """With a token, uploads, deletes and collections are 401 without it; reads stay open."""
    body = npy(np.zeros((2, 2), np.uint16))
    assert secured.put(f"{API}/backgrounds/b/data", content=body).status_code == 401
    assert secured.post(f"{API}/instances/cam1/backgrounds").status_code == 401
    assert secured.get(f"{API}/backgrounds").status_code == 200
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.put(f"{API}/backgrounds/b/data", content=body, headers=auth).status_code == 200
    assert secured.delete(f"{API}/backgrounds/b").status_code == 401
