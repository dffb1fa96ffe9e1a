"""Frame averaging: CamServer's raw-frame ``averaging`` and its late ``image_averaging``.

Both are the mean over a stack of frames, as ``np.mean(np.array(frames), 0)`` gives it: float64
for integer images, the image's own float type for float images. The stack is not built again
at every frame. For integer images of up to 32 bits a float64 running sum is kept: its partial
sums are exact integers, so the mean is bit for bit numpy's. Other images are summed again,
in order, which is how numpy reduces along the first axis.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["FrameAverage"]


def _exact(dtype: np.dtype) -> bool:
    """True when float64 sums of ``dtype`` frames stay exact integers (below 2**53)."""
    return dtype.kind in "biu" and dtype.itemsize <= 4


class FrameAverage:
    """The mean of the last ``n`` frames of one shape and dtype.

    ``running`` emits the mean of up to ``n`` frames for every frame (CamServer's negative
    ``averaging`` and its ``image_averaging``); otherwise one mean is emitted every ``n`` frames
    and the buffer starts again. A frame of another shape or dtype, or a new ``n`` or mode,
    starts a new buffer with that frame: CamServer's late averaging meant to, but reset the
    wrong variable and then dropped up to n-1 frames (§18).
    """

    __slots__ = ("_count", "_frames", "_key", "_sum")

    def __init__(self) -> None:
        self._frames: deque[np.ndarray] = deque()
        self._sum: np.ndarray | None = None
        self._count = 0
        self._key: tuple[object, ...] | None = None

    def __len__(self) -> int:
        """The number of frames in the buffer."""
        return self._count

    def reset(self) -> None:
        """Forget every frame."""
        self._frames.clear()
        self._sum = None
        self._count = 0
        self._key = None

    def add(self, image: np.ndarray, n: int, *, running: bool) -> np.ndarray | None:
        """Add ``image``; return the mean now due, or None while a block is being collected.

        ``image`` is kept by reference, never changed: the caller must not change it later.
        """
        key = (n, running, image.shape, image.dtype)
        if key != self._key:
            self.reset()
            self._key = key
        exact = _exact(image.dtype)
        if exact:
            if self._sum is None:
                self._sum = image.astype(np.float64)
            else:
                self._sum += image
        if running or not exact:  # the running sum needs the frame that leaves; others re-sum
            self._frames.append(image)
        self._count += 1
        if running and self._count > n:
            oldest = self._frames.popleft()
            self._count -= 1
            if exact:
                assert self._sum is not None
                self._sum -= oldest
        if not running and self._count < n:
            return None
        mean = self._mean(exact, image.dtype)
        if not running:
            self.reset()
            self._key = key
        return mean

    def _mean(self, exact: bool, dtype: np.dtype) -> np.ndarray:
        if exact:
            assert self._sum is not None
            return self._sum / self._count
        frames = iter(self._frames)
        total = next(frames).astype(dtype if dtype.kind == "f" else np.float64)
        for frame in frames:
            total += frame
        total /= self._count
        return total
