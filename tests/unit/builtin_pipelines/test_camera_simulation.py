"""The simulated camera source."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from builtin_pipelines.camera_simulation import configure, generate


def frames(parameters: dict[str, Any], count: int) -> list[tuple[dict[str, Any], int, tuple]]:
    """The next ``count`` frames of a fresh camera, skipping idle ticks."""
    return list(_take(generate(parameters), count))


def _take(source: Iterator[Any], count: int) -> Iterator[Any]:
    taken = 0
    for item in source:
        if item is not None:
            yield item
            taken += 1
            if taken == count:
                return


def test_deterministic_mode_reproduces_the_same_frames() -> None:
    """Two deterministic cameras with the same seed give identical images and pulse ids."""
    parameters = {"width": 40, "height": 30, "rate": 1000, "deterministic": True, "seed": 5,
                  "jitter": 1.5, "pulse_id_start": 100}  # fmt: skip
    first, second = frames(dict(parameters), 10), frames(dict(parameters), 10)
    assert [f[1] for f in first] == list(range(100, 110))
    assert [f[1] for f in second] == list(range(100, 110))
    for (a, _, _), (b, _, _) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(first[0][0]["image"], first[1][0]["image"])  # noise per frame
    other = frames({**parameters, "seed": 6}, 1)
    assert not np.array_equal(first[0][0]["image"], other[0][0]["image"])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int16", "float32"])
def test_geometry_and_dtype_are_as_configured(dtype: str) -> None:
    """The image, axes and size channels follow width, height and dtype."""
    ((data, pulse_id, (sec, ns)),) = frames({"width": 50, "height": 20, "dtype": dtype}, 1)
    assert data["image"].shape == (20, 50)
    assert data["image"].dtype == np.dtype(dtype)
    assert (data["width"], data["height"]) == (50, 20)
    assert data["width"].dtype == data["height"].dtype == np.int64
    assert data["x_axis"].dtype == data["y_axis"].dtype == np.float32
    np.testing.assert_array_equal(data["x_axis"], np.arange(50))
    np.testing.assert_array_equal(data["y_axis"], np.arange(20))
    assert abs(sec + ns * 1e-9 - time.time()) < 5
    assert data["timestamp"] == pytest.approx(sec + ns * 1e-9)
    assert abs(pulse_id - time.time() * 100) < 500  # 100 Hz pulse ids from the clock


def test_default_image_is_a_full_size_uint16_frame() -> None:
    """With no options the camera sends 1280x960 uint16 images."""
    ((data, _, _),) = frames({}, 1)
    assert (data["image"].shape, data["image"].dtype) == ((960, 1280), np.uint16)


def test_beam_centre_is_near_the_configured_position() -> None:
    """The intensity-weighted centre of the image sits at beam_x, beam_y."""
    parameters = {"width": 200, "height": 100, "beam_x": 130.0, "beam_y": 40.0, "noise": 0,
                  "beam_sigma_x": 8.0, "beam_sigma_y": 5.0, "background": 0}  # fmt: skip
    ((data, _, _),) = frames(parameters, 1)
    image = data["image"].astype(np.float64)
    total = image.sum()
    assert (image.sum(axis=0) @ data["x_axis"]) / total == pytest.approx(130.0, abs=0.5)
    assert (image.sum(axis=1) @ data["y_axis"]) / total == pytest.approx(40.0, abs=0.5)
    assert image.max() == pytest.approx(1000, rel=0.05)


def test_frames_are_read_only() -> None:
    """Frames are shared by the ring and sent zero-copy, so nobody may write into them."""
    ((data, _, _),) = frames({"width": 8, "height": 8}, 1)
    with pytest.raises(ValueError, match="read-only"):
        data["image"][0, 0] = 1


def test_rate_update_changes_the_frame_rate() -> None:
    """Changing rate in the live parameters changes the pace of the next frames."""
    parameters = {"width": 16, "height": 16, "rate": 20}
    source = generate(parameters)
    list(_take(source, 1))
    start = time.monotonic()
    list(_take(source, 5))
    slow = time.monotonic() - start
    parameters["rate"] = 200
    list(_take(source, 1))
    start = time.monotonic()
    list(_take(source, 20))
    fast = time.monotonic() - start
    assert slow == pytest.approx(5 / 20, rel=0.3)
    assert fast == pytest.approx(20 / 200, rel=0.5)


def test_source_yields_idle_ticks_while_waiting() -> None:
    """Between frames the source yields None, so the runner can apply config and send status."""
    source = generate({"width": 8, "height": 8, "rate": 5})
    items = [next(source) for _ in range(5)]
    assert items[0] is not None
    assert items[1:] == [None] * 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 0}, "width must be a positive integer, got 0"),
        ({"height": 12.5}, "height must be a positive integer, got 12.5"),
        ({"dtype": "complex64"}, "dtype must be one of"),
        ({"rate": -1}, "rate must be a positive number, got -1"),
        ({"noise": -0.1}, "noise must be at least 0"),
        ({"beam_x": "middle"}, "beam_x must be a number, got 'middle'"),
        ({"seed": -3}, "seed must be an integer >= 0"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(options: dict, message: str) -> None:
    """configure() refuses invalid options, quoting the bad value."""
    with pytest.raises(ValueError, match=message):
        configure(options)


def test_good_options_are_accepted() -> None:
    """A full, valid set of options passes configure()."""
    configure({"width": 2560, "height": 2160, "dtype": "float32", "rate": 100, "beam_x": 10,
               "noise": 0, "jitter": 2, "deterministic": True, "seed": 1})  # fmt: skip
