"""Colormaps for image previews: 256-entry RGB lookup tables built from control points.

Each table is linear interpolation between control points at 256 evenly spaced positions from 0
to 1, as matplotlib builds its own, rounded to 8 bits. ``gray``, ``jet`` and ``rainbow`` are
matplotlib's definitions (``jet``'s segment points, ``rainbow``'s formulas); ``viridis`` and
``inferno`` interpolate every eighth entry of matplotlib's 256-entry tables (they are smooth: the
entries in between differ from the originals by at most two levels of 255). CamServer's viewers
default to ``rainbow``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .nodeapi.errors import InvalidConfigError

__all__ = ["COLORMAP_NAMES", "lookup_table"]

COLORMAP_NAMES = ("viridis", "inferno", "gray", "jet", "rainbow")
"""Every colormap a preview can use."""

_Points = tuple[tuple[float, float], ...]  # (position, value) pairs of one of R, G, B
_Listed = tuple[tuple[float, float, float], ...]  # RGB rows at the positions of _LISTED_AT

_GRAY: tuple[_Points, _Points, _Points] = (((0.0, 0.0), (1.0, 1.0)),) * 3

# matplotlib's _jet_data (_cm.py).
_JET: tuple[_Points, _Points, _Points] = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)

_LISTED_AT = (*range(0, 256, 8), 255)
"""The entries of matplotlib's listed tables kept as control points (33, both ends included)."""

# Entries 0, 8, ..., 248 and 255 of matplotlib's _viridis_data and _inferno_data (_cm_listed.py):
# the CC0 colormaps of Nathaniel J. Smith and Stefan van der Walt (viridis with Eric Firing).
_VIRIDIS: _Listed = (
    (0.267004, 0.004874, 0.329415),
    (0.277018, 0.050344, 0.375715),
    (0.282327, 0.094955, 0.417331),
    (0.282884, 0.13592, 0.453427),
    (0.278826, 0.17549, 0.483397),
    (0.270595, 0.214069, 0.507052),
    (0.258965, 0.251537, 0.524736),
    (0.244972, 0.287675, 0.53726),
    (0.229739, 0.322361, 0.545706),
    (0.214298, 0.355619, 0.551184),
    (0.19943, 0.387607, 0.554642),
    (0.185556, 0.41857, 0.556753),
    (0.172719, 0.448791, 0.557885),
    (0.160665, 0.47854, 0.558115),
    (0.149039, 0.508051, 0.55725),
    (0.13777, 0.537492, 0.554906),
    (0.127568, 0.566949, 0.550556),
    (0.120565, 0.596422, 0.543611),
    (0.120638, 0.625828, 0.533488),
    (0.132268, 0.655014, 0.519661),
    (0.157851, 0.683765, 0.501686),
    (0.196571, 0.711827, 0.479221),
    (0.24607, 0.73891, 0.452024),
    (0.304148, 0.764704, 0.419943),
    (0.369214, 0.788888, 0.382914),
    (0.440137, 0.811138, 0.340967),
    (0.515992, 0.831158, 0.294279),
    (0.595839, 0.848717, 0.243329),
    (0.678489, 0.863742, 0.189503),
    (0.762373, 0.876424, 0.137064),
    (0.845561, 0.887322, 0.099702),
    (0.926106, 0.89733, 0.104071),
    (0.993248, 0.906157, 0.143936),
)
_INFERNO: _Listed = (
    (0.001462, 0.000466, 0.013866),
    (0.013995, 0.011225, 0.071862),
    (0.042253, 0.028139, 0.141141),
    (0.081962, 0.043328, 0.215289),
    (0.129285, 0.047293, 0.290788),
    (0.183429, 0.040329, 0.354971),
    (0.238273, 0.036621, 0.396353),
    (0.290763, 0.045644, 0.418637),
    (0.3415, 0.062325, 0.429425),
    (0.391453, 0.080927, 0.433109),
    (0.441207, 0.099338, 0.431594),
    (0.491022, 0.117179, 0.425552),
    (0.54092, 0.134729, 0.415123),
    (0.590734, 0.152563, 0.40029),
    (0.640135, 0.171438, 0.381065),
    (0.688653, 0.192239, 0.357603),
    (0.735683, 0.215906, 0.330245),
    (0.780517, 0.243327, 0.299523),
    (0.822386, 0.275197, 0.266085),
    (0.860533, 0.311892, 0.230606),
    (0.894305, 0.353399, 0.193584),
    (0.923215, 0.399359, 0.155193),
    (0.946965, 0.449191, 0.115272),
    (0.965397, 0.502249, 0.073859),
    (0.978422, 0.557937, 0.034931),
    (0.985952, 0.61575, 0.025592),
    (0.987874, 0.675267, 0.065257),
    (0.984075, 0.736087, 0.129527),
    (0.974638, 0.797692, 0.206332),
    (0.960626, 0.859069, 0.29801),
    (0.947594, 0.917399, 0.410665),
    (0.954529, 0.965896, 0.540361),
    (0.988362, 0.998364, 0.644924),
)


def lookup_table(name: str) -> np.ndarray:
    """The 256x3 ``uint8`` RGB table of colormap ``name`` (a new array, ~50 us to build).

    Raises:
        InvalidConfigError: no colormap of that name.
    """
    x = np.linspace(0.0, 1.0, 256)
    rgb: npt.NDArray[np.float64]  # (256, 3): R, G, B at each x, clipped to [0, 1] below
    if name == "rainbow":  # matplotlib's gfunc 33, 13, 10
        rgb = np.stack([np.abs(2 * x - 0.5), np.sin(np.pi * x), np.cos(np.pi * x / 2)], axis=1)
    elif name in ("viridis", "inferno"):
        table = np.array(_VIRIDIS if name == "viridis" else _INFERNO)
        at = np.array(_LISTED_AT) / 255
        rgb = np.stack([np.interp(x, at, table[:, c]) for c in range(3)], axis=1)
    elif name in ("gray", "jet"):
        channels = _GRAY if name == "gray" else _JET
        rgb = np.stack(
            [
                np.interp(x, [pos for pos, _ in points], [v for _, v in points])
                for points in channels
            ],
            axis=1,
        )
    else:
        raise InvalidConfigError(
            f"unknown colormap {name!r}; the colormaps are {', '.join(COLORMAP_NAMES)}"
        )
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
