"""measures: full width, good region, find_index, slices and coupling (camserver.md §8.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from builtin_pipelines.beam_metrics import measures
from tests import camserver_reference as reference

from .metrics_support import calibrated_axis, spot


def noisy_profile(seed: int, dtype=np.int64):
    """A seeded noisy peak (sometimes a plateau, sometimes two peaks) and its axis."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    i = np.arange(n)
    peak = np.exp(-((i - rng.uniform(0, n)) ** 2) / (2 * rng.uniform(0.5, n / 3) ** 2))
    if rng.random() < 0.3:
        peak += 0.8 * np.exp(-((i - rng.uniform(0, n)) ** 2) / (2 * rng.uniform(0.5, 5) ** 2))
    profile = rng.poisson(rng.uniform(0, 100) + rng.uniform(10, 5000) * peak)
    if rng.random() < 0.2:
        profile = np.minimum(profile, int(profile.max() * 0.8))  # a flat top
    if rng.random() < 0.4:
        axis = calibrated_axis(n, n // 2, rng.uniform(0.01, 3))
    else:
        axis = np.arange(n, dtype=np.float32)
    return profile.astype(dtype), axis


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
def test_full_width_matches_the_reference_loops(dtype):
    """Vectorised scans, same interpolation, same numpy scalar types: the same width exactly."""
    for seed in range(150):
        profile, axis = noisy_profile(seed, dtype)
        for threshold in (0.5, 0.1, 0.85):
            ours = measures.full_width(axis, profile, threshold)
            theirs = reference.get_fw(axis, profile, threshold)
            assert ours == theirs or (math.isnan(ours) and math.isnan(theirs)), (seed, threshold)
            assert type(ours) is float


def test_full_width_of_a_flat_profile_is_nan_and_of_one_point_zero():
    """0/0 gives nan (no warning escapes); an index past the end gives 0.0; so does no data."""
    axis = np.arange(5, dtype=np.float32)
    assert math.isnan(measures.full_width(axis, np.full(5, 7, np.int64), 0.5))
    assert measures.full_width(axis[:1], np.array([3], np.int64), 0.5) == 0.0
    assert measures.full_width(axis[:0], np.array([], np.int64), 0.5) == 0.0


def test_full_width_never_tests_index_zero():
    """The left scan stops at index 1: index 0 is only the default crossing."""
    axis = np.arange(6, dtype=np.float32)
    profile = np.array([0, 9, 10, 2, 0, 0], np.int64)  # index 1 is above half maximum
    width = measures.full_width(axis, profile, 0.5)
    assert width == reference.get_fw(axis, profile, 0.5)
    # left crossing interpolated between index 0 and 1: 0 + 5/9; right between 2 and 3: 2 + 5/8
    assert math.isclose(width, (2 + 5 / 8) - 5 / 9)


def test_full_width_of_the_worked_example_is_two_pixels():
    """[0,0,0,0,20000,20000,0,0,0,0] has a FWHM of 2.0 (§8.6)."""
    profile = np.array([0, 0, 0, 0, 20000, 20000, 0, 0, 0, 0], np.int64)
    assert measures.full_width(np.arange(10, dtype=np.float32), profile) == 2.0


def test_good_region_worked_example():
    """§8.3: [0,0,1,5,10,5,1,0,0] gives t=3, m=4, then (0.4, 7.6), i.e. (0, 7)."""
    profile = np.array([0, 0, 1, 5, 10, 5, 1, 0, 0], np.int64)
    assert measures.good_region(profile, 0.3, 1.8) == (0, 7)


def test_good_region_matches_the_reference_loops():
    """Random profiles, thresholds and scales: the same (start, end) as the Python loops."""
    rng = np.random.default_rng(0)
    for seed in range(200):
        profile, _ = noisy_profile(seed, rng.choice([np.int64, np.float32]))
        threshold, gfscale = rng.uniform(0.05, 0.95), rng.uniform(0.5, 3)
        ours = measures.good_region(profile, threshold, gfscale)
        assert ours == reference.get_good_region_profile(profile, threshold, gfscale), seed
        assert [type(v) for v in ours] == [int, int]


def test_good_region_of_a_nan_profile_is_empty():
    """NaN defeats every comparison: the region collapses onto the first maximum."""
    profile = np.array([1.0, np.nan, 3.0, 1.0])
    ours = measures.good_region(profile, 0.3, 1.8)
    assert ours == reference.get_good_region_profile(profile, 0.3, 1.8) == (1, 1)


@pytest.mark.parametrize("descending", [False, True])
def test_find_index_matches_the_reference(descending):
    """Exact matches, values between points and values outside the axis, both directions."""
    axis = calibrated_axis(50, 20, 0.5) if descending else np.linspace(-3, 9, 50).astype(np.float32)
    values = [*axis[::7], *(axis[:-1] + np.diff(axis) / 3), axis.min() - 1, axis.max() + 1]
    for value in values:
        value = np.float64(value)
        assert measures.find_index(axis, value) == reference.find_index(axis, value), value


def test_find_index_needs_two_points():
    """A one-point axis raises IndexError, as CamServer's does."""
    with pytest.raises(IndexError):
        measures.find_index(np.array([1.0], np.float32), 1.0)


def test_calculate_slices_upstream_example():
    """Axis 0..999, centre 300, sd 12, 11 slices, scale 2: boundaries 289, 291, ..., 311."""
    axis = np.arange(1000, dtype=np.float32)
    boundaries, half, length = measures.calculate_slices(axis, 300, 12, 2, 11)
    assert boundaries == list(range(289, 312, 2))
    assert half == 1
    assert length == 2.0


def test_calculate_slices_without_room_for_the_middle_slice():
    """A middle slice past the axis start: no boundaries, no length."""
    axis = np.arange(20, dtype=np.float32)
    assert measures.calculate_slices(axis, 2.0, 10.0, 2, 1) == ([], 10, None)


def test_calculate_slices_refuses_an_even_number():
    """The processor makes the number odd first; an even one here is a caller's bug."""
    with pytest.raises(ValueError, match="odd"):
        measures.calculate_slices(np.arange(20, dtype=np.float32), 10.0, 2.0, 2, 4)


@pytest.mark.parametrize("number", [1, 3, 5, 7])
def test_calculate_slices_matches_the_reference(number):
    """Boundaries, half width and length as CamServer's, on calibrated and plain axes."""
    rng = np.random.default_rng(number)
    for _ in range(40):
        n = int(rng.integers(2, 400))
        axis = (
            calibrated_axis(n, n // 3, 0.2)
            if rng.random() < 0.5
            else np.arange(n, dtype=np.float32)
        )
        center = np.float64(rng.uniform(axis.min(), axis.max()))
        sd = np.float64(rng.uniform(0.1, 0.5) * abs(axis[-1] - axis[0]))
        ours = measures.calculate_slices(axis, center, sd, 2, number)
        assert ours == tuple(reference.calculate_slices(axis, center, sd, 2, number))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_slices_match_the_reference(dtype):
    """x- and y-slices of a tilted beam: centres, widths and intensities as CamServer's."""
    region = spot((120, 150), (80, 55), (25, 14), 2000, 10, dtype, seed=2, tilt=0.3)
    x_axis = calibrated_axis(150, 70, 0.5)
    y_axis = np.arange(120, dtype=np.float32)
    for name, center, sd in (("x", -5.0, 12.0), ("y", 55.0, 14.0)):
        ours, length = getattr(measures, f"{name}_slices")(region, x_axis, y_axis, center, sd, 2, 5)
        theirs, their_length = getattr(reference, f"get_{name}_slices_data")(
            region, x_axis, y_axis, center, sd, 2, 5, False
        )
        assert length == their_length
        assert len(ours) == len(theirs) == 5
        for s, ((cx, cy), sd_fit, intensity) in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(
                [s.center_x, s.center_y, s.standard_deviation], [cx, cy, sd_fit], rtol=1e-6
            )
            assert s.intensity == intensity
            assert type(s.intensity) is np.float64


def test_coupling_needs_two_slices():
    """A single slice cannot make a line: the fit raises (the processor leaves coupling None)."""
    one = [measures.Slice(np.float64(1.0), np.float64(2.0), np.float64(1.0), np.float64(5.0))]
    with pytest.raises(TypeError):
        measures.coupling(one, np.float64(3.0))


def test_coupling_is_the_slope_times_the_squared_width():
    """coupling = slope * sd**2 of the line through the slice centres."""
    slices = [
        measures.Slice(np.float64(x), np.float64(0.5 * x + 3), np.float64(1.0), np.float64(1.0))
        for x in (1.0, 2.0, 4.0)
    ]
    coupling, slope, offset = measures.coupling(slices, np.float64(4.0))
    assert math.isclose(slope, 0.5)
    assert math.isclose(offset, 3.0)
    assert coupling == slope * 16.0
