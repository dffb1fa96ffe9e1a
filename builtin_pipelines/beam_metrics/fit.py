"""CamServer's Gaussian fit of a profile, with its centre of mass and RMS, and its linear fit.

CamServer fits with ``scipy.optimize.curve_fit`` (MINPACK's lmdif, a forward-difference
Jacobian) and returns the initial guess when that raises. Here MINPACK's algorithm runs in C
(``minpack.c``), from the same guess, with the same tolerances and the same finite differences,
so it walks curve_fit's path to the same point, without a Python call per evaluation. Its answer
is used only when it converged cleanly on a well-posed problem (:func:`_settled`); everything
else (divergence, a collapsing width, a singular or ill-posed problem) goes to ``curve_fit``
itself, called as CamServer calls it, so those profiles get exactly the reference answer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import native as _native

__all__ = ["GaussFit", "gauss_fit", "gauss_parameters", "linear_fit"]

_MODEL_GAUSS, _MODEL_LINE = 0, 1  # bm_lm's models
# curve_fit's (leastsq's) defaults for method "lm" without a Jacobian.
FTOL = XTOL = 1.49012e-8
MAXFEV = 200 * (4 + 1)
MAXFEV_LINE = 200 * (2 + 1)
# Fast answers must be well inside curve_fit's budget: near maxfev, curve_fit may give up.
_FAST_MAXFEV = MAXFEV // 2
# Standard errors above this fraction of the amplitude (offset, amplitude) or of the width (mean,
# sd) mark a fit that rounding can steer: found by comparing thousands of random profiles with
# curve_fit (below it, all agreed to 2e-8 relative, 99% of them to the last bit).
_MAX_RELATIVE_ERROR = 1e-2
# A fitted sd under this many axis steps: the Gaussian is collapsing onto a pixel.
_MIN_SD_STEPS = 0.5
_SQRT_2PI = np.sqrt(2 * np.pi)


@dataclass(frozen=True, slots=True)
class GaussFit:
    """A Gaussian fit of a profile, as CamServer's ``gauss_fit`` returns it."""

    gauss_function: np.ndarray
    offset: np.float64
    amplitude: np.float64
    mean: np.float64
    standard_deviation: np.float64
    center_of_mass: np.float64
    rms: np.float64


def gauss_fit(profile: np.ndarray, axis: np.ndarray, native: Any = _native.DEFAULT) -> GaussFit:
    """Fit ``offset + amplitude * exp(-(axis - mean)^2 / (2 sd^2))`` to a profile (§8.3).

    Args:
        profile: the profile (integer or float).
        axis: its axis values, same length; calibrated (even descending) axes are fine.
        native: the kernels module; the default ones when left out, None for numpy and scipy.

    Returns:
        The fit, with the model on the axis and the centre of mass and RMS; on any failure of
        the fit, the initial guess, as CamServer does.

    Raises:
        RuntimeError: when the lengths differ.
        ValueError: for an empty profile.
    """
    offset, amplitude, mean, sd = gauss_parameters(profile, axis, native)
    if native is _native.DEFAULT:
        native = _native.kernels()
    with np.errstate(all="ignore"):
        gauss_function = offset + amplitude * np.exp(-((axis - mean) ** 2) / (2 * sd**2))
        centered = profile - offset
        center_of_mass, rms = _center_of_mass(axis, centered, mean, sd, native)
    return GaussFit(gauss_function, offset, amplitude, mean, sd, center_of_mass, rms)


def gauss_parameters(
    profile: np.ndarray, axis: np.ndarray, native: Any = _native.DEFAULT
) -> tuple[np.float64, np.float64, np.float64, np.float64]:
    """The fit's ``(offset, amplitude, mean, |sd|)`` alone, as :func:`gauss_fit` finds them.

    For the slices, which keep nothing else of their fits.
    """
    if axis.shape[0] != profile.shape[0]:
        raise RuntimeError(f"Invalid axis passed {axis.shape[0]} {profile.shape[0]}")
    if native is _native.DEFAULT:
        native = _native.kernels()
    with np.errstate(all="ignore"):
        guess = _guess(profile, axis)
        params = _fit(axis, profile.astype(np.float32), guess, native)
    offset, amplitude, mean, sd = params.tolist()
    return np.float64(offset), np.float64(amplitude), np.float64(mean), np.float64(abs(sd))


def _guess(profile: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """CamServer's starting point: min, max - min, the first argmax, area / (amplitude √2π)."""
    offset = profile.min()
    amplitude = profile.max() - offset
    mean = axis[profile.argmax()]
    if amplitude == 0:
        sd: Any = 1
    else:
        # np.trapezoid(profile - offset, x=axis), its very operations without its overhead
        y = profile - offset
        sd = ((axis[1:] - axis[:-1]) * (y[1:] + y[:-1]) / 2.0).sum() / (amplitude * _SQRT_2PI)
    return np.array([offset, amplitude, mean, sd], dtype=np.float64)


def _fit(
    axis: np.ndarray, data: np.ndarray, guess: np.ndarray, native: ModuleType | None
) -> np.ndarray:
    m = data.shape[0]
    if m < 4:  # curve_fit refuses more parameters than points
        return guess
    if native is not None:
        # Non-finite data or guess make the kernel give up at once: curve_fit then raises.
        x = axis.astype(np.float64)
        y = data.astype(np.float64)
        params = guess.copy()
        counts = np.zeros(2, np.int64)
        errors = np.empty(4)
        ffi = native.ffi
        info = native.lib.bm_lm(
            _MODEL_GAUSS,
            _native.exp_mode(native),
            ffi.from_buffer("double[]", x),
            ffi.from_buffer("double[]", y),
            m,
            ffi.from_buffer("double[]", params),
            FTOL,
            XTOL,
            MAXFEV,
            ffi.from_buffer("int64_t[]", counts),
            ffi.from_buffer("double[]", errors),
        )
        if _settled(info, int(counts[1]), int(counts[0]), params, errors, x):
            return params
    return _curve_fit(axis, data, guess)


def _settled(
    info: int, jacobians: int, nfev: int, params: np.ndarray, errors: np.ndarray, x: np.ndarray
) -> bool:
    """Whether the fast fit's answer is curve_fit's, without asking curve_fit.

    Both run the same algorithm on the same numbers, so they agree to the last bit on almost
    every profile. They can part only where the problem is so ill-posed that rounding decides
    (noise, ramps, edges, a peak far wider than the axis): there the parameters' standard
    errors are large. A width collapsing onto one pixel (hot pixel, 2-pixel box) is left to
    curve_fit as well, as is anything close to its evaluation budget.
    """
    if info == 4 and jacobians == 1:
        return True  # an exact fit at the guess (flat profile): both return the guess untouched
    if info not in (1, 2, 3) or nfev > _FAST_MAXFEV:
        return False
    offset, amplitude, mean, sd = params.tolist()
    e_offset, e_amplitude, e_mean, e_sd = errors.tolist()
    amplitude, sd = abs(amplitude), abs(sd)
    if not all(map(math.isfinite, (offset, amplitude, mean, sd))):
        return False
    limit_amplitude = _MAX_RELATIVE_ERROR * amplitude
    limit_sd = _MAX_RELATIVE_ERROR * sd  # nan-safe: every comparison with nan is False
    step = abs(float(x[-1]) - float(x[0])) / (x.shape[0] - 1)
    return bool(
        e_offset < limit_amplitude
        and e_amplitude < limit_amplitude
        and e_mean < limit_sd
        and e_sd < limit_sd
        and sd >= _MIN_SD_STEPS * step
    )


def _model(x: np.ndarray, offset: float, amplitude: float, mean: float, sd: float) -> np.ndarray:
    return offset + amplitude * np.exp(-((x - mean) ** 2) / (2 * sd**2))


def _curve_fit(axis: np.ndarray, data: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """CamServer's fit, verbatim: curve_fit from the guess, the guess on any exception."""
    from scipy.optimize import curve_fit  # 0.3 s to import, rarely needed

    try:
        # A warning is not a failure (CamServer keeps the result when the covariance cannot be
        # estimated); with warnings as errors it would become one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(_model, axis, data, p0=guess)
    except Exception:  # CamServer catches everything; Ctrl-C still stops us
        return guess
    return np.asarray(params, dtype=np.float64)


def _center_of_mass(
    axis: np.ndarray, centered: np.ndarray, mean: np.float64, sd: np.float64, native: Any
) -> tuple[np.float64, np.float64]:
    """Normalised moments of profile - offset within 5 sd of the mean, cut not renormalised.

    CamServer sums with Python's built-in ``sum``, i.e. sequentially; the kernel and
    ``np.cumsum`` both add in that order, so the rounding is the same.
    """
    p = np.ascontiguousarray(centered, dtype=np.float64)
    m = p.shape[0]
    if native is not None and m > 0:
        x = np.ascontiguousarray(axis, dtype=np.float64)
        out = np.empty(2)
        ffi = native.ffi
        native.lib.bm_center_of_mass(
            ffi.from_buffer("double[]", x),
            ffi.from_buffer("double[]", p),
            m,
            float(mean),
            float(sd),
            ffi.from_buffer("double[]", out),
        )
        return np.float64(out[0]), np.float64(out[1])
    total = _sequential_sum(p)
    if total != 0:
        p = p / total
    p[np.abs(axis - mean) > 5 * sd] = 0
    center_of_mass = _sequential_sum(axis * p)
    rms = np.sqrt(np.abs(_sequential_sum((axis - center_of_mass) ** 2 * p)))
    return center_of_mass, rms


def _sequential_sum(values: np.ndarray) -> np.float64:
    return np.cumsum(values)[-1] if values.shape[0] else np.float64(0.0)


def linear_fit(x: Any, y: Any, native: Any = _native.DEFAULT) -> tuple[np.float64, np.float64]:
    """Least-squares line through the points: ``(slope, offset)``, as CamServer fits it.

    CamServer runs ``curve_fit`` on ``slope * x + offset`` from its default start (1, 1). The
    kernels run the same MINPACK iteration with the same finite differences, so the answer is
    curve_fit's to the bit: not quite the exact least-squares line (curve_fit stops about 1e-8
    relative short of it), which matters for a large coupling compared absolutely.

    Raises:
        ValueError: for no points, non-finite values or lengths that differ.
        TypeError: for a single point (more parameters than points).
        RuntimeError: if the iteration does not converge.
    """
    xs = np.ascontiguousarray(np.asarray_chkfinite(x, dtype=np.float64))
    ys = np.ascontiguousarray(np.asarray_chkfinite(y, dtype=np.float64))
    if ys.size == 0:
        raise ValueError("`ydata` must not be empty!")
    if xs.shape != ys.shape or ys.ndim != 1:
        raise ValueError(f"x and y differ in shape: {xs.shape} and {ys.shape}")
    if ys.size < 2:
        raise TypeError(f"2 parameters must not exceed the number of data points={ys.size}")
    if native is _native.DEFAULT:
        native = _native.kernels()
    if native is None:
        return _curve_fit_line(xs, ys)
    params = np.ones(2)
    counts = np.zeros(2, np.int64)
    errors = np.empty(2)
    ffi = native.ffi
    info = native.lib.bm_lm(
        _MODEL_LINE,
        0,  # no exponential in a line
        ffi.from_buffer("double[]", xs),
        ffi.from_buffer("double[]", ys),
        ys.size,
        ffi.from_buffer("double[]", params),
        FTOL,
        XTOL,
        MAXFEV_LINE,
        ffi.from_buffer("int64_t[]", counts),
        ffi.from_buffer("double[]", errors),
    )
    if info not in (1, 2, 3, 4):
        raise RuntimeError(f"Optimal parameters not found (MINPACK info {info})")
    return np.float64(params[0]), np.float64(params[1])


def _line(x: np.ndarray, slope: float, offset: float) -> np.ndarray:
    return slope * x + offset


def _curve_fit_line(xs: np.ndarray, ys: np.ndarray) -> tuple[np.float64, np.float64]:
    from scipy.optimize import curve_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (slope, offset), _ = curve_fit(_line, xs, ys)
    return np.float64(slope), np.float64(offset)
