"""CamServer's receive loop and pre-processing (§8.1.3 and §8.1.4), in CamServer's order.

The image arrives read-only (decoded from bsread) and can be big (2560 x 2160 at 100 Hz), so a
step copies only when it must: flips, quarter turns and the region of interest are views, and a
step that changes pixels writes in place once the image is a buffer of our own. With the
default parameters the image handed on is the received object itself.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .averaging import FrameAverage
from .backgrounds import BackgroundError, BackgroundStore
from .parameters import Settings
from .rotation import rotate, turn_axes

__all__ = ["Frame", "PreprocessError", "Preprocessor", "bin_axis", "bin_image"]

_UINT16_MAX = 0xFFFF


class PreprocessError(ValueError):
    """A step cannot run as configured (bad background, region outside the image).

    With ``notify_on_error`` the step is skipped and the frame is flagged instead.
    """


@dataclass(frozen=True, slots=True)
class Frame:
    """An image and its axes; ``owned`` when the image is a buffer of ours (writable)."""

    image: np.ndarray
    x_axis: np.ndarray
    y_axis: np.ndarray
    owned: bool = False


def bin_image(image: np.ndarray, bx: int, by: int, mean: bool) -> np.ndarray:
    """Crop to multiples of the bin sizes, then block-sum clipped to 0..65535 (or block-mean).

    Either way the result is uint16, as CamServer's ``binning`` makes it.
    """
    sy, sx = image.shape[0] // by * by, image.shape[1] // bx * bx
    blocks = image[:sy, :sx].reshape(sy // by, by, sx // bx, bx)
    binned: np.ndarray = blocks.mean(axis=(1, 3)) if mean else blocks.sum(axis=(1, 3))
    # CamServer clips only the sum; a mean of an integer image is in range anyway, and a float
    # image's negative mean would wrap around in the cast.
    np.clip(binned, 0, _UINT16_MAX, out=binned)
    return binned.astype(np.uint16)


def bin_axis(axis: np.ndarray, size: int, b: int, *, from_end: bool = False) -> np.ndarray:
    """Keep ``size`` values (the last ones if ``from_end``), block-average by ``b``, same dtype."""
    kept = axis[len(axis) - size :] if from_end else axis[:size]
    means: np.ndarray = kept.reshape(size // b, b).mean(axis=1)
    return means.astype(axis.dtype, copy=False)


class Preprocessor:
    """The per-pipeline state of pre-processing: averaging buffers and the background cache.

    Args:
        backgrounds: where backgrounds are loaded from.
    """

    def __init__(self, backgrounds: BackgroundStore) -> None:
        self.backgrounds = backgrounds
        self.raw_average = FrameAverage()
        self.late_average = FrameAverage()
        # (raw background, bx, by, mean, binned): binning a full background at every frame
        # would cost more than the whole default processing.
        self._binned: tuple[np.ndarray, int, int, bool, np.ndarray] | None = None

    # -- §8.1.3: the receive loop ---------------------------------------------------------

    def receive(
        self, image: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray, settings: Settings
    ) -> Frame | None:
        """Change the axes for mirroring and quarter turns, average raw frames, copy.

        Returns None while raw ``averaging`` (N > 0) collects its block of frames.
        """
        if settings.mirror_x:
            x_axis = x_axis[::-1]
        if settings.mirror_y:
            y_axis = y_axis[::-1]
        if settings.rotation is not None and settings.rotation.ortho:
            x_axis, y_axis = turn_axes(x_axis, y_axis, settings.rotation)
        if settings.averaging:
            mean = self.raw_average.add(
                image, abs(settings.averaging), running=settings.averaging < 0
            )
            if mean is None:
                return None
            return Frame(mean, x_axis, y_axis, owned=True)
        self.raw_average.reset()
        if settings.copy:
            return Frame(image.copy(), x_axis, y_axis, owned=True)
        return Frame(image, x_axis, y_axis)

    # -- §8.1.4: pre-processing -----------------------------------------------------------

    def preprocess(
        self, frame: Frame, settings: Settings, parameters: MutableMapping[str, Any]
    ) -> tuple[Frame, list[str]]:
        """Run the nine pre-processing steps in CamServer's order.

        Returns the frame and the errors of the steps skipped under ``notify_on_error``.

        Raises:
            PreprocessError: a step cannot run and ``notify_on_error`` is off.
        """
        errors: list[str] = []
        if settings.binning_x > 1 or settings.binning_y > 1:
            frame = self._binning(frame, settings)
        try:
            frame = self._background(frame, settings, parameters)
        except PreprocessError as exc:
            if not settings.notify_on_error:
                raise
            parameters.pop("background_data", None)
            errors.append(str(exc))
        if settings.mirror_x:
            frame = replace(frame, image=np.fliplr(frame.image))
        if settings.mirror_y:
            frame = replace(frame, image=np.flipud(frame.image))
        if settings.rotation is not None:  # an ortho turn of the axes was done on receive
            image, new = rotate(frame.image, settings.rotation)
            frame = replace(frame, image=image, owned=frame.owned or new)
        if settings.region_of_interest is not None:
            try:
                frame = _region_of_interest(frame, settings.region_of_interest)
            except PreprocessError as exc:
                if not settings.notify_on_error:
                    raise
                errors.append(str(exc))
        if settings.threshold is not None and settings.threshold > 0:
            frame = _threshold(frame, int(settings.threshold))
        if settings.image_averaging > 1:
            # A flagged frame is sent as zeros anyway; keeping it would spoil the next N means.
            if not errors:
                mean = self.late_average.add(frame.image, settings.image_averaging, running=True)
                assert mean is not None
                frame = replace(frame, image=mean, owned=True)
        else:
            self.late_average.reset()
        if settings.scale is not None:
            frame = replace(frame, image=frame.image * settings.scale, owned=True)
        if settings.offset is not None:
            frame = replace(frame, image=frame.image + settings.offset, owned=True)
        return frame, errors

    def _binning(self, frame: Frame, settings: Settings) -> Frame:
        bx, by = settings.binning_x, settings.binning_y
        image = bin_image(frame.image, bx, by, settings.binning_mean)
        sy, sx = image.shape[0] * by, image.shape[1] * bx
        # The receive loop has already flipped and, for odd quarter turns, swapped the axes,
        # while the image is still as received: bin each axis along the image dimension it
        # describes, and keep the last values of a flipped axis, which are those of the kept
        # pixels. (CamServer bins x_axis along the width and keeps the first values: with a
        # crop or a quarter turn of a non-square image, its axes end up off or it fails.)
        rotation = settings.rotation
        turns = rotation.quarter_turns % 4 if rotation is not None and rotation.ortho else 0
        x_flipped = settings.mirror_x != (turns in (1, 2))
        y_flipped = settings.mirror_y != (turns in (2, 3))
        if turns % 2:
            x_axis = bin_axis(frame.x_axis, sy, by, from_end=y_flipped)
            y_axis = bin_axis(frame.y_axis, sx, bx, from_end=x_flipped)
        else:
            x_axis = bin_axis(frame.x_axis, sx, bx, from_end=x_flipped)
            y_axis = bin_axis(frame.y_axis, sy, by, from_end=y_flipped)
        return Frame(image, x_axis, y_axis, owned=True)

    def _background(
        self, frame: Frame, settings: Settings, parameters: MutableMapping[str, Any]
    ) -> Frame:
        if settings.background_mode is None or not settings.background:
            parameters.pop("background_data", None)
            return frame
        try:
            background = self._binned_background(
                self.backgrounds.load(settings.background), settings
            )
        except BackgroundError as exc:
            raise PreprocessError(str(exc)) from exc
        image = frame.image
        if background.shape != image.shape:
            binned = settings.binning_x > 1 or settings.binning_y > 1
            raise PreprocessError(
                f"Bad background image size: background {settings.background!r} is "
                f"{_size(background)}, the image is {_size(image)}"
                + (f" (both binned {settings.binning_x}x{settings.binning_y})" if binned else "")
            )
        if settings.background_mode == "passive":
            parameters["background_data"] = background
            return frame
        parameters.pop("background_data", None)
        if settings.background_mode == "signed":
            signed = image.astype(np.int32)
            np.subtract(signed, background, out=signed)
            return replace(frame, image=signed, owned=True)
        below = background > image  # before the subtraction, which may write in place
        result = image if frame.owned else np.empty_like(image)
        np.subtract(image, background, out=result)
        np.copyto(result, 0, where=below)
        return replace(frame, image=result, owned=True)

    def _binned_background(self, background: np.ndarray, settings: Settings) -> np.ndarray:
        bx, by, mean = settings.binning_x, settings.binning_y, settings.binning_mean
        if bx == 1 and by == 1:
            return background
        cached = self._binned
        if cached is not None and cached[0] is background and cached[1:4] == (bx, by, mean):
            return cached[4]
        binned = bin_image(background, bx, by, mean)
        binned.flags.writeable = False
        self._binned = (background, bx, by, mean, binned)
        return binned


def _size(image: np.ndarray) -> str:
    return "x".join(str(n) for n in image.shape)


def _region_of_interest(frame: Frame, roi: tuple[int, int, int, int]) -> Frame:
    """Cut the region, clipped as CamServer clips it; refuse one wholly outside the image."""
    offset_x, size_x, offset_y, size_y = roi
    height, width = frame.image.shape
    if offset_x >= width or offset_y >= height or offset_x + size_x <= 0 or offset_y + size_y <= 0:
        # CamServer would slide such a region back into the image and measure something else.
        raise PreprocessError(
            f"Region of interest {list(roi)} is outside the image of {width}x{height}"
        )
    size_x, size_y = min(size_x, width), min(size_y, height)
    offset_x, offset_y = min(offset_x, width - size_x), min(offset_y, height - size_y)
    offset_x, offset_y = max(0, offset_x), max(0, offset_y)
    columns, rows = slice(offset_x, offset_x + size_x), slice(offset_y, offset_y + size_y)
    return replace(
        frame,
        image=frame.image[rows, columns],
        x_axis=frame.x_axis[columns],
        y_axis=frame.y_axis[rows],
    )


def _threshold(frame: Frame, threshold: int) -> Frame:
    """Pixels below ``threshold`` become 0; a frame with none below is not touched."""
    below = frame.image < threshold
    if not below.any():
        return frame
    if frame.owned:
        frame.image[below] = 0
        return frame
    return replace(frame, image=np.where(below, frame.image.dtype.type(0), frame.image), owned=True)
