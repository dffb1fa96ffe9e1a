"""Pre-processing: each step against the plain numpy rule of CamServer's doc (§8.1); the order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.ndimage

from builtin_pipelines.beam_metrics.backgrounds import BackgroundStore
from builtin_pipelines.beam_metrics.parameters import parse
from builtin_pipelines.beam_metrics.preprocess import Frame, PreprocessError, Preprocessor

H, W = 6, 10  # deliberately neither square nor multiples of 4


def _image(height: int = H, width: int = W, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """A deterministic, asymmetric, read-only image (as decoded from bsread)."""
    values = (np.arange(height * width).reshape(height, width) * 37 + seed * 11) % 1000
    image = values.astype(dtype)
    image.flags.writeable = False
    return image


def _axes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated-looking float32 axes: no two values alike, so any mix-up shows."""
    height, width = image.shape
    return (
        (np.arange(width, dtype=np.float32) * 0.5 + 10).astype(np.float32),
        (np.arange(height, dtype=np.float32) * -2 + 3).astype(np.float32),
    )


def run(
    image: np.ndarray,
    parameters: dict[str, Any],
    pre: Preprocessor | None = None,
    folder: Path | None = None,
) -> tuple[Frame | None, list[str]]:
    """Receive loop plus pre-processing of one frame, as the pipeline entry runs them."""
    settings = parse(parameters)
    pre = pre or Preprocessor(BackgroundStore(folder))
    x_axis, y_axis = _axes(image)
    frame = pre.receive(image, x_axis, y_axis, settings)
    if frame is None:
        return None, []
    return pre.preprocess(frame, settings, parameters)


def _run(image: np.ndarray, parameters: dict[str, Any], **kwargs: Any) -> Frame:
    frame, errors = run(image, parameters, **kwargs)
    assert frame is not None
    assert not errors
    return frame


def _bin(array: np.ndarray, bx: int, by: int, mean: bool = False) -> np.ndarray:
    """CamServer's rule: crop to multiples, block sum clipped to 0..65535 (or mean), uint16."""
    sy, sx = array.shape[0] // by * by, array.shape[1] // bx * bx
    blocks = array[:sy, :sx].reshape(sy // by, by, sx // bx, bx).astype(np.float64)
    binned = blocks.mean(axis=(1, 3)) if mean else blocks.sum(axis=(1, 3))
    return np.clip(binned, 0, 65535).astype(np.uint16)


def _save(folder: Path, name: str, data: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", data)


def test_default_parameters_hand_on_the_received_image_itself() -> None:
    """No step configured: the same read-only image and axis objects, not a copy."""
    image = _image()
    x_axis, y_axis = _axes(image)
    settings = parse({})
    pre = Preprocessor(BackgroundStore(None))
    frame = pre.receive(image, x_axis, y_axis, settings)
    assert frame is not None
    frame, errors = pre.preprocess(frame, settings, {})
    assert frame.image is image
    assert frame.x_axis is x_axis
    assert frame.y_axis is y_axis
    assert errors == []


def test_copy_gives_a_private_writable_image() -> None:
    """copy: the image handed on is an equal copy, not the received buffer."""
    image = _image()
    frame = _run(image, {"copy": True})
    assert not np.shares_memory(frame.image, image)
    np.testing.assert_array_equal(frame.image, image)


@pytest.mark.parametrize("mean", [False, True])
def test_binning_blocks_the_image_and_averages_the_axes(mean: bool) -> None:
    """Crop to multiples, block sum clipped (or block mean) to uint16; axes block-averaged."""
    image = (_image().astype(np.uint32) * 60).astype(np.uint16)  # block sums exceed 65535
    frame = _run(image, {"binning_x": 3, "binning_y": 4, "binning_mean": mean})
    assert frame.image.dtype == np.uint16
    np.testing.assert_array_equal(frame.image, _bin(image, 3, 4, mean))
    if not mean:
        assert frame.image.max() == 65535
    x_axis, y_axis = _axes(image)
    np.testing.assert_array_equal(frame.x_axis, x_axis[:9].reshape(3, 3).mean(1))
    np.testing.assert_array_equal(frame.y_axis, y_axis[:4].reshape(1, 4).mean(1))
    assert frame.x_axis.dtype == frame.y_axis.dtype == np.float32


def test_clamped_background_subtraction(tmp_path: Path) -> None:
    """enable true: image - background, 0 where the background is larger; input untouched."""
    image, background = _image(), _image(seed=5)
    _save(tmp_path, "bg", background)
    frame = _run(
        image, {"image_background": "bg", "image_background_enable": True}, folder=tmp_path
    )
    expected = np.where(background > image, 0, image.astype(np.int64) - background)
    assert frame.image.dtype == np.uint16
    np.testing.assert_array_equal(frame.image, expected)
    np.testing.assert_array_equal(image, _image())


def test_signed_background_subtraction(tmp_path: Path) -> None:
    """enable "signed": the image becomes int32 and negative values stay."""
    image, background = _image(), _image(seed=5)
    _save(tmp_path, "bg", background)
    parameters = {"image_background": "bg", "image_background_enable": "signed"}
    frame = _run(image, parameters, folder=tmp_path)
    assert frame.image.dtype == np.int32
    np.testing.assert_array_equal(frame.image, image.astype(np.int32) - background)
    assert frame.image.min() < 0


def test_passive_background_is_handed_over_not_subtracted(tmp_path: Path) -> None:
    """enable "passive": the image is untouched, the array is in parameters["background_data"]."""
    image, background = _image(), _image(seed=5)
    _save(tmp_path, "bg", background)
    parameters: dict[str, Any] = {"image_background": "bg", "image_background_enable": "passive"}
    pre = Preprocessor(BackgroundStore(tmp_path))
    frame = _run(image, parameters, pre=pre)
    assert frame.image is image
    np.testing.assert_array_equal(parameters["background_data"], background)
    parameters["image_background_enable"] = False
    _run(image, parameters, pre=pre)
    assert "background_data" not in parameters


def test_background_is_binned_like_the_image(tmp_path: Path) -> None:
    """With binning, the full-size background is binned the same way, then subtracted."""
    image, background = _image(), _image(seed=5)
    _save(tmp_path, "bg", background)
    parameters = {
        "image_background": "bg",
        "image_background_enable": True,
        "binning_x": 2,
        "binning_y": 2,
    }
    frame = _run(image, parameters, folder=tmp_path)
    binned, binned_background = _bin(image, 2, 2), _bin(background, 2, 2)
    expected = np.where(binned_background > binned, 0, binned.astype(np.int64) - binned_background)
    np.testing.assert_array_equal(frame.image, expected)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"^Invalid background image file: bg: not found in "),
        (
            {"bg": np.zeros((3, 4), np.uint16)},
            r"^Bad background image size: background 'bg' is 3x4, the image is 6x10$",
        ),
    ],
    ids=["missing", "wrong-size"],
)
def test_background_errors_raise_without_notify_on_error(
    tmp_path: Path, files: dict[str, np.ndarray], message: str
) -> None:
    """A missing or mis-sized background fails the frame with CamServer's message."""
    for name, data in files.items():
        _save(tmp_path, name, data)
    parameters = {"image_background": "bg", "image_background_enable": True}
    with pytest.raises(PreprocessError, match=message):
        run(_image(), parameters, folder=tmp_path)


def test_background_error_with_notify_on_error_skips_the_subtraction(tmp_path: Path) -> None:
    """notify_on_error: the error is returned and the image goes on unsubtracted."""
    image = _image()
    parameters = {
        "image_background": "bg",
        "image_background_enable": True,
        "notify_on_error": True,
    }
    frame, errors = run(image, parameters, folder=tmp_path)
    assert frame is not None
    assert frame.image is image
    assert len(errors) == 1
    assert errors[0].startswith("Invalid background image file: bg")


@pytest.mark.parametrize(("mirror_x", "mirror_y"), [(True, False), (False, True), (True, True)])
def test_mirroring_flips_the_image_and_its_axis(mirror_x: bool, mirror_y: bool) -> None:
    """mirror_x is fliplr with x_axis reversed; mirror_y is flipud with y_axis reversed."""
    image = _image()
    x_axis, y_axis = _axes(image)
    frame = _run(image, {"mirror_x": mirror_x, "mirror_y": mirror_y})
    expected = np.flipud(np.fliplr(image) if mirror_x else image) if mirror_y else np.fliplr(image)
    np.testing.assert_array_equal(frame.image, expected)
    np.testing.assert_array_equal(frame.x_axis, x_axis[::-1] if mirror_x else x_axis)
    np.testing.assert_array_equal(frame.y_axis, y_axis[::-1] if mirror_y else y_axis)
    assert np.shares_memory(frame.image, image)  # a view, not a copy


@pytest.mark.parametrize("angle", [90, 180, 270, -90, 450, 100])
def test_ortho_rotation_turns_image_and_axes(angle: float) -> None:
    """rot90 by int(angle/90); the axes follow the doc's table for k = int(angle/90) mod 4."""
    image = _image()
    x, y = _axes(image)
    frame = _run(image, {"rotation": {"angle": angle, "mode": "ortho"}})
    np.testing.assert_array_equal(frame.image, np.rot90(image, int(angle / 90)))
    table = {1: (y, x[::-1]), 2: (x[::-1], y[::-1]), 3: (y[::-1], x)}
    expected_x, expected_y = table[int(angle / 90) % 4]
    np.testing.assert_array_equal(frame.x_axis, expected_x)
    np.testing.assert_array_equal(frame.y_axis, expected_y)
    assert frame.image.shape == (len(frame.y_axis), len(frame.x_axis))


@pytest.mark.parametrize(
    ("rotation", "order", "mode", "cval"),
    [
        (30, 1, "constant", 0.0),
        ({"angle": -20, "mode": "5.5"}, 1, "constant", 5.5),
        ({"angle": 45, "order": 3, "mode": "nearest"}, 3, "nearest", 0.0),
    ],
)
def test_other_rotations_use_scipy_and_keep_the_axes(
    rotation: Any, order: int, mode: str, cval: float
) -> None:
    """scipy.ndimage.rotate(reshape=False, prefilter=True); a numeric mode is the fill value."""
    image = _image(dtype="float64")
    x_axis, y_axis = _axes(image)
    frame = _run(image, {"rotation": rotation})
    angle = rotation if isinstance(rotation, int) else rotation["angle"]
    expected = scipy.ndimage.rotate(
        image, angle, reshape=False, order=order, mode=mode, cval=cval, prefilter=True
    )
    np.testing.assert_array_equal(frame.image, expected)
    np.testing.assert_array_equal(frame.x_axis, x_axis)
    np.testing.assert_array_equal(frame.y_axis, y_axis)


@pytest.mark.parametrize(
    ("roi", "rows", "columns"),
    [
        ([2, 3, 1, 4], slice(1, 5), slice(2, 5)),  # inside: as given
        ([8, 5, 4, 3], slice(3, 6), slice(5, 10)),  # overhanging: slid back inside
        ([-2, 3, 0, 99], slice(0, 6), slice(0, 3)),  # negative offset, size above height
        ([0, 50, 0, 50], slice(0, 6), slice(0, 10)),  # bigger than the image: all of it
    ],
)
def test_region_of_interest_is_clipped_by_camservers_rule(
    roi: list[int], rows: slice, columns: slice
) -> None:
    """Sizes capped to the image, offsets to W - size then to >= 0; the axes are sliced too."""
    image = _image()
    x_axis, y_axis = _axes(image)
    frame = _run(image, {"image_region_of_interest": roi})
    np.testing.assert_array_equal(frame.image, image[rows, columns])
    np.testing.assert_array_equal(frame.x_axis, x_axis[columns])
    np.testing.assert_array_equal(frame.y_axis, y_axis[rows])
    assert np.shares_memory(frame.image, image)


@pytest.mark.parametrize("roi", [[10, 2, 0, 2], [0, 2, 6, 1], [-5, 5, 0, 2], [0, 1, -3, 3]])
def test_region_of_interest_outside_the_image_is_an_error(roi: list[int]) -> None:
    """A region wholly outside the image is reported, not slid back in as CamServer does."""
    message = rf"^Region of interest \[{', '.join(map(str, roi))}\] is outside the image of 10x6$"
    with pytest.raises(PreprocessError, match=message):
        run(_image(), {"image_region_of_interest": roi})
    frame, errors = run(_image(), {"image_region_of_interest": roi, "notify_on_error": True})
    assert frame is not None
    assert frame.image.shape == (H, W)  # the step is skipped
    assert len(errors) == 1
    assert errors[0].startswith("Region of interest")


def test_threshold_zeroes_pixels_below_its_integer_part() -> None:
    """Pixels < int(threshold) become 0; the received image is not changed."""
    image = _image()
    frame = _run(image, {"image_threshold": 500.9})
    np.testing.assert_array_equal(frame.image, np.where(image < 500, 0, image))
    np.testing.assert_array_equal(image, _image())


@pytest.mark.parametrize("threshold", [0.5, 0, -3])
def test_threshold_not_above_one_changes_nothing(threshold: float) -> None:
    """A threshold whose integer part selects no pixel leaves the very same image."""
    image = _image()
    assert _run(image, {"image_threshold": threshold}).image is image


def test_threshold_on_a_private_copy_works_in_place() -> None:
    """Once the image is ours (copy), the threshold writes into it, not into a new array."""
    image = _image()
    frame = _run(image, {"copy": True, "image_threshold": 300})
    np.testing.assert_array_equal(frame.image, np.where(image < 300, 0, image))
    np.testing.assert_array_equal(image, _image())


def test_image_averaging_is_a_running_mean_of_preprocessed_frames() -> None:
    """N > 1: float64 mean of the last N pre-processed frames, from the first frame on."""
    pre, frames = Preprocessor(BackgroundStore(None)), [_image(seed=s) for s in range(5)]
    parameters = {"image_averaging": 3, "image_threshold": 200}
    thresholded = [np.where(f < 200, 0, f) for f in frames]
    for i, image in enumerate(frames):
        frame = _run(image, parameters, pre=pre)
        expected = np.mean(np.array(thresholded[max(0, i - 2) : i + 1]), 0)
        assert frame.image.dtype == np.float64
        np.testing.assert_array_equal(frame.image, expected)


def test_image_averaging_restarts_when_the_shape_changes() -> None:
    """A new region of interest restarts the mean at once: no frame is dropped (CamServer bug)."""
    pre, frames = Preprocessor(BackgroundStore(None)), [_image(seed=s) for s in range(4)]
    for image in frames[:2]:
        _run(image, {"image_averaging": 3}, pre=pre)
    roi = {"image_averaging": 3, "image_region_of_interest": [0, 4, 0, 3]}
    first = _run(frames[2], roi, pre=pre)
    np.testing.assert_array_equal(first.image, frames[2][:3, :4])
    second = _run(frames[3], roi, pre=pre)
    np.testing.assert_array_equal(second.image, (frames[2][:3, :4] + frames[3][:3, :4]) / 2)


def test_raw_averaging_with_positive_n_sends_one_mean_per_block() -> None:
    """averaging N > 0: None for N-1 frames, then the float64 mean of the N raw frames."""
    pre, frames = Preprocessor(BackgroundStore(None)), [_image(seed=s) for s in range(6)]
    results = [run(image, {"averaging": 3, "copy": True}, pre=pre)[0] for image in frames]
    assert [r is None for r in results] == [True, True, False, True, True, False]
    for block, result in ((frames[:3], results[2]), (frames[3:], results[5])):
        assert result is not None
        np.testing.assert_array_equal(result.image, np.mean(np.array(block), 0))


def test_raw_averaging_with_negative_n_is_a_running_mean() -> None:
    """averaging N < 0: every frame gives the mean of the last |N| raw frames."""
    pre, frames = Preprocessor(BackgroundStore(None)), [_image(seed=s) for s in range(4)]
    for i, image in enumerate(frames):
        frame = _run(image, {"averaging": -2}, pre=pre)
        np.testing.assert_array_equal(
            frame.image, np.mean(np.array(frames[max(0, i - 1) : i + 1]), 0)
        )


def test_raw_averaging_restarts_when_the_camera_shape_changes() -> None:
    """A frame of another size starts a new block instead of failing the stack."""
    pre = Preprocessor(BackgroundStore(None))
    assert run(_image(), {"averaging": 2}, pre=pre)[0] is None
    assert run(_image(4, 5), {"averaging": 2}, pre=pre)[0] is None
    frame = _run(_image(4, 5, seed=1), {"averaging": 2}, pre=pre)
    np.testing.assert_array_equal(frame.image, (_image(4, 5) + _image(4, 5, seed=1)) / 2)


def test_scale_then_offset() -> None:
    """image * scale, then + offset."""
    image = _image()
    frame = _run(image, {"image_scale": 2.5, "image_offset": -7})
    np.testing.assert_array_equal(frame.image, image * 2.5 + -7)


def test_steps_run_in_camservers_order(tmp_path: Path) -> None:
    """Binning, background, mirrors, rotation, ROI, threshold, averaging, scale, offset."""
    image, background = _image(8, 12), _image(8, 12, seed=3)
    _save(tmp_path, "bg", background)
    parameters = {
        "binning_x": 2,
        "binning_y": 1,
        "image_background": "bg",
        "image_background_enable": True,
        "mirror_x": True,
        "mirror_y": True,
        "rotation": {"angle": 90, "mode": "ortho"},
        "image_region_of_interest": [1, 5, 2, 3],
        "image_threshold": 400,
        "image_averaging": 2,
        "image_scale": 0.5,
        "image_offset": 1,
    }
    frame = _run(image, parameters, folder=tmp_path)
    binned, binned_background = _bin(image, 2, 1), _bin(background, 2, 1)
    step = np.where(binned_background > binned, 0, binned.astype(np.int64) - binned_background)
    step = np.rot90(np.flipud(np.fliplr(step)), 1)[2:5, 1:6]
    step = np.where(step < 400, 0, step).astype(np.float64) * 0.5 + 1
    np.testing.assert_array_equal(frame.image, step)
    x, y = _axes(image)
    binned_x = x.reshape(6, 2).mean(1)
    np.testing.assert_array_equal(frame.x_axis, y[::-1][1:6])  # k=1: x <- (mirrored) y
    np.testing.assert_array_equal(frame.y_axis, binned_x[2:5])  # y <- flipped mirrored x


def test_binning_a_mirrored_width_keeps_the_axis_of_the_kept_pixels() -> None:
    """Cropping to a multiple drops the last columns: the mirrored axis must drop them too."""
    image = _image()  # width 10, binned by 3: columns 0..8 are kept
    x, _ = _axes(image)
    frame = _run(image, {"binning_x": 3, "mirror_x": True})
    np.testing.assert_array_equal(frame.image, np.fliplr(_bin(image, 3, 1)))
    np.testing.assert_array_equal(frame.x_axis, x[:9].reshape(3, 3).mean(1)[::-1])


@pytest.mark.parametrize("angle", [90, 270])
def test_binning_with_a_quarter_turn_of_a_non_square_image(angle: int) -> None:
    """Each axis is binned along the image dimension it describes, so shapes always match."""
    image = _image()
    frame = _run(
        image, {"binning_x": 2, "binning_y": 3, "rotation": {"angle": angle, "mode": "ortho"}}
    )
    np.testing.assert_array_equal(frame.image, np.rot90(_bin(image, 2, 3), angle // 90))
    assert frame.image.shape == (len(frame.y_axis), len(frame.x_axis)) == (5, 2)
