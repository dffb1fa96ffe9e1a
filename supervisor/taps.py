"""The node reading its instances' streams itself: previews and background collection."""

from __future__ import annotations

import asyncio

import numpy as np
import structlog
import zmq

from .backgrounds import BackgroundStore, background_id
from .contract import SocketMode
from .instance import Instance
from .nodeapi.errors import ConflictError
from .nodeapi.models import BackgroundInfo, InstanceState, Preview
from .outputs import OutputStreams
from .preview import PreviewCache
from .streamtap import average_images, latest_image

__all__ = ["PREVIEW_TIMEOUT", "StreamTaps"]

log = structlog.get_logger(__name__)

PREVIEW_TIMEOUT = 5.0
"""Seconds a preview waits for an image of the stream."""


class StreamTaps:
    """Reads the PUB output of an instance in a worker thread (never from the event loop)."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        outputs: OutputStreams,
        backgrounds: BackgroundStore,
    ) -> None:
        self._ctx = ctx
        self._outputs = outputs
        self._backgrounds = backgrounds
        self._previews = PreviewCache()

    def _url(self, instance: Instance, purpose: str) -> str:
        """Where the node reads ``instance`` to ``purpose`` it.

        Raises:
            ConflictError: it is not running or starting, or has no PUB output.
        """
        if instance.state not in (InstanceState.RUNNING, InstanceState.STARTING):
            raise ConflictError(f"instance '{instance.name}' is {instance.state}; start it first")
        return self._outputs.tap_url(instance, purpose)

    async def collect_background(
        self, instance: Instance, n_images: int, timeout: float | None = None
    ) -> BackgroundInfo:
        """Average the next ``n_images`` images of ``instance`` into a background.

        Raises:
            ConflictError: it is not running, has no PUB output, or sent too few images in time.
        """
        url = self._url(instance, "collect from")
        wait = timeout if timeout is not None else 10.0 + n_images
        loop = asyncio.get_running_loop()
        image, pulse_id = await loop.run_in_executor(
            None, average_images, self._ctx, url, SocketMode.SUB, n_images, wait
        )
        info = await loop.run_in_executor(
            None, self._backgrounds.save, background_id(instance.name), image
        )
        log.info(
            "background_collected",
            instance=instance.name,
            background=info.id,
            n_images=n_images,
            first_pulse_id=pulse_id,
            shape=info.shape,
        )
        return info

    async def preview(
        self,
        instance: Instance,
        channel: str = "image",
        colormap: str = "viridis",
        width: int = 640,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> Preview:
        """A PNG of the latest ``channel`` image of ``instance``, colour-mapped.

        Reads one frame of the instance's PUB output (viewers asking within 0.15 s share it)
        and renders it in a worker thread. See :func:`supervisor.preview.render_preview`.

        Raises:
            ConflictError: it is not running, has no PUB output, or sent no such image in time.
        """
        url = self._url(instance, "preview")
        loop = asyncio.get_running_loop()

        async def grab() -> tuple[np.ndarray, int]:
            return await loop.run_in_executor(
                None, latest_image, self._ctx, url, PREVIEW_TIMEOUT, channel
            )

        return await self._previews.get(
            instance.name, channel, grab, colormap=colormap, width=width, vmin=vmin, vmax=vmax
        )
