"""The node API over a service's folders: its registry and its backgrounds.

A node and a cluster manager each keep a registry folder and a background folder and answer the
same calls about them; file work runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio

from .backgrounds import BackgroundStore
from .nodeapi.models import BackgroundInfo, Entry, RegistryFile
from .registry import Registry

__all__ = ["FolderAPI"]


class FolderAPI:
    """The registry and background methods of ``NodeAPI``, for a class with both folders."""

    registry: Registry
    backgrounds: BackgroundStore

    async def list_entries(self) -> list[Entry]:
        return self.registry.entries()

    async def get_entry(self, name: str) -> Entry:
        return self.registry.get(name)

    async def list_files(self) -> list[RegistryFile]:
        return await asyncio.to_thread(self.registry.file_list)

    async def read_file(self, filename: str) -> bytes:
        return await asyncio.to_thread(self.registry.read_file, filename)

    async def write_file(
        self, filename: str, data: bytes, *, executable: bool = False
    ) -> Entry | None:
        return await asyncio.to_thread(
            self.registry.write_file, filename, data, executable=executable
        )

    async def delete_file(self, filename: str) -> None:
        await asyncio.to_thread(self.registry.delete_file, filename)

    async def list_backgrounds(self, camera: str | None = None) -> list[BackgroundInfo]:
        return await asyncio.to_thread(self.backgrounds.infos, camera)

    async def get_background(self, background: str) -> BackgroundInfo:
        return await asyncio.to_thread(self.backgrounds.info, background)

    async def latest_background(self, camera: str) -> BackgroundInfo:
        return await asyncio.to_thread(self.backgrounds.latest, camera)

    async def read_background(self, background: str) -> bytes:
        return await asyncio.to_thread(self.backgrounds.read, background)

    async def write_background(self, background: str, data: bytes) -> BackgroundInfo:
        return await asyncio.to_thread(self.backgrounds.write, background, data)

    async def delete_background(self, background: str) -> None:
        await asyncio.to_thread(self.backgrounds.delete, background)
