"""Colormap lookup tables: matplotlib's colours at the points we know, a clear error otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from supervisor.colormaps import COLORMAP_NAMES, lookup_table
from supervisor.nodeapi.errors import InvalidConfigError


@pytest.mark.parametrize("name", COLORMAP_NAMES)
def test_every_table_is_256_rgb_bytes(name: str) -> None:
    """Each colormap is a fresh 256x3 uint8 table (changing one changes no other)."""
    table = lookup_table(name)
    assert table.shape == (256, 3)
    assert table.dtype == np.uint8
    table[:] = 0
    assert lookup_table(name).any()


@pytest.mark.parametrize(
    ("name", "index", "rgb"),
    [
        # matplotlib's viridis and inferno at control points (their hex codes, e.g. #21918c).
        ("viridis", 0, (68, 1, 84)),
        ("viridis", 128, (33, 145, 140)),
        ("viridis", 255, (253, 231, 37)),
        ("inferno", 0, (0, 0, 4)),
        ("inferno", 255, (252, 255, 164)),
        # jet: dark blue to dark red through cyan, green-yellow and orange.
        ("jet", 0, (0, 0, 128)),
        ("jet", 255, (128, 0, 0)),
        # rainbow: r = |2x - 0.5|, g = sin(pi x), b = cos(pi x / 2), clipped.
        ("rainbow", 0, (128, 0, 255)),
        ("rainbow", 255, (255, 0, 0)),
        ("gray", 0, (0, 0, 0)),
        ("gray", 255, (255, 255, 255)),
    ],
)
def test_the_ends_and_known_points_are_matplotlib_s_colours(name, index, rgb) -> None:
    """Known colours of the matplotlib colormaps, to the 8-bit level."""
    assert tuple(lookup_table(name)[index]) == rgb


def test_rainbow_follows_matplotlib_s_formula() -> None:
    """Every entry of rainbow is the formula at x = i/255 to the rounding (red has exact ties)."""
    x = np.arange(256) / 255
    expected = np.stack([np.abs(2 * x - 0.5), np.sin(np.pi * x), np.cos(np.pi * x / 2)], axis=1)
    difference = lookup_table("rainbow") - np.clip(expected, 0, 1) * 255
    assert np.abs(difference).max() <= 0.5 + 1e-9


def test_gray_is_the_identity_and_jet_is_piecewise_linear() -> None:
    """gray maps i to (i, i, i); jet's blue rises from 0.5 to 1 over its first 11 %
    and its green stays off up to 12.5 %."""
    gray = lookup_table("gray")
    np.testing.assert_array_equal(gray, np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1))
    jet = lookup_table("jet")
    x = 14 / 255  # halfway-ish up the first blue segment
    assert jet[14, 2] == round((0.5 + 0.5 * x / 0.11) * 255)
    assert jet[:32, 1].max() == 0


def test_viridis_and_inferno_grow_lighter_from_end_to_end() -> None:
    """Perceptual maps: luminance rises monotonically (a few 8-bit ties allowed)."""
    for name in ("viridis", "inferno"):
        rgb = lookup_table(name).astype(float)
        luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
        assert np.all(np.diff(luminance) > -0.5), name


def test_an_unknown_name_is_refused_with_the_choices() -> None:
    """The error quotes the name given and lists every valid one."""
    with pytest.raises(InvalidConfigError) as caught:
        lookup_table("magma")
    assert "'magma'" in caught.value.message
    for name in COLORMAP_NAMES:
        assert name in caught.value.message
