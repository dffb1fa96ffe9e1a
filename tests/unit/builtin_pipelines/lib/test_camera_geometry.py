"""CamServer's camera-side geometry: order of operations, calibrated axes, validation."""

from __future__ import annotations

import numpy as np
import pytest

from builtin_pipelines import camera_simulation
from builtin_pipelines.lib.camera_geometry import KEYS, CameraGeometry, geometry_key


def image(height: int = 6, width: int = 8, dtype: str = "uint16") -> np.ndarray:
    """Distinct pixels, so that any misplaced one shows."""
    return np.arange(height * width, dtype=dtype).reshape(height, width)


def test_nothing_configured_passes_the_frame_through_without_a_copy() -> None:
    """No geometry (or every key None): the very same array comes back, axes are pixel indices."""
    frame = image()
    frame.flags.writeable = False
    for parameters in ({}, dict.fromkeys(KEYS)):
        geometry = CameraGeometry(parameters)
        assert geometry.identity
        assert geometry.apply(frame) is frame
        x_axis, y_axis = geometry.axes(8, 6)
        assert x_axis.dtype == y_axis.dtype == np.float32
        np.testing.assert_array_equal(x_axis, np.linspace(0, 7, 8))
        np.testing.assert_array_equal(y_axis, np.linspace(0, 5, 6))
    assert geometry.axes(8, 6)[0] is geometry.axes(8, 6)[0]  # cached: no allocation per frame


def test_calibrated_axes_follow_the_documented_formulas_on_worked_numbers() -> None:
    """Marker 200x400 px for 1000x2000 um at 60/0 degrees: 2.5 and 5 um per pixel, inverted."""
    calibration = {"reference_marker": [100, 200, 300, 600], "reference_marker_width": 1000.0,
                   "reference_marker_height": 2000.0, "angle_horizontal": 60.0}  # fmt: skip
    x_axis, y_axis = CameraGeometry({"camera_calibration": calibration}).axes(400, 800)
    # origin_x = int((300 - 100) / 2 + 100) = 200, pixel_size_x = 1000 / 200 * cos(60) = 2.5
    assert x_axis[[0, 200, 399]].tolist() == pytest.approx([500.0, 0.0, -497.5])
    # origin_y = int((600 - 200) / 2 + 200) = 400, pixel_size_y = 2000 / 400 * cos(0) = 5
    assert y_axis[[0, 400, 401, 799]].tolist() == pytest.approx([2000.0, 0.0, -5.0, -1995.0])
    assert x_axis.dtype == y_axis.dtype == np.float32


def test_calibrated_axes_are_camservers_float32_bit_for_bit() -> None:
    """The axis is CamServer's in-place float32 arithmetic, so it matches it exactly."""
    calibration = {"reference_marker": [13, 7, 911, 603], "reference_marker_width": 1234.5,
                   "reference_marker_height": 987.6, "angle_horizontal": 12.3,
                   "angle_vertical": 45.6}  # fmt: skip
    x_axis, y_axis = CameraGeometry({"camera_calibration": calibration}).axes(1280, 960)
    # camserver.md §8.1.2, written out as CamServer's get_x_y_axis computes it.
    size_y = 987.6 / (603 - 7)
    size_y *= np.cos(45.6 * np.pi / 180)
    size_x = 1234.5 / (911 - 13)
    size_x *= np.cos(12.3 * np.pi / 180)
    expected_x = np.linspace(0, 1279, 1280, dtype="f")
    expected_x -= int((911 - 13) / 2 + 13)
    expected_x *= -size_x
    expected_y = np.linspace(0, 959, 960, dtype="f")
    expected_y -= int((603 - 7) / 2 + 7)
    expected_y *= -size_y
    np.testing.assert_array_equal(x_axis, expected_x)
    np.testing.assert_array_equal(y_axis, expected_y)


def test_origin_is_truncated_like_int() -> None:
    """origin = int((lr - ul) / 2 + ul): 2.5 becomes 2 and -2.5 becomes -2 (towards zero)."""
    calibration = {"reference_marker": [1, -4, 4, -1], "reference_marker_width": 3.0,
                   "reference_marker_height": 3.0}  # fmt: skip
    x_axis, y_axis = CameraGeometry({"camera_calibration": calibration}).axes(5, 5)
    assert x_axis.tolist() == [2.0, 1.0, 0.0, -1.0, -2.0]  # origin_x = int(2.5) = 2
    assert y_axis.tolist() == [-2.0, -3.0, -4.0, -5.0, -6.0]  # origin_y = int(-2.5) = -2


def test_a_pixel_size_that_cannot_be_computed_makes_both_one() -> None:
    """A marker of zero width: both pixel sizes are 1.0, the other one computable or not."""
    calibration = {"reference_marker": [10, 0, 10, 50], "reference_marker_height": 100.0}
    x_axis, y_axis = CameraGeometry({"camera_calibration": calibration}).axes(20, 60)
    np.testing.assert_array_equal(x_axis, -(np.arange(20) - 10))  # origin 10, size 1.0
    np.testing.assert_array_equal(y_axis, -(np.arange(60) - 25))  # size 1.0, not 2.0


def test_missing_calibration_keys_take_camservers_defaults() -> None:
    """Defaults: marker [0, 0, 100, 100] for 100 x 100, no angle; {} means no calibration."""
    x_axis, _ = CameraGeometry({"camera_calibration": {"angle_vertical": 0}}).axes(101, 3)
    np.testing.assert_array_equal(x_axis, 50.0 - np.arange(101))
    plain, _ = CameraGeometry({"camera_calibration": {}}).axes(101, 3)
    np.testing.assert_array_equal(plain, np.arange(101))


def test_operations_run_in_camservers_order() -> None:
    """binning, mirror_x, mirror_y, rot90, roi: the result of CamServer's transform_image."""
    frame = np.random.default_rng(1).integers(0, 5000, (13, 17), dtype=np.uint16)
    parameters = {"binning_x": 2, "binning_y": 3, "mirror_x": True, "mirror_y": True,
                  "rotate": 3, "roi": [1, 2, 2, 5]}  # fmt: skip
    binned = frame[:12, :16].reshape(4, 3, 8, 2).sum(axis=(1, 3)).astype(np.uint16)
    expected = np.rot90(np.flipud(np.fliplr(binned)), 3)[2:7, 1:3]
    result = CameraGeometry(parameters).apply(frame)
    np.testing.assert_array_equal(result, expected)
    assert result.flags.c_contiguous
    # Mirroring before the rotation is not the same as after it: the order is visible.
    turned_first = np.fliplr(np.rot90(image(), 1))
    assert not np.array_equal(CameraGeometry({"mirror_x": True, "rotate": 1}).apply(image()),
                              turned_first)  # fmt: skip


def test_binning_sums_whole_blocks_clipped_to_uint16_or_averages_them() -> None:
    """Leftover rows and columns are cut; sums clip at 65535; binning_mean truncates the mean."""
    frame = np.full((5, 7), 30000, np.uint16)
    frame[0, 0] = 1
    summed = CameraGeometry({"binning_x": 2, "binning_y": 2}).apply(frame)
    assert summed.dtype == np.uint16
    assert summed.tolist() == [[65535, 65535, 65535]] * 2
    mean = CameraGeometry({"binning_x": 2, "binning_y": 2, "binning_mean": True}).apply(frame)
    assert mean.tolist() == [[22500, 30000, 30000], [30000, 30000, 30000]]
    x_axis, y_axis = CameraGeometry({"binning_x": 2, "binning_y": 2}).axes(7, 5)
    assert (x_axis.tolist(), y_axis.tolist()) == ([0.0, 1.0, 2.0], [0.0, 1.0])


def test_axes_follow_the_rotation_and_are_cut_by_the_roi() -> None:
    """A quarter turn swaps width and height; the ROI cuts the axes as it cuts the image."""
    geometry = CameraGeometry({"rotate": 1, "roi": [1, 2, 3, 2]})
    x_axis, y_axis = geometry.axes(6, 4)  # 6 wide, 4 high; turned: 4 wide, 6 high
    assert (x_axis.tolist(), y_axis.tolist()) == ([1.0, 2.0], [3.0, 4.0])
    assert geometry.apply(image(4, 6)).shape == (2, 2)
    assert geometry.size(6, 4) == (2, 2)
    calibrated = CameraGeometry({"roi": [2, 3, 0, 1], "camera_calibration": {
        "reference_marker": [0, 0, 10, 10], "reference_marker_width": 10.0}})  # fmt: skip
    assert calibrated.axes(10, 4)[0].tolist() == [3.0, 2.0, 1.0]  # (i - 5) * -1 for i = 2..4


def test_a_roi_of_whole_rows_stays_a_view_and_others_are_copied_once() -> None:
    """A band of full rows needs no copy; any other cut is made contiguous with one copy."""
    frame = image(6, 8)
    band = CameraGeometry({"roi": [0, 8, 2, 3]}).apply(frame)
    assert np.shares_memory(band, frame)
    np.testing.assert_array_equal(band, frame[2:5])
    cut = CameraGeometry({"roi": [1, 3, 2, 3]}).apply(frame)
    assert cut.flags.c_contiguous
    assert not np.shares_memory(cut, frame)
    np.testing.assert_array_equal(cut, frame[2:5, 1:4])


def test_a_roi_outside_the_image_is_an_error_not_an_empty_frame() -> None:
    """A ROI or binning that leaves no pixel raises, naming the options and the image size."""
    with pytest.raises(ValueError, match="roi \\[8, 2, 0, 2\\] leave no pixel of a 8x6 image"):
        CameraGeometry({"roi": [8, 2, 0, 2]}).apply(image())
    with pytest.raises(ValueError, match="binning_x 9, binning_y 1"):
        CameraGeometry({"binning_x": 9}).size(8, 6)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"mirror_x": "yes"}, "mirror_x must be true or false, got 'yes'"),
        ({"binning_mean": 1}, "binning_mean must be true or false, got 1"),
        ({"binning_y": 0}, "binning_y must be a positive integer, got 0"),
        ({"binning_x": 1.5}, "binning_x must be a positive integer, got 1.5"),
        ({"rotate": 90.0}, "rotate must be a whole number of quarter turns, got 90.0"),
        (
            {"roi": [0, 10, 0]},
            "roi must be \\[offset_x, size_x, offset_y, size_y\\].*got \\[0, 10, 0\\]",
        ),
        ({"roi": [-1, 10, 0, 5]}, "offsets >= 0 and sizes > 0, got \\[-1, 10, 0, 5\\]"),
        ({"roi": [0, 0, 0, 5]}, "got \\[0, 0, 0, 5\\]"),
        ({"camera_calibration": [1, 2]}, "camera_calibration must be an object, got \\[1, 2\\]"),
        (
            {"camera_calibration": {"marker": 1}},
            "unknown key\\(s\\) 'marker' \\(known: reference_marker, ",
        ),
        (
            {"camera_calibration": {"reference_marker": [0, 0, 1]}},
            "reference_marker must be 4 numbers \\[ulx, uly, lrx, lry\\], got \\[0, 0, 1\\]",
        ),
        (
            {"camera_calibration": {"angle_vertical": "45"}},
            "camera_calibration.angle_vertical must be a number, got '45'",
        ),
        (
            {"camera_calibration": {"reference_marker_width": float("nan")}},
            "reference_marker_width must be a number, got nan",
        ),
    ],
)
def test_bad_geometry_is_refused_quoting_the_value(parameters: dict, message: str) -> None:
    """Each invalid key raises a ValueError that names it and quotes the bad value."""
    with pytest.raises(ValueError, match=message):
        CameraGeometry(parameters)


def test_geometry_key_changes_with_every_geometry_option() -> None:
    """Sources rebuild the geometry when the key changes: every option is part of it."""
    base = geometry_key({})
    assert geometry_key({"width": 10}) == base
    for key in KEYS:
        assert geometry_key({key: 1}) != base


def test_the_simulated_camera_sends_frames_through_the_geometry() -> None:
    """camera_simulation applies the geometry once per ring frame and sends its axes."""
    parameters = {"width": 40, "height": 30, "rate": 1000, "noise": 0, "rotate": 1,
                  "roi": [0, 20, 5, 10], "camera_calibration": {"reference_marker": [0, 0, 30, 40]}}  # fmt: skip  # noqa: E501
    camera_simulation.configure(parameters)
    source = camera_simulation.generate(parameters)
    data, _, _ = next(item for item in source if item is not None)
    plain = next(i for i in camera_simulation.generate({**parameters, "rotate": 0, "roi": None})
                 if i is not None)[0]  # fmt: skip
    geometry = CameraGeometry(parameters)
    np.testing.assert_array_equal(data["image"], geometry.apply(plain["image"]))
    assert data["image"].shape == (10, 20)
    assert (data["width"], data["height"]) == (20, 10)
    assert not data["image"].flags.writeable
    np.testing.assert_array_equal(data["x_axis"], geometry.axes(40, 30)[0])
    np.testing.assert_array_equal(data["y_axis"], geometry.axes(40, 30)[1])


def test_the_simulated_camera_refuses_a_roi_outside_its_image() -> None:
    """configure() checks the geometry against width and height."""
    with pytest.raises(ValueError, match="leave no pixel of a 40x30 image"):
        camera_simulation.configure({"width": 40, "height": 30, "roi": [50, 10, 0, 10]})
