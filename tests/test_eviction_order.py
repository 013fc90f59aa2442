"""The eviction order: least recently launched first, until the budget holds.

The integration test (test_prebuild.py) runs eviction on the real engine; this one fixes
the sizes, so the order and the stopping point can be checked exactly. The engine here is a
stand-in for `docker system df` answers only."""

import asyncio
import logging
import time

from binderlab.builders.cacheindex import CacheIndex
from binderlab.builders.eviction import ImageEvictor

MB = 1_000_000


class Engine:
    def __init__(self, sizes, containers=()):
        self.sizes = dict(sizes)
        self.removed = []
        self.client = self
        self.images = self
        self.containers = self
        self._containers = containers

    async def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def df(self):
        return {"Images": [{"Id": f"sha256:{n}", "RepoTags": [f"{n}:latest"],
                            "Size": 600 * MB + s, "SharedSize": 600 * MB, "Containers": 0}
                           for n, s in self.sizes.items()]}

    def list(self, all=True):
        return [type("C", (), {"attrs": {"Config": {"Image": i}, "Image": "sha256:x"}})
                for i in self._containers]

    def remove(self, name):
        self.removed.append(name)
        del self.sizes[name]


def test_least_recently_launched_go_first_until_within_budget(tmp_path):
    index = CacheIndex(tmp_path / "cache.sqlite")
    names = ["p/env-a", "p/env-b", "p/env-c", "p/env-d"]
    for name in names:
        index.add(name, name[-1], "env", None)
    time.sleep(0.01)
    for name in ("p/env-c", "p/env-a", "p/env-b", "p/env-d"):  # launch order: c oldest
        index.launched(name)
        time.sleep(0.01)
    engine = Engine({n: 100 * MB for n in names}, containers=["p/env-a"])
    evictor = ImageEvictor(engine, index, "p/", 150 * MB, logging.getLogger("test"))
    index.pin("p/env-b")
    removed = asyncio.run(evictor.run())
    # c (oldest) goes, a is in use, b is pinned, d goes: 200 MB left (over, but all kept
    # images are protected)
    assert removed == ["p/env-c", "p/env-d"]
    assert {n for n, _ in index.by_last_use()} == {"p/env-a", "p/env-b"}


def test_stops_as_soon_as_the_budget_holds(tmp_path):
    index = CacheIndex(tmp_path / "cache.sqlite")
    for name in ("p/env-old", "p/env-mid", "p/env-new"):
        index.add(name, name, "env", None)
        index.launched(name)
        time.sleep(0.01)
    engine = Engine({"p/env-old": 50 * MB, "p/env-mid": 50 * MB, "p/env-new": 50 * MB})
    evictor = ImageEvictor(engine, index, "p/", 100 * MB, logging.getLogger("test"))
    assert asyncio.run(evictor.run()) == ["p/env-old"]
    assert asyncio.run(evictor.run(keep={"p/env-mid"})) == []


def test_no_budget_means_no_eviction(tmp_path):
    index = CacheIndex(tmp_path / "cache.sqlite")
    index.add("p/env-a", "a", "env", None)
    engine = Engine({"p/env-a": 10**12})
    assert asyncio.run(ImageEvictor(engine, index, "p/", 0, logging.getLogger()).run()) == []
