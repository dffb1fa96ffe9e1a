"""fit: CamServer's Gaussian fit (fast path vs curve_fit), moments and linear fit (§8.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from builtin_pipelines.beam_metrics import fit
from tests import camserver_reference as reference

from .metrics_support import calibrated_axis


def profile_and_axis(seed: int, kind: str = "gauss"):
    """A seeded noisy profile: summed Poisson rows of a Gaussian (or of something else)."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([12, 40, 300, 1000, 2560]))
    i = np.arange(n)
    mean, sd = rng.uniform(0.25, 0.75) * n, rng.uniform(0.03, 0.2) * n
    amplitude, offset = 10 ** rng.uniform(3, 6), 10 ** rng.uniform(0, 5) * (rng.random() < 0.8)
    shape = {
        "gauss": np.exp(-((i - mean) ** 2) / (2 * sd**2)),
        "ramp": i / n,
        "noise": np.zeros(n),
        "edge": (i > mean).astype(float),
        "two": np.exp(-((i - mean) ** 2) / (2 * sd**2)) + np.exp(-((i - n / 5) ** 2) / 2),
    }[kind]
    profile = rng.poisson(offset + amplitude * shape).astype(np.int64)
    if rng.random() < 0.4:
        axis = calibrated_axis(n, n // 2 + int(rng.integers(-5, 5)), rng.uniform(0.001, 20))
    else:
        axis = np.arange(n, dtype=np.float32)
    return profile, axis


def assert_fit_matches(ours: fit.GaussFit, theirs: tuple) -> None:
    """Parameters and moments to 1e-6 relative, the offset relative to the amplitude."""
    function, offset, amplitude, mean, sd, com, rms = theirs
    scale = max(abs(amplitude), 1e-300)
    assert abs(ours.offset - offset) <= 1e-6 * scale, (ours.offset, offset)
    assert abs(ours.amplitude - amplitude) <= 1e-6 * scale, (ours.amplitude, amplitude)
    assert math.isclose(ours.mean, mean, rel_tol=1e-6, abs_tol=1e-9 * abs(sd)), (ours.mean, mean)
    assert math.isclose(ours.standard_deviation, sd, rel_tol=1e-6), (ours.standard_deviation, sd)
    assert math.isclose(ours.center_of_mass, com, rel_tol=1e-6, abs_tol=1e-9 * abs(sd))
    assert math.isclose(ours.rms, rms, rel_tol=1e-6, abs_tol=1e-12)
    np.testing.assert_allclose(ours.gauss_function, function, rtol=1e-6, atol=1e-6 * scale)


@pytest.fixture
def fallbacks(monkeypatch):
    """Counts the profiles the fast fit leaves to curve_fit."""
    calls = []
    real = fit._curve_fit

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(fit, "_curve_fit", counting)
    return calls


def test_fast_fit_agrees_with_curve_fit_on_noisy_gaussians(fallbacks):
    """60 noisy Gaussians (sizes, offsets, calibrated axes): the fast fit alone, same answer."""
    for seed in range(60):
        profile, axis = profile_and_axis(seed)
        assert_fit_matches(fit.gauss_fit(profile, axis), reference.gauss_fit(profile, axis))
    assert len(fallbacks) <= 6  # the faintest tenth may be left to curve_fit, no more


@pytest.mark.parametrize("kind", ["ramp", "noise", "edge", "two"])
def test_ill_posed_profiles_still_match_curve_fit(kind):
    """Ramps, pure noise, edges and double peaks give curve_fit's answer (fast or not)."""
    for seed in range(8):
        profile, axis = profile_and_axis(1000 + seed, kind)
        assert_fit_matches(fit.gauss_fit(profile, axis), reference.gauss_fit(profile, axis))


@pytest.mark.parametrize(
    "profile",
    [
        [0, 0, 0, 0, 20000, 20000, 0, 0, 0, 0],  # the 2-pixel box: curve_fit gives up
        [0, 0, 0, 7000, 0, 0, 0, 0],  # a hot pixel
        [5, 5, 5, 5, 5, 5],  # flat
        [0, 0, 0, 0, 0],  # all zero
        [141555600] * 7,  # saturated, float32-representable
        [2**25 + 1] * 7,  # flat beyond float32: the data are rounded, the fit is not exact
        [3, 9],  # fewer points than parameters
        [4, 1, 8],
        [0, 0, 10, 40, 10, 0, 0],  # narrow
        [2**31, 2**32, 2**33, 2**32, 2**31],  # large counts
    ],
    ids=lambda p: f"{len(p)}pts",
)
def test_degenerate_profiles_give_the_reference_answer(profile):
    """Degenerate profiles, where curve_fit fails or barely works, give CamServer's result."""
    profile = np.array(profile, np.int64)
    axis = np.arange(len(profile), dtype=np.float32)
    assert_fit_matches(fit.gauss_fit(profile, axis), reference.gauss_fit(profile, axis))


def test_non_finite_data_return_the_nan_laden_guess():
    """NaN in a float profile: curve_fit refuses it, the guess (with nan) comes back."""
    profile = np.array([1.0, 5.0, np.nan, 3.0, 1.0], np.float32)
    axis = np.arange(5, dtype=np.float32)
    ours = fit.gauss_fit(profile, axis)
    assert math.isnan(ours.offset)
    assert math.isnan(ours.standard_deviation)
    assert ours.mean == 2.0  # the first argmax: numpy's argmax stops at the NaN


def test_guess_starts_at_the_first_maximum_with_the_area_width():
    """The initial guess: min, max - min, the first argmax, area / (amplitude sqrt(2 pi))."""
    profile = np.array([2, 2, 10, 4, 10, 2], np.int64)
    axis = np.arange(6, dtype=np.float32) * 2
    offset, amplitude, mean, sd = fit._guess(profile, axis)
    assert (offset, amplitude, mean) == (2, 8, 4.0)
    assert sd == np.trapezoid(profile - 2, x=axis) / (8 * math.sqrt(2 * math.pi))


def test_mismatched_lengths_raise_runtime_error():
    """An axis of another length raises RuntimeError, as CamServer's gauss_fit does."""
    with pytest.raises(RuntimeError, match="Invalid axis"):
        fit.gauss_fit(np.ones(5), np.arange(4, dtype=np.float32))


def test_empty_profile_raises_value_error():
    """No points at all: numpy's min raises, before any fit."""
    with pytest.raises(ValueError, match="zero-size"):
        fit.gauss_fit(np.ones(0, np.int64), np.ones(0, np.float32))


def test_numpy_path_gives_the_same_bits_as_the_kernels():
    """native=None (curve_fit and numpy's sequential cumsum) equals the kernels bit for bit."""
    for seed in range(5):
        profile, axis = profile_and_axis(2000 + seed)
        a, b = fit.gauss_fit(profile, axis), fit.gauss_fit(profile, axis, native=None)
        assert (a.offset, a.amplitude, a.mean, a.standard_deviation) == (
            b.offset,
            b.amplitude,
            b.mean,
            b.standard_deviation,
        )
        assert (a.center_of_mass, a.rms) == (b.center_of_mass, b.rms)


def test_fits_through_numpys_exp_give_the_same_bits(monkeypatch):
    """The kernels calling numpy's exp back (as on AVX-512 numpy builds) change nothing here."""
    profiles = [profile_and_axis(3000 + seed) for seed in range(4)]
    direct = [fit.gauss_fit(profile, axis) for profile, axis in profiles]
    monkeypatch.setattr(fit._native, "exp_mode", lambda module: 1)
    for (profile, axis), expected in zip(profiles, direct, strict=True):
        got = fit.gauss_fit(profile, axis)
        assert (got.offset, got.amplitude, got.mean, got.standard_deviation) == (
            expected.offset,
            expected.amplitude,
            expected.mean,
            expected.standard_deviation,
        )


def test_centre_of_mass_uses_the_unrenormalised_5_sigma_cut():
    """Mass beyond 5 sd of the fitted mean is dropped and not renormalised (biased on purpose)."""
    axis = np.arange(40, dtype=np.float32)
    profile = np.zeros(40, np.int64)
    profile[8:13] = [100, 400, 600, 400, 100]
    profile[35] = 300  # a far bump outside the 5 sd cut
    ours = fit.gauss_fit(profile, axis)
    _, _, _, _, _, com, rms = reference.gauss_fit(profile, axis)
    assert (ours.center_of_mass, ours.rms) == (com, rms)  # Python's sequential sum, same bits
    weights = profile - ours.offset
    inside = np.abs(axis - ours.mean) <= 5 * ours.standard_deviation
    assert not inside[35]
    cut = math.fsum(axis[inside] * weights[inside]) / math.fsum(weights)
    renormalised = math.fsum(axis[inside] * weights[inside]) / math.fsum(weights[inside])
    assert math.isclose(ours.center_of_mass, cut, rel_tol=1e-12)
    assert abs(ours.center_of_mass - renormalised) > 0.1


def test_gauss_parameters_are_those_of_the_full_fit():
    """gauss_parameters (for slices) returns exactly the full fit's parameters."""
    profile, axis = profile_and_axis(3)
    full = fit.gauss_fit(profile, axis)
    assert fit.gauss_parameters(profile, axis) == (
        full.offset,
        full.amplitude,
        full.mean,
        full.standard_deviation,
    )


@pytest.mark.parametrize("seed", range(8))
def test_linear_fit_is_curve_fits_to_the_bit(seed):
    """The line is curve_fit's from its default start, to the last bit (not just close)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    x = rng.uniform(-1000, 1000, n) * 10 ** rng.uniform(-3, 0)
    y = rng.uniform(-1, 1) * x + rng.normal(500, 50, n)
    slope, offset = fit.linear_fit(list(x), list(y))
    assert type(slope) is np.float64
    assert type(offset) is np.float64
    assert [slope, offset] == list(reference.linear_fit(x, y))


def test_linear_fit_without_kernels_calls_curve_fit():
    """native=None: scipy's curve_fit itself, same answer."""
    x, y = [1.0, 2.0, 3.5, 4.0], [2.0, 2.5, 4.1, 4.0]
    assert list(fit.linear_fit(x, y, native=None)) == list(fit.linear_fit(x, y))


def test_linear_fit_of_vertical_points_is_curve_fits():
    """All x equal (a rank-deficient line): still curve_fit's answer."""
    slope, offset = fit.linear_fit([3.0, 3.0, 3.0], [1.0, 2.0, 4.0])
    expected = reference.linear_fit(np.array([3.0, 3.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    np.testing.assert_allclose([slope, offset], expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "error"),
    [([], [], ValueError), ([1.0], [2.0], TypeError), ([1.0, np.nan], [2.0, 3.0], ValueError)],
)
def test_linear_fit_refuses_what_curve_fit_refuses(x, y, error):
    """No points, one point or non-finite values raise, as curve_fit does."""
    with pytest.raises(error):
        fit.linear_fit(x, y)
    with pytest.raises(error):
        reference.linear_fit(np.array(x), np.array(y))
