"""Frame averaging: numpy's mean of the stacked frames, without stacking them every frame."""

from __future__ import annotations

import numpy as np
import pytest

from builtin_pipelines.beam_metrics.averaging import FrameAverage


def _frames(count: int, dtype: str, shape: tuple[int, int] = (3, 4)) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(count):
        frame = (rng.random(shape) * 60000).astype(dtype)
        frame.flags.writeable = False
        frames.append(frame)
    return frames


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64", "int64"])
def test_running_mean_equals_numpy_mean_of_the_last_n(dtype: str) -> None:
    """Each frame gives np.mean(np.array(last n frames), 0), bit for bit, in numpy's dtype."""
    frames, n, average = _frames(9, dtype), 4, FrameAverage()
    for i, frame in enumerate(frames):
        mean = average.add(frame, n, running=True)
        expected = np.mean(np.array(frames[max(0, i - n + 1) : i + 1]), 0)
        assert mean is not None
        assert mean.dtype == expected.dtype
        np.testing.assert_array_equal(mean, expected)


def test_block_mean_is_emitted_every_n_frames() -> None:
    """With blocks, n-1 frames give None, the n-th gives the mean of the block, then again."""
    frames, average = _frames(6, "uint16"), FrameAverage()
    results = [average.add(frame, 3, running=False) for frame in frames]
    assert [r is None for r in results] == [True, True, False, True, True, False]
    np.testing.assert_array_equal(results[2], np.mean(np.array(frames[:3]), 0))
    np.testing.assert_array_equal(results[5], np.mean(np.array(frames[3:]), 0))
    assert results[2].dtype == np.float64


def test_a_shape_change_starts_a_new_buffer_with_the_new_frame() -> None:
    """After a shape change the mean is of the new frames only; none is dropped."""
    small, big, average = _frames(3, "uint16"), _frames(2, "uint16", (5, 6)), FrameAverage()
    for frame in small:
        average.add(frame, 4, running=True)
    first = average.add(big[0], 4, running=True)
    np.testing.assert_array_equal(first, big[0].astype(np.float64))
    second = average.add(big[1], 4, running=True)
    np.testing.assert_array_equal(second, np.mean(np.array(big), 0))
    assert len(average) == 2


def test_a_new_n_or_mode_starts_again() -> None:
    """Changing n (or running vs blocks) forgets the frames collected so far."""
    frames, average = _frames(3, "uint16"), FrameAverage()
    average.add(frames[0], 3, running=True)
    average.add(frames[1], 3, running=True)
    np.testing.assert_array_equal(average.add(frames[2], 2, running=True), frames[2])
    assert average.add(frames[0], 2, running=False) is None
    assert len(average) == 1


def test_frames_are_never_modified() -> None:
    """The frames given are kept by reference and left as they were."""
    frames, average = _frames(5, "float32"), FrameAverage()
    copies = [frame.copy() for frame in frames]
    for frame in frames:
        average.add(frame, 2, running=True)
    for frame, original in zip(frames, copies, strict=True):
        np.testing.assert_array_equal(frame, original)
