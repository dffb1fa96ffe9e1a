"""Previews: block mean, range, colours, odd images, and viewers sharing grabs and renders."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import numpy as np
import pytest

from supervisor.colormaps import lookup_table
from supervisor.nodeapi.errors import ConflictError, InvalidConfigError
from supervisor.preview import PreviewCache, block_mean, check_preview, render_preview
from tests.png_reader import read_png
from tests.support import run, wait_until


def colours(png: bytes) -> np.ndarray:
    """The RGB pixels of a PNG."""
    return read_png(png).rgb


# -- block mean ------------------------------------------------------------------------------


def test_the_block_mean_averages_square_blocks_of_the_width_s_factor() -> None:
    """A 4x6 image at width 3: 2x2 blocks, each pixel the mean of its block."""
    image = np.arange(24, dtype=np.uint16).reshape(4, 6)
    reduced = block_mean(image, 3)
    expected = image.reshape(2, 2, 3, 2).mean(axis=(1, 3))
    assert reduced.dtype == np.float32
    np.testing.assert_allclose(reduced, expected)


def test_the_factor_is_rounded_up_and_the_remainder_cropped() -> None:
    """7 columns to at most 3: factor 3, two columns kept; 8 rows: two rows of blocks."""
    image = np.arange(56, dtype=np.float64).reshape(8, 7)
    reduced = block_mean(image, 3)
    assert reduced.shape == (2, 2)
    assert reduced.dtype == np.float64
    np.testing.assert_allclose(reduced, image[:6, :6].reshape(2, 3, 2, 3).mean(axis=(1, 3)))


def test_an_image_narrower_than_the_width_is_kept_pixel_for_pixel() -> None:
    """Factor 1: the values as floats, in a new array."""
    image = np.array([[1, 2], [3, 4]], np.int8)
    reduced = block_mean(image, 640)
    np.testing.assert_array_equal(reduced, image)
    reduced[0, 0] = 99
    assert image[0, 0] == 1


def test_a_non_contiguous_view_is_reduced_like_its_copy() -> None:
    """A transposed, strided view gives the same block means as a contiguous copy of it."""
    base = np.random.default_rng(0).integers(0, 4000, (60, 90), dtype=np.uint16)
    view = base.T[::2, 1:]
    np.testing.assert_allclose(block_mean(view, 10), block_mean(view.copy(), 10), rtol=1e-6)


def test_a_very_wide_strip_keeps_one_row() -> None:
    """Fewer rows than the block side: all rows are averaged into one."""
    strip = np.arange(20, dtype=np.uint8).reshape(2, 10)
    np.testing.assert_allclose(
        block_mean(strip, 2), [[(0 + 1 + 2 + 3 + 4 + 10 + 11 + 12 + 13 + 14) / 10, 12]]
    )


# -- render ----------------------------------------------------------------------------------


def test_the_auto_range_spans_the_reduced_image_and_maps_to_the_table() -> None:
    """min and max of the reduced image take the first and last colours; the rest in between."""
    image = np.arange(16, dtype=np.uint16).reshape(2, 8) * 100
    preview = render_preview(image, colormap="jet", width=8, pulse_id=7, received=123.0)
    lut = lookup_table("jet")
    rgb = colours(preview.png)
    assert (preview.vmin, preview.vmax) == (0.0, 1500.0)
    assert (preview.pulse_id, preview.shape, preview.time) == (7, (2, 8), 123.0)
    expected = np.minimum(image.astype(float) * 256 / 1500, 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb, lut[expected])
    assert tuple(rgb[0, 0]) == tuple(lut[0])
    assert tuple(rgb[1, 7]) == tuple(lut[255])


def test_the_png_is_the_reduced_size() -> None:
    """2160x2560 at width 640: factor 4, a 540x640 PNG; the shape is the frame's."""
    image = np.zeros((2160, 2560), np.uint16)
    image[1000:1100, 1200:1400] = 1000
    preview = render_preview(image, colormap="viridis", width=640)
    assert colours(preview.png).shape == (540, 640, 3)
    assert preview.shape == (2160, 2560)


def test_a_given_range_clips_values_outside_it() -> None:
    """Values under min get the first colour, over max the last; min and max are reported."""
    image = np.array([[-50.0, 0.0, 50.0, 100.0, 150.0]], np.float32)
    preview = render_preview(image, colormap="gray", width=5, vmin=0.0, vmax=100.0)
    assert (preview.vmin, preview.vmax) == (0.0, 100.0)
    np.testing.assert_array_equal(colours(preview.png)[0, :, 0], [0, 0, 128, 255, 255])


def test_one_bound_given_the_other_is_the_image_s() -> None:
    """With only max given, min is the image's own."""
    image = np.array([[10, 20, 30]], np.uint8)
    preview = render_preview(image, colormap="gray", width=3, vmax=20.0)
    assert (preview.vmin, preview.vmax) == (10.0, 20.0)
    np.testing.assert_array_equal(colours(preview.png)[0, :, 0], [0, 255, 255])


def test_a_constant_image_is_drawn_in_the_first_colour_without_a_warning() -> None:
    """No division by zero (warnings are errors here): range (c, c), every pixel colour 0."""
    preview = render_preview(np.full((4, 4), 7, np.uint16), colormap="viridis", width=4)
    assert (preview.vmin, preview.vmax) == (7.0, 7.0)
    assert (colours(preview.png) == lookup_table("viridis")[0]).all()


def test_nans_are_left_out_of_the_range_and_drawn_in_the_first_colour() -> None:
    """A NaN pixel neither poisons the auto range nor warns; infinities clip to the ends."""
    image = np.array([[np.nan, 1.0, 2.0, np.inf, -np.inf, 3.0]])
    preview = render_preview(image, colormap="gray", width=6)
    assert (preview.vmin, preview.vmax) == (1.0, 3.0)
    np.testing.assert_array_equal(colours(preview.png)[0, :, 0], [0, 0, 128, 255, 0, 255])


def test_an_all_nan_image_renders() -> None:
    """Nothing finite: range (0, 0), every pixel in the first colour."""
    preview = render_preview(np.full((3, 3), np.nan, np.float32), colormap="gray", width=3)
    assert (preview.vmin, preview.vmax) == (0.0, 0.0)
    assert not colours(preview.png).any()


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint64, np.float16, np.bool_]
)
def test_any_numeric_dtype_renders(dtype) -> None:
    """Integer, float and bool images of any width give a ramp from the first to the last colour."""
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    high = 1 if dtype is np.bool_ else (min(info.max, 1000) if info else 1000)
    low = 0 if dtype is np.bool_ else (max(info.min, -1000) if info else -1000)
    image = np.linspace(low, high, 16).astype(dtype).reshape(2, 8)
    rgb = colours(render_preview(image, colormap="gray", width=8).png)
    assert rgb[0, 0, 0] == 0
    assert rgb[1, 7, 0] == 255


def test_huge_unsigned_values_keep_their_order() -> None:
    """uint64 values near 2**64 do not wrap: the largest is the last colour."""
    image = np.array([[0, 2**63, 2**64 - 1]], np.uint64)
    rgb = colours(render_preview(image, colormap="gray", width=3).png)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colormap": "hot"}, "unknown colormap 'hot'"),
        ({"width": 0}, "at least 1 pixel wide, not 0"),
        ({"vmin": float("nan")}, "min must be a finite number, not nan"),
        ({"vmax": float("inf")}, "max must be a finite number, not inf"),
        ({"vmin": 5.0, "vmax": 5.0}, r"min \(5\) must be below its max \(5\)"),
    ],
)
def test_bad_options_are_refused_with_what_was_given(options, message) -> None:
    """Unknown colormap, width under 1, non-finite or crossed bounds: InvalidConfigError."""
    arguments = {"colormap": "gray", "width": 4, "vmin": None, "vmax": None, **options}
    with pytest.raises(InvalidConfigError, match=message):
        check_preview(**arguments)
    with pytest.raises(InvalidConfigError, match=message):
        render_preview(np.zeros((2, 2)), **arguments)


def test_an_image_that_is_not_2d_is_refused() -> None:
    """A 1-D array or an empty image is a ValueError."""
    with pytest.raises(ValueError, match="non-empty 2-D image"):
        render_preview(np.zeros(5), colormap="gray", width=4)
    with pytest.raises(ValueError, match="non-empty 2-D image"):
        render_preview(np.zeros((0, 5)), colormap="gray", width=4)


def test_a_full_frame_renders_well_under_50_ms() -> None:
    """A 2560x2160 uint16 frame at width 640, best of five (the benchmark has the spread)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4096, (2160, 2560), dtype=np.uint16)
    best = min(
        render_preview(image, colormap="viridis", width=640).render_seconds for _ in range(5)
    )
    assert best < 0.05


# -- the cache -------------------------------------------------------------------------------


class Camera:
    """A grab function over a counter: each grab is the next frame, released by ``gate``."""

    def __init__(self, gated: bool = False) -> None:
        self.grabs = 0
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail: Exception | None = None

    async def grab(self) -> tuple[np.ndarray, int]:
        self.grabs += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return np.full((4, 8), self.grabs, np.uint16), 1000 + self.grabs


def options(**changes: object) -> dict[str, object]:
    return {"colormap": "viridis", "width": 8, "vmin": None, "vmax": None, **changes}


def test_viewers_within_the_interval_share_one_grab_and_one_render() -> None:
    """Two requests in a row get the very same preview; the camera was read once."""

    async def scenario() -> None:
        cache, camera = PreviewCache(min_interval=60.0), Camera()
        first = await cache.get("cam", "image", camera.grab, **options())
        second = await cache.get("cam", "image", camera.grab, **options())
        assert second is first
        assert (camera.grabs, cache.grabs, cache.renders) == (1, 1, 1)

    run(scenario())


def test_concurrent_viewers_await_one_grab_in_flight() -> None:
    """Ten viewers asking while the frame is on its way: one grab; other options, a render each.

    No interval here: only the sharing of what is in flight is tested.
    """

    async def scenario() -> None:
        cache, camera = PreviewCache(min_interval=0.0), Camera(gated=True)
        same = [
            asyncio.ensure_future(cache.get("cam", "image", camera.grab, **options()))
            for _ in range(8)
        ]
        other = [
            asyncio.ensure_future(cache.get("cam", "image", camera.grab, **options(width=4))),
            asyncio.ensure_future(
                cache.get("cam", "image", camera.grab, **options(colormap="jet"))
            ),
        ]
        await wait_until(lambda: camera.grabs == 1, lambda: camera.grabs)
        camera.gate.set()
        results = await asyncio.gather(*same, *other)
        assert camera.grabs == 1
        assert all(r is results[0] for r in results[:8])
        assert cache.renders == 3
        assert {r.pulse_id for r in results} == {1001}
        assert colours(results[8].png).shape == (2, 4, 3)

    run(scenario())


def test_a_new_grab_once_the_interval_is_over() -> None:
    """After min_interval, the next viewer gets a newer frame."""

    async def scenario() -> None:
        cache, camera = PreviewCache(min_interval=0.05), Camera()
        first = await cache.get("cam", "image", camera.grab, **options())
        deadline = time.monotonic() + 5.0
        latest = first
        while latest.pulse_id == first.pulse_id and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            latest = await cache.get("cam", "image", camera.grab, **options())
        assert latest.pulse_id == first.pulse_id + 1
        assert camera.grabs == 2

    run(scenario())


def test_other_streams_are_grabbed_apart() -> None:
    """Another instance or channel is another grab."""

    async def scenario() -> None:
        cache, camera = PreviewCache(min_interval=60.0), Camera()
        await cache.get("cam", "image", camera.grab, **options())
        await cache.get("cam2", "image", camera.grab, **options())
        await cache.get("cam", "roi", camera.grab, **options())
        assert camera.grabs == 3

    run(scenario())


def test_a_failed_grab_reaches_every_waiter_and_is_not_kept() -> None:
    """All viewers of a failed grab get its error; the next request grabs again."""

    async def scenario() -> None:
        cache, camera = PreviewCache(min_interval=60.0), Camera(gated=True)
        camera.fail = ConflictError("no message arrived")
        waiters = [
            asyncio.ensure_future(cache.get("cam", "image", camera.grab, **options()))
            for _ in range(3)
        ]
        await wait_until(lambda: camera.grabs == 1, lambda: camera.grabs)
        camera.gate.set()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(o, ConflictError) for o in outcomes)
        camera.fail = None
        preview = await cache.get("cam", "image", camera.grab, **options())
        assert (camera.grabs, preview.pulse_id) == (2, 1002)

    run(scenario())


def test_a_viewer_that_leaves_does_not_cancel_the_grab_for_the_others() -> None:
    """Cancelling the first requester leaves the shared grab running for the second."""

    async def scenario() -> None:
        cache, camera = PreviewCache(min_interval=60.0), Camera(gated=True)
        first = asyncio.ensure_future(cache.get("cam", "image", camera.grab, **options()))
        second = asyncio.ensure_future(cache.get("cam", "image", camera.grab, **options()))
        await wait_until(lambda: camera.grabs == 1, lambda: camera.grabs)
        first.cancel()
        camera.gate.set()
        preview = await second
        assert first.cancelled()
        assert (preview.pulse_id, camera.grabs) == (1001, 1)

    run(scenario())


def test_no_frame_is_held_after_the_interval() -> None:
    """Once min_interval has passed, the cache lets go of the frame it grabbed."""

    async def scenario() -> None:
        cache = PreviewCache(min_interval=0.05)
        frames = [np.zeros((4, 8), np.uint16)]
        held = weakref.ref(frames[0])

        async def grab() -> tuple[np.ndarray, int]:
            return frames.pop(), 1

        await cache.get("cam", "image", grab, **options())
        assert not frames

        def released() -> bool:
            gc.collect()
            return held() is None

        await wait_until(released, lambda: "the frame is still referenced", timeout=5.0)

    run(scenario())
