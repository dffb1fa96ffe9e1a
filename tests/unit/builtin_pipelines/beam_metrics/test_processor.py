"""processor.process: CamServer's standard outputs, keys, order and dtypes (camserver.md §8.2)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from builtin_pipelines.beam_metrics import fit, processor
from supervisor.contract.bsread import Encoder

from .metrics_support import axes, calibrated_axis, check_against_reference, spot

GOOD_REGION = {"threshold": 0.3, "gfscale": 1.8}
HEADER = ["x_axis", "y_axis", "image", "width", "height", "processing_parameters"]
STAMP = (1_700_000_000, 5)


def run(image, parameters, x_axis=None, y_axis=None, **kwargs):
    """process() and the reference on the same frame; returns (ours, reference)."""
    if x_axis is None:
        x_axis, y_axis = axes(image)
    ours = processor.process(image, x_axis, y_axis, STAMP, parameters, **kwargs)
    theirs = check_against_reference(image, x_axis, y_axis, parameters, ours)
    return ours, theirs


@pytest.mark.parametrize(
    ("dtype", "background"),
    [
        (np.uint8, 10),
        (np.uint16, 200),
        (np.uint32, 5000),
        (np.int8, 3),
        (np.int16, 50),
        (np.int32, 800),
        (np.float32, 20),
        (np.float64, 20),
    ],
)
def test_default_outputs_match_the_reference_for_every_dtype(dtype, background):
    """Every key, its order and dtype match CamServer's for each supported image dtype."""
    amplitude = 100 if np.dtype(dtype).itemsize == 1 else 3000
    image = spot((90, 130), (70.3, 40.8), (14, 9), amplitude, background, dtype, seed=1)
    ours, _ = run(image, {"fw_threshold": 0.2})
    assert type(ours["min_value"]) is np.dtype(dtype).type


@pytest.mark.parametrize("seed", range(3))
def test_spots_of_several_sizes_and_offsets_match_the_reference(seed):
    """Seeded Poisson spots of different sizes, widths and backgrounds all match."""
    rng = np.random.default_rng(100 + seed)
    height, width = int(rng.integers(40, 400)), int(rng.integers(40, 500))
    center = (rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height)
    sigma = (rng.uniform(0.04, 0.2) * width, rng.uniform(0.04, 0.2) * height)
    image = spot((height, width), center, sigma, 2000, rng.uniform(0, 500), np.uint16, seed)
    run(image, {"image_good_region": GOOD_REGION, "fw_threshold": 0.2})


def test_a_full_camera_frame_matches_the_reference():
    """A 2560x2160 uint16 frame, with good region and 5 vertical slices, matches CamServer's."""
    image = spot((2160, 2560), (1317, 1027), (150, 110), 1000, 20, np.uint16, seed=7)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 5, "scale": 2, "orientation": "vertical"},
    }
    ours, _ = run(image, parameters)
    assert ours["slice_4_center_y"] is not None


def test_calibrated_descending_axes_match_the_reference():
    """Inverted calibrated float32 axes: fits, widths, good region and slices in axis units."""
    image = spot((160, 220), (120, 70), (18, 12), 5000, 30, np.uint16, seed=3, tilt=0.2)
    x_axis = calibrated_axis(220, 105, 0.0125)
    y_axis = calibrated_axis(160, 81, 0.02)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 5, "scale": 2, "orientation": "horizontal"},
        "fw_threshold": 0.1,
    }
    ours, _ = run(image, parameters, x_axis, y_axis)
    assert ours["x_fit_mean"] < 0  # the beam is right of the origin on an inverted axis
    assert ours["coupling"] is not None


@pytest.mark.parametrize(
    "center", [(3.0, 40.0), (196.0, 5.0), (-6.0, 70.0), (100.0, 151.0)], ids=str
)
def test_spots_near_or_past_the_edges_match_the_reference(center):
    """A beam at the edge of the image (even half outside it) gives CamServer's numbers."""
    image = spot((150, 200), center, (9, 7), 4000, 40, np.uint16, seed=5)
    run(image, {"image_good_region": GOOD_REGION, "fw_threshold": 0.3})


@pytest.mark.parametrize("orientation", ["vertical", "horizontal"])
@pytest.mark.parametrize("number", range(1, 8))
def test_good_region_and_slices_match_the_reference(number, orientation):
    """1 to 7 slices, both orientations, on a coupled (tilted) beam."""
    image = spot((220, 260), (131, 104), (30, 16), 3000, 25, np.uint16, seed=number, tilt=0.3)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": number, "scale": 2.5, "orientation": orientation},
    }
    ours, _ = run(image, parameters)
    odd = number + 1 - number % 2
    assert ours["slice_amount"] == odd
    assert ours["good_region"] is not None
    assert ours["slice_length"] is not None


def test_an_even_number_of_slices_adds_the_extra_slice_after_the_coupling_keys():
    """4 slices become 5 and slice_4's keys land after the coupling keys, as in CamServer."""
    image = spot((200, 240), (120, 100), (26, 18), 3000, 25, np.uint16, seed=9, tilt=0.1)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 4, "scale": 2, "orientation": "vertical"},
    }
    ours, _ = run(image, parameters)
    keys = list(ours)
    assert keys.index("slice_3_intensity") < keys.index("coupling") < keys.index("slice_4_center_x")
    assert keys[-4:] == [f"slice_4_{k}" for k in processor._SLICE_KEYS]


def test_an_unknown_orientation_leaves_every_slice_key_none():
    """An orientation other than vertical/horizontal raises inside: slice keys stay None."""
    image = spot((120, 150), (75, 60), (15, 10), 3000, 25, np.uint16, seed=2)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 3, "scale": 2, "orientation": "diagonal"},
    }
    ours, _ = run(image, parameters)
    assert ours["slice_orientation"] == "diagonal"
    assert ours["gr_intensity"] is not None
    assert all(
        v is None
        for k, v in ours.items()
        if k.startswith(("slice_", "coupling")) and k not in ("slice_orientation", "slice_amount")
    )


def test_one_slice_is_written_but_gives_no_coupling():
    """One x-slice is one point: the line fit raises, coupling stays None, the slice remains."""
    image = spot((200, 120), (60, 100), (12, 30), 3000, 25, np.uint16, seed=4)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 1, "scale": 2, "orientation": "vertical"},
    }
    ours, _ = run(image, parameters)
    assert ours["coupling"] is None
    assert ours["coupling_slope"] is None
    assert ours["slice_0_center_y"] is not None
    assert ours["slice_length"] is not None


def test_fw_threshold_adds_full_widths_after_the_fwhm():
    """fw_threshold adds x_fw and y_fw right after the FWHM keys; without it they are absent."""
    image = spot((80, 100), (50, 40), (10, 8), 3000, 25, np.uint16, seed=6)
    with_fw, _ = run(image, {"fw_threshold": 0.25})
    without, _ = run(image, {})
    keys = list(with_fw)
    assert keys[keys.index("y_fwhm") + 1 : keys.index("y_fwhm") + 3] == ["x_fw", "y_fw"]
    assert "x_fw" not in without
    assert with_fw["x_fw"] > with_fw["x_fwhm"]


def test_worked_example_of_the_upstream_test():
    """camserver.md §8.6: a 2x2 square of 10000 in a 10x10 image."""
    image = np.zeros((10, 10), np.uint16)
    image[4:6, 4:6] = 10000
    ours, _ = run(image, {})
    expected_profile = [0, 0, 0, 0, 20000, 20000, 0, 0, 0, 0]
    assert ours["x_profile"].tolist() == ours["y_profile"].tolist() == expected_profile
    assert ours["intensity"] == 40000
    for a in "xy":
        assert ours[f"{a}_center_of_mass"] == 4.5
        assert ours[f"{a}_rms"] == 0.5
        assert ours[f"{a}_fit_mean"] == 4.0
        assert math.isclose(ours[f"{a}_fit_standard_deviation"], 0.79788456, rel_tol=1e-8)
        assert ours[f"{a}_fit_amplitude"] == 20000
        assert ours[f"{a}_fit_offset"] == 0
        assert ours[f"{a}_fwhm"] == 2.0


def test_all_zero_image():
    """§8.5: fit keeps its guess (sd 1, mean axis[0]), FWHM nan, every gr_* key None."""
    image = np.zeros((40, 50), np.uint16)
    ours, _ = run(image, {"image_good_region": GOOD_REGION})
    assert ours["min_value"] == ours["max_value"] == 0
    assert ours["intensity"] == 0
    assert ours["x_fit_standard_deviation"] == 1.0
    assert ours["x_fit_mean"] == 0.0
    assert ours["x_fit_amplitude"] == 0
    assert ours["x_fit_offset"] == 0
    assert ours["x_center_of_mass"] == 0.0
    assert ours["x_rms"] == 0.0
    assert math.isnan(ours["x_fwhm"])
    assert all(ours[k] is None for k in processor._GOOD_REGION_KEYS)


def test_all_saturated_image():
    """§8.5: constant profiles, offset = that constant, amplitude 0, sd 1, FWHM nan."""
    image = np.full((40, 50), 65535, np.uint16)
    ours, _ = run(image, {})
    assert ours["x_profile"].tolist() == [65535 * 40] * 50
    assert ours["x_fit_offset"] == 65535 * 40
    assert ours["x_fit_amplitude"] == 0
    assert ours["x_fit_standard_deviation"] == 1.0
    assert ours["x_fit_mean"] == 0.0
    assert ours["x_center_of_mass"] == 0.0
    assert math.isnan(ours["y_fwhm"])


def test_single_hot_pixel():
    """§8.5: centre of mass at the pixel, RMS 0, fit = guess, sd 1/sqrt(2 pi), FWHM 1 pixel."""
    image = np.zeros((40, 50), np.uint16)
    image[12, 31] = 4000
    ours, _ = run(image, {"image_good_region": GOOD_REGION})
    assert (ours["x_center_of_mass"], ours["y_center_of_mass"]) == (31.0, 12.0)
    assert ours["x_rms"] == 0.0
    assert ours["x_fit_amplitude"] == 4000
    assert ours["x_fit_mean"] == 31.0
    assert math.isclose(ours["x_fit_standard_deviation"], 1 / math.sqrt(2 * math.pi))
    assert ours["x_fwhm"] == 1.0


def test_one_pixel_image():
    """§8.5: a 1x1 image has FWHM 0.0 (the exception path), fit sd 1.0, centre of mass 0."""
    ours, _ = run(np.array([[7]], np.uint16), {})
    assert ours["x_fwhm"] == 0.0
    assert ours["x_fit_standard_deviation"] == 1.0
    assert ours["x_center_of_mass"] == 0.0


def test_float_image_with_nan():
    """§8.5: min/max skip NaN; intensity, moments, FWHM and fit sd are nan."""
    image = spot((40, 50), (25, 20), (6, 5), 300, 20, np.float32, seed=8)
    image[3, 4] = np.nan
    ours, _ = run(image, {})
    assert not math.isnan(ours["min_value"])
    assert not math.isnan(ours["max_value"])
    for key in ("intensity", "x_center_of_mass", "x_rms", "x_fwhm", "x_fit_standard_deviation"):
        assert math.isnan(ours[key]), key


def test_all_nan_image_gives_nan_extremes_without_warnings():
    """An all-NaN float image: nan min and max, no warning (nanmin would warn)."""
    ours, _ = run(np.full((5, 6), np.nan, np.float64), {})
    assert math.isnan(ours["min_value"])
    assert math.isnan(ours["max_value"])


def test_signed_image_with_negative_values():
    """§8.5: processed normally; min_value is negative and of the image dtype."""
    image = spot((60, 70), (35, 30), (8, 6), 2000, 300, np.int16, seed=10)
    ours, _ = run(image, {"image_good_region": GOOD_REGION})
    assert ours["min_value"] < 0
    assert type(ours["min_value"]) is np.int16


def test_zero_size_image_raises_value_error():
    """§8.5: an image without pixels raises ValueError, as nanmin does."""
    image = np.zeros((0, 5), np.uint16)
    with pytest.raises(ValueError, match="zero-size"):
        processor.process(image, np.zeros(5, np.float32), np.zeros(0, np.float32), None, {})


def test_processing_error_sends_only_the_header_with_a_zero_image():
    """§8.4: with processing_error set, six keys and an all-zero image of the same dtype."""
    image = spot((20, 30), (15, 10), (4, 3), 500, 10, np.uint16, seed=11)
    x_axis, y_axis = axes(image)
    parameters = {"processing_error": "Bad background image size", "image_good_region": GOOD_REGION}
    ours = processor.process(image, x_axis, y_axis, STAMP, parameters)
    assert list(ours) == HEADER
    assert ours["image"].dtype == np.uint16
    assert not ours["image"].any()
    assert json.loads(ours["processing_parameters"]) == parameters


def test_processing_parameters_drop_background_data_and_accept_numpy_values():
    """background_data is left out; numpy scalars and arrays are sent as JSON numbers."""
    image = spot((20, 30), (15, 10), (4, 3), 500, 10, np.uint16, seed=12)
    parameters = {
        "background_data": np.ones((20, 30)),
        "image_threshold": np.int64(3),
        "fw_threshold": np.float32(0.25),
        "image_region_of_interest": np.array([1, 2, 3, 4]),
    }
    x_axis, y_axis = axes(image)
    ours = processor.process(image, x_axis, y_axis, STAMP, parameters)
    assert json.loads(ours["processing_parameters"]) == {
        "image_threshold": 3,
        "fw_threshold": 0.25,
        "image_region_of_interest": [1, 2, 3, 4],
    }
    assert "background_data" in parameters  # the caller's dict is not touched


def test_timestamp_forms():
    """(sec, ns) gives sec + ns/1e9; None gives the current time; seconds pass through."""
    image = np.ones((4, 5), np.uint16)
    x_axis, y_axis = axes(image)
    assert processor.process(image, x_axis, y_axis, (10, 500_000_000), {})["timestamp"] == 10.5
    assert processor.process(image, x_axis, y_axis, 12.25, {})["timestamp"] == 12.25
    before = time.time()
    now = processor.process(image, x_axis, y_axis, None, {})["timestamp"]
    assert before <= now <= time.time()


def test_numpy_fallback_matches_the_reference():
    """Without the native kernels (native=None) the outputs are still CamServer's."""
    image = spot((150, 180), (90, 70), (20, 14), 3000, 30, np.uint16, seed=13, tilt=0.2)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 3, "scale": 2, "orientation": "vertical"},
    }
    run(image, parameters, native=None)


def test_healthy_spots_never_need_curve_fit(monkeypatch):
    """A well-exposed spot is settled by the fast fit alone: curve_fit is never called."""

    def refuse(*args):
        raise AssertionError("curve_fit fallback used on a healthy spot")

    monkeypatch.setattr(fit, "_curve_fit", refuse)
    image = spot((300, 400), (210, 140), (40, 25), 1000, 20, np.uint16, seed=14, tilt=0.1)
    x_axis, y_axis = axes(image)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 5, "scale": 2, "orientation": "vertical"},
    }
    out = processor.process(image, x_axis, y_axis, STAMP, parameters)
    assert out["coupling"] is not None


def test_outputs_encode_as_bsread_with_none_as_missing():
    """The output dict goes through the contract's bsread encoder as it is."""
    image = spot((60, 80), (40, 30), (8, 6), 2000, 20, np.uint16, seed=15)
    x_axis, y_axis = axes(image)
    parameters = {
        "image_good_region": GOOD_REGION,
        "image_slices": {"number_of_slices": 3, "scale": 40, "orientation": "vertical"},
    }
    out = processor.process(image, x_axis, y_axis, STAMP, parameters)
    assert out["slice_0_center_x"] is None  # a slice too wide to fit: a missing value
    frames = Encoder().encode(out, 1, STAMP)
    header = json.loads(bytes(frames[1]))
    types = {c["name"]: c.get("type", "float64") for c in header["channels"]}
    assert types["width"] == "int64"
    assert types["x_fwhm"] == "float64"
    assert types["good_region"] == "int64"
    assert types["x_profile"] == "int64"
