"""The beam_metrics entry points: configure, and process_image from frame to output channels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import builtin_pipelines.beam_metrics as beam_metrics
from builtin_pipelines.beam_metrics import configure, process_image
from runners.python.config import ConfigRefused, Configurator
from runners.python.loader import load
from supervisor.contract import EnvVar

SIX = ["x_axis", "y_axis", "image", "width", "height", "processing_parameters"]
TIMESTAMP = (1_700_000_000, 250_000_000)


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain instance name and an empty background folder, as the supervisor sets them."""
    monkeypatch.setenv(EnvVar.INSTANCE, "cam_pipeline")
    monkeypatch.setenv(EnvVar.BACKGROUNDS, str(tmp_path))


def _beam(height: int = 30, width: int = 40) -> np.ndarray:
    """A read-only uint16 Gaussian spot, as a camera sends it."""
    y, x = np.mgrid[0:height, 0:width]
    spot = 1000 * np.exp(-((x - 22) ** 2) / 18 - (y - 12) ** 2 / 8) + 10
    image = spot.astype(np.uint16)
    image.flags.writeable = False
    return image


def _process(image: np.ndarray, parameters: dict[str, Any]) -> dict[str, Any] | None:
    height, width = image.shape
    x_axis, y_axis = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    return process_image(image, 7, TIMESTAMP, x_axis, y_axis, parameters, {})


def _configured(**config: Any) -> dict[str, Any]:
    configure(config)
    return config


def test_default_frame_is_measured_without_copying_the_image() -> None:
    """Default parameters: full output, and the image channel is the received buffer."""
    image = _beam()
    result = _process(image, _configured())
    assert result is not None
    assert list(result)[:6] == SIX
    assert np.shares_memory(result["image"], image)
    assert (result["width"], result["height"]) == (40, 30)
    assert result["intensity"] == image.astype(np.int64).sum()


def test_private_state_stays_out_of_processing_parameters() -> None:
    """The per-pipeline state is kept in parameters but never sent."""
    parameters = _configured(camera_name="cam", _comment="kept")
    result = _process(_beam(), parameters)
    assert result is not None
    sent = json.loads(result["processing_parameters"])
    assert beam_metrics.STATE_KEY in parameters
    assert not any(key.startswith("_pipevisor_") for key in sent)
    assert sent["camera_name"] == "cam"
    assert sent["_comment"] == "kept"
    assert sent["image_background_enable"] is False  # expanded by configure


def test_a_bad_background_fails_the_frame_with_the_message() -> None:
    """Without notify_on_error a missing background raises CamServer's clear error."""
    parameters = _configured(image_background="nope", image_background_enable=True)
    with pytest.raises(ValueError, match=r"^Invalid background image file: nope: not found in "):
        _process(_beam(), parameters)
    assert "processing_error" not in parameters


def test_a_bad_background_with_notify_on_error_sends_a_flagged_frame() -> None:
    """notify_on_error: six channels, a zero image, and processing_error in parameters."""
    parameters = _configured(
        image_background="nope", image_background_enable=True, notify_on_error=True
    )
    result = _process(_beam(), parameters)
    assert result is not None
    assert list(result) == SIX
    assert result["image"].shape == (30, 40)
    assert not result["image"].any()
    assert parameters["processing_error"].startswith("Invalid background image file: nope")
    sent = json.loads(result["processing_parameters"])
    assert sent["processing_error"] == parameters["processing_error"]


def test_the_flag_is_cleared_when_the_next_frame_is_good(tmp_path: Path) -> None:
    """processing_error is evaluated again at every frame."""
    parameters = _configured(
        image_background="bg", image_background_enable=True, notify_on_error=True
    )
    assert list(_process(_beam(), parameters) or {}) == SIX
    np.save(tmp_path / "bg.npy", np.full((30, 40), 10, np.uint16))
    result = _process(_beam(), parameters)
    assert result is not None
    assert "intensity" in result
    assert "processing_error" not in parameters
    np.testing.assert_array_equal(result["image"], _beam() - 10)


def test_screen_panel_instances_notify_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance named ``*_sp`` keeps streaming on a bad region of interest."""
    monkeypatch.setenv(EnvVar.INSTANCE, "SARES11-CAM_sp")
    parameters = _configured(image_region_of_interest=[100, 10, 0, 10])
    result = _process(_beam(), parameters)
    assert result is not None
    assert list(result) == SIX
    assert parameters["processing_error"] == (
        "Region of interest [100, 10, 0, 10] is outside the image of 40x30"
    )


def test_a_region_outside_the_image_fails_without_notify() -> None:
    """Without notify_on_error the region error is the exception's message."""
    parameters = _configured(image_region_of_interest=[0, 10, 30, 5])
    with pytest.raises(ValueError, match=r"is outside the image of 40x30$"):
        _process(_beam(), parameters)


def test_include_keeps_only_the_listed_channels_in_their_order() -> None:
    """include: exactly these keys, in this order; a missing one is sent as None."""
    parameters = _configured(include=["intensity", "x_axis", "no_such_channel"])
    result = _process(_beam(), parameters)
    assert result is not None
    assert list(result) == ["intensity", "x_axis", "no_such_channel"]
    assert result["no_such_channel"] is None


def test_exclude_drops_the_listed_channels() -> None:
    """exclude: every channel but these."""
    full = _process(_beam(), _configured())
    result = _process(_beam(), _configured(exclude=["image", "x_profile"]))
    assert full is not None
    assert result is not None
    assert list(result) == [key for key in full if key not in ("image", "x_profile")]


def test_passive_background_reaches_parameters_but_not_the_output(tmp_path: Path) -> None:
    """Passive mode: background_data is in parameters; the image and the JSON are untouched."""
    np.save(tmp_path / "bg.npy", np.full((30, 40), 10, np.uint16))
    image = _beam()
    parameters = _configured(image_background="bg", image_background_enable="passive")
    result = _process(image, parameters)
    assert result is not None
    assert np.shares_memory(result["image"], image)
    assert parameters["background_data"].shape == (30, 40)
    assert "background_data" not in json.loads(result["processing_parameters"])


@pytest.mark.parametrize(
    ("shape", "config"),
    [((0, 40), {}), ((30, 3), {"binning_x": 4})],
    ids=["empty-camera-image", "binning-larger-than-the-image"],
)
def test_nothing_left_to_measure_is_a_clear_value_error(
    shape: tuple[int, int], config: dict[str, Any]
) -> None:
    """A zero-size image after pre-processing raises a ValueError that says so."""
    image = np.zeros(shape, np.uint16)
    with pytest.raises(ValueError, match=r"^zero-size image after pre-processing \((0x40|30x0)\)"):
        _process(image, _configured(**config))


def test_missing_image_sends_nothing_and_bad_axes_are_refused() -> None:
    """No image: no output; an axis of the wrong length: a ValueError naming it."""
    parameters = _configured()
    assert process_image(None, 1, TIMESTAMP, None, None, parameters, {}) is None
    with pytest.raises(ValueError, match=r"^x_axis has shape \(39,\), the image is 40 pixels"):
        process_image(_beam(), 1, TIMESTAMP, np.arange(39.0), None, parameters, {})


def test_block_averaging_sends_every_nth_frame() -> None:
    """averaging N > 0: nothing is sent until N frames are in, then their mean."""
    parameters = _configured(averaging=2)
    assert _process(_beam(), parameters) is None
    result = _process(_beam(), parameters)
    assert result is not None
    assert result["image"].dtype == np.float64


def test_configure_refuses_a_bad_value_quoting_it() -> None:
    """configure raises ValueError; the runner turns it into a refused configuration."""
    with pytest.raises(ValueError, match=r"^binning_x must be an integer >= 1, got 0$"):
        configure({"binning_x": 0})


def test_through_the_runner_configurator_state_survives_updates() -> None:
    """Loaded as the runner loads it: updates are validated, expanded, and keep the state."""
    configurator = Configurator(load(module="builtin_pipelines.beam_metrics"))
    configurator.apply({"averaging": 2, "image_good_region": {}})
    parameters = configurator.parameters
    assert parameters["image_good_region"] == {"threshold": 0.3, "gfscale": 1.8}
    assert _process(_beam(), parameters) is None  # one of two frames in
    configurator.apply({"averaging": 2, "image_threshold": 5})
    assert _process(_beam(), parameters) is not None  # the second frame: same buffer
    with pytest.raises(ConfigRefused, match=r"image_region_of_interest must be \["):
        configurator.apply({"image_region_of_interest": [0, -5, 0, 10]})
    assert parameters["image_threshold"] == 5


def _edge_image(kind: str) -> np.ndarray:
    """The inputs of the doc's edge-case table (§8.5), on a 10 x 20 frame."""
    image: np.ndarray
    if kind == "zeros":
        image = np.zeros((10, 20), np.uint16)
    elif kind == "saturated":
        image = np.full((10, 20), 65535, np.uint16)
    elif kind == "hot-pixel":  # away from the edges: a fit that fails keeps its initial guess
        image = np.zeros((10, 20), np.uint16)
        image[3, 9] = 500
    elif kind == "one-pixel":
        image = np.full((1, 1), 9, np.uint16)
    elif kind == "nan":
        image = np.ones((10, 20), np.float32)
        image[1, 1] = np.nan
    else:  # signed, with negative values
        image = np.arange(-10, 190, dtype=np.int32).reshape(10, 20)
    image.flags.writeable = False
    return image


@pytest.mark.parametrize("kind", ["zeros", "saturated", "hot-pixel", "one-pixel", "nan", "signed"])
def test_edge_cases_go_through_without_raising(kind: str) -> None:
    """Degenerate frames are measured as CamServer measures them (§8.5), nothing raises."""
    image = _edge_image(kind)
    result = _process(image, _configured())
    assert result is not None
    assert "x_fwhm" in result
    fwhm, sd, mean = result["x_fwhm"], result["x_fit_standard_deviation"], result["x_fit_mean"]
    if kind in ("zeros", "saturated"):
        assert np.isnan(fwhm)
        assert (sd, mean, result["x_center_of_mass"], result["x_rms"]) == (1.0, 0.0, 0.0, 0.0)
    elif kind == "hot-pixel":
        assert fwhm == 1.0
        assert (result["x_center_of_mass"], result["y_center_of_mass"]) == (9.0, 3.0)
        assert result["x_rms"] == 0.0
        assert mean == pytest.approx(9.0, rel=1e-6)  # the doc's tolerance (§8.7)
        assert sd == pytest.approx(1 / np.sqrt(2 * np.pi), rel=1e-6)
        assert result["x_fit_amplitude"] == pytest.approx(500, rel=1e-6)
    elif kind == "one-pixel":
        assert (fwhm, sd, result["x_center_of_mass"]) == (0.0, 1.0, 0.0)
    elif kind == "nan":
        assert result["max_value"] == 1.0
        assert np.isnan(result["intensity"])
    else:
        assert result["min_value"] == -10
