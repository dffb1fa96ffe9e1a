"""Configs sent to a program and waiting for its ack or refusal, by sequence number."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .nodeapi.errors import ConflictError

__all__ = ["PendingConfigs"]


class PendingConfigs:
    """The futures of the configs a run has not answered yet."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[str | None]] = {}

    async def send(
        self, seq: int, send: Callable[[], None], timeout: float, name: str
    ) -> str | None:
        """``send()`` config ``seq`` (once its answer is awaited), and the program's answer:
        None (acked) or its error.

        Raises:
            ConflictError: no answer within ``timeout``, or the run ended meanwhile.
        """
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        send()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ConflictError(
                f"instance '{name}' did not answer the config within {timeout:g} s; "
                "the old config stays"
            ) from None
        finally:
            self._pending.pop(seq, None)

    def answer(self, seq: int, error: str | None) -> None:
        """The program acked (``error`` None) or refused config ``seq``."""
        future = self._pending.pop(seq, None)
        if future is not None and not future.done():
            future.set_result(error)

    def fail_all(self, why: str) -> None:
        """The run ended: every config still waiting is refused with ``why``."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConflictError(f"config not applied: {why}"))
        self._pending.clear()
