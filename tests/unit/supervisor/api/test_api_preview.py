"""The preview route: a PNG of the latest image with its headers, and the errors of the API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from supervisor.colormaps import COLORMAP_NAMES, lookup_table
from supervisor.testing import FakeNode
from tests.png_reader import read_png

API = "/api/v1"


@pytest.fixture
def camera(fake: FakeNode, running: dict[str, Any]) -> np.ndarray:
    """The latest image of ``cam1``: a 6x40 ramp from 0 to 390 along x, after an older one."""
    image = np.tile(np.arange(40, dtype=np.uint16) * 10, (6, 1))
    fake.camera_images["cam1"] = [np.zeros((6, 40), np.uint16), image]
    return image


def test_the_preview_is_a_png_of_the_latest_image_with_its_headers(
    client: TestClient, camera: np.ndarray
) -> None:
    """image/png, never cached, with the frame's pulse id, shape and the range drawn."""
    response = client.get(f"{API}/instances/cam1/preview", params={"width": 20})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-pulse-id"] == "1001"
    assert response.headers["x-image-shape"] == "6x40"
    assert response.headers["x-image-range"] == "5.0,385.0"  # the 2x2 means of the ramp
    assert response.headers["server-timing"].startswith("render;dur=")
    png = read_png(response.content)
    assert png.rgb.shape == (3, 20, 3)
    lut = lookup_table("viridis")
    assert tuple(png.rgb[0, 0]) == tuple(lut[0])
    assert tuple(png.rgb[2, 19]) == tuple(lut[255])


def test_colormap_and_range_are_taken_from_the_query(
    client: TestClient, camera: np.ndarray
) -> None:
    """?colormap=gray&min=0&max=200: pixels past 200 are white, the header echoes the range."""
    params = {"colormap": "gray", "min": 0, "max": 200, "width": 40}
    response = client.get(f"{API}/instances/cam1/preview", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["x-image-range"] == "0.0,200.0"
    row = read_png(response.content).rgb[0, :, 0]
    np.testing.assert_array_equal(row[:3], [0, 12, 25])
    assert (row[20:] == 255).all()


def test_an_unknown_instance_is_404(client: TestClient) -> None:
    """No such instance: 404 quoting its name."""
    response = client.get(f"{API}/instances/nope/preview")
    assert response.status_code == 404
    assert "'nope'" in response.json()["detail"]


def test_a_stopped_instance_is_409(client: TestClient, camera: np.ndarray) -> None:
    """Not running: 409 saying so."""
    client.post(f"{API}/instances/cam1/stop")
    response = client.get(f"{API}/instances/cam1/preview")
    assert response.status_code == 409
    assert "start it first" in response.json()["detail"]


def test_no_image_in_time_is_409(client: TestClient, running: dict[str, Any]) -> None:
    """A running instance that sends no image: 409 with the reason."""
    response = client.get(f"{API}/instances/cam1/preview")
    assert response.status_code == 409
    assert "no message arrived" in response.json()["detail"]


def test_an_unknown_colormap_is_422_listing_the_colormaps(
    client: TestClient, camera: np.ndarray
) -> None:
    """The detail quotes the name and lists the valid ones."""
    response = client.get(f"{API}/instances/cam1/preview", params={"colormap": "hot"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'hot'" in detail
    assert all(name in detail for name in COLORMAP_NAMES)


@pytest.mark.parametrize(
    "params",
    [
        {"width": 15},
        {"width": 4097},
        {"width": "wide"},
        {"min": "low"},
        {"min": "nan"},
        {"max": "inf"},
        {"min": 10, "max": 10},
        {"min": 10, "max": 5},
        {"channel": ""},
    ],
)
def test_a_bad_query_is_422(client: TestClient, camera: np.ndarray, params) -> None:
    """Width outside 16..4096, a bound that is not a finite number, crossed bounds: 422."""
    response = client.get(f"{API}/instances/cam1/preview", params=params)
    assert response.status_code == 422, response.text


def test_the_preview_needs_no_token(secured: TestClient, camera: np.ndarray) -> None:
    """A GET: open on a node with a token, like every read."""
    assert secured.get(f"{API}/instances/cam1/preview").status_code == 200
