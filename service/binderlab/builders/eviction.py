"""Keep binderlab's images within a disk budget: least recently launched go first.

Never removed: an image a container uses (running or not), a pinned image, and the image
whose build just finished (it is about to be launched). Sizes are the engine's own: each
image counts with the bytes it does not share with other images (``docker system df``).
"""

import docker.errors

from binderlab.builders.cacheindex import CacheIndex
from binderlab.contract import LABEL_USER, split_tag
from binderlab.platform.docker import DockerEngine


class ImageEvictor:
    def __init__(self, engine: DockerEngine, index: CacheIndex, prefix: str,
                 budget_bytes: float, log):
        self.engine = engine
        self.index = index
        self.prefix = prefix
        self.budget = budget_bytes
        self.log = log
        self.pool = None  # the WarmPool: its warm sessions do not keep an image in use

    async def usage(self) -> dict[str, dict]:
        """binderlab's images by name: unique size and containers using them."""
        df = await self.engine.call(self.engine.client.df)
        containers = await self.engine.call(self.engine.client.containers.list, all=True)
        if self.pool is not None:  # a warm session is drained with its image, not kept
            containers = [c for c in containers
                          if not self.pool.holds((c.labels or {}).get(LABEL_USER, ""))]
        used = {c.attrs["Config"]["Image"].rsplit(":latest", 1)[0] for c in containers}
        used |= {c.attrs["Image"] for c in containers}
        images = {}
        for image in df.get("Images") or []:
            for tag in image.get("RepoTags") or []:
                name, _ = split_tag(tag)
                if name.startswith(self.prefix):
                    shared = max(image.get("SharedSize") or 0, 0)
                    images[name] = {
                        "size": max(image["Size"] - shared, 0),
                        "in_use": name in used or image["Id"] in used
                        # the engine's own count includes warm sessions: not with a pool
                        or (self.pool is None and (image.get("Containers") or 0) > 0),
                    }
        return images

    async def run(self, keep: set[str] = frozenset()) -> list[str]:
        """Remove images until the budget holds; return the names removed."""
        if self.budget <= 0:
            return []
        images = await self.usage()
        total = sum(i["size"] for i in images.values())
        pinned = self.index.pinned()
        removed = []
        for name, _ in self.index.by_last_use():
            if total <= self.budget:
                break
            info = images.get(name)
            if info is None or info["in_use"] or name in pinned or name in keep:
                continue
            try:
                if self.pool is not None:
                    await self.pool.drain(name)
                await self.engine.call(self.engine.client.images.remove, name)
            except docker.errors.APIError as e:  # e.g. a container started meanwhile
                self.log.info("Not evicting %s: %s", name, e.explanation)
                continue
            self.index.remove(name)
            total -= info["size"]
            removed.append(name)
            self.log.info("Evicted %s (%.0f MB) to stay within the disk budget", name,
                          info["size"] / 1e6)
        if total > self.budget:
            self.log.warning("Images use %.2f GB, over the %.2f GB budget; the rest are in "
                             "use or pinned.", total / 1e9, self.budget / 1e9)
        return removed
