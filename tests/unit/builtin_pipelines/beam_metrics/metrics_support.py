"""Images and output checks shared by the beam_metrics processing tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests import camserver_reference as reference

__all__ = ["axes", "calibrated_axis", "check_against_reference", "check_types", "spot"]


def spot(
    shape: tuple[int, int],
    center: tuple[float, float],
    sigma: tuple[float, float],
    amplitude: float,
    background: float,
    dtype: Any,
    seed: int,
    tilt: float = 0.0,
) -> np.ndarray:
    """A seeded Gaussian spot (x, y order for center and sigma) with Poisson noise.

    ``tilt`` shears the spot (the y centre moves by tilt per x pixel): a coupled beam.
    Signed and float dtypes keep negative values (the noise is shifted down by the background).
    """
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    (cx, cy), (sx, sy) = center, sigma
    yc = cy + tilt * (xx - cx)
    mean = background + amplitude * np.exp(
        -((xx - cx) ** 2 / (2 * sx**2) + (yy - yc) ** 2 / (2 * sy**2))
    )
    counts = np.random.default_rng(seed).poisson(mean).astype(np.float64)
    kind = np.dtype(dtype).kind
    if kind == "f":
        return (counts - background).astype(dtype)
    if kind == "i":
        counts -= background
    info = np.iinfo(dtype)
    return np.clip(counts, info.min, info.max).astype(dtype)


def axes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated camera axes: the pixel index as float32."""
    height, width = image.shape
    return np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)


def calibrated_axis(size: int, origin: int, pixel_size: float) -> np.ndarray:
    """A calibrated camera axis as CamServer computes it: inverted, in float32 (§8.1)."""
    index = np.linspace(0, size - 1, size).astype(np.float32)
    index -= origin
    index *= -pixel_size
    return index


def check_types(out: dict[str, Any], image: np.ndarray) -> None:
    """Every value has the type camserver.md §8.2 documents (for the bsread encoder)."""
    integer = image.dtype.kind in "iu"
    profile_dtype = np.dtype(np.int64) if integer else image.dtype
    for key, value in out.items():
        if value is None:
            assert key == "good_region" or key.startswith(("gr_", "slice_", "coupling")), key
        elif key in ("x_axis", "y_axis", "gr_x_axis", "gr_y_axis", "image"):
            assert isinstance(value, np.ndarray), key
        elif key in ("width", "height", "slice_amount"):
            assert type(value) is np.int64, key
        elif key in ("processing_parameters", "slice_orientation"):
            assert type(value) is str, key
        elif key in ("min_value", "max_value"):
            assert type(value) is image.dtype.type, key
        elif key.endswith("_profile"):
            assert value.dtype == profile_dtype, key
        elif key in ("intensity", "gr_intensity"):
            assert type(value) is profile_dtype.type, key
        elif key.endswith("gauss_function"):
            assert value.dtype == np.float64, key
        elif key == "good_region":
            assert type(value) is list, key
            assert [type(v) for v in value] == [int] * 4, key
        else:  # timestamp, widths, moments, fit results, slices, coupling
            assert type(value) is np.float64, (key, type(value))


def _close(key: str, ours: Any, theirs: Any, reference_out: dict[str, Any]) -> bool:
    if key.startswith("coupling"):  # a slope near 0 for an upright beam: absolute
        return bool(np.isclose(ours, theirs, rtol=0, atol=1e-6))
    if key.endswith("_offset"):  # a small difference of large numbers: relative to amplitude
        amplitude = abs(float(reference_out[key[: -len("offset")] + "amplitude"]))
        if not np.isfinite(amplitude):  # a NaN image: the guess comes back, nan and all
            return bool(np.isclose(ours, theirs, rtol=1e-6, atol=0, equal_nan=True))
        return bool(np.isclose(ours, theirs, rtol=0, atol=1e-6 * amplitude, equal_nan=True))
    return bool(np.isclose(ours, theirs, rtol=1e-6, atol=1e-12, equal_nan=True))


def check_against_reference(
    image: np.ndarray,
    x_axis: np.ndarray,
    y_axis: np.ndarray,
    parameters: dict[str, Any],
    ours: dict[str, Any],
) -> dict[str, Any]:
    """Same keys in the same order as the reference, the same values within camserver.md §8.7.

    Integers, profiles, full widths and good-region indices exactly; floats to 1e-6 relative,
    fit offsets relative to the amplitude, coupling absolutely. Returns the reference output.
    """
    theirs = reference.process_image(image, x_axis, y_axis, (1_700_000_000, 5), parameters)
    assert list(ours) == list(theirs)
    check_types(ours, image)
    for key, value in ours.items():
        expected = theirs[key]
        if value is None or expected is None or isinstance(expected, str | list):
            assert value == expected, key
        elif isinstance(expected, np.ndarray):
            assert value.dtype == expected.dtype, key
            assert value.shape == expected.shape, key
            if value.dtype.kind in "iu" or key.endswith(("_profile", "_axis")) or key == "image":
                np.testing.assert_array_equal(value, expected, err_msg=key)
            else:
                finite = np.abs(expected[np.isfinite(expected)])
                scale = float(finite.max()) if finite.size else 0.0
                np.testing.assert_allclose(
                    value, expected, rtol=1e-6, atol=1e-6 * scale, equal_nan=True, err_msg=key
                )
        elif key.endswith(("fwhm", "_fw", "width", "height", "amount", "_value")) or key in (
            "intensity",
            "gr_intensity",
            "timestamp",
        ):
            assert value == expected or (np.isnan(value) and np.isnan(expected)), key
        else:
            assert _close(key, value, expected, theirs), (key, value, expected)
    return theirs
