"""The one place binderlab talks to the Docker engine from the service.

The docker SDK is blocking; every call goes through one small thread pool here, so the
event loop never waits on the engine and nothing else needs to know about threads.
"""

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

import docker
import docker.errors


class DockerEngine:
    def __init__(self, base_url: str | None = None, timeout: float = 60):
        if base_url:
            self.client = docker.DockerClient(base_url=base_url, timeout=timeout)
        else:
            self.client = docker.from_env(timeout=timeout)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="docker")

    async def call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def ping(self) -> bool:
        return await self.call(self.client.ping)

    async def image_labels(self, name: str) -> dict[str, str] | None:
        """The labels of image ``name``, or None if the engine has no such image."""
        try:
            image = await self.call(self.client.images.get, name)
        except docker.errors.ImageNotFound:
            return None
        return image.labels or {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
