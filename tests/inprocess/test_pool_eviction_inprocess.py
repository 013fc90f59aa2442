"""The disk budget with a warm pool: warm sessions do not keep an image, they are drained
before it goes; a claimed (user's) session keeps it. Real ImageEvictor and CacheIndex, an
engine that answers like Docker's for the calls eviction makes."""

from types import SimpleNamespace

from traitlets.config import Config

from binderlab.builders.cacheindex import CacheIndex
from binderlab.builders.eviction import ImageEvictor
from binderlab.contract import LABEL_USER
from binderlab.sessions.pool import WarmPool
from tests.inprocess.pooling import FakePoolBackend
from tests.inprocess.test_pool_inprocess import settle

PREFIX = "binderlab-evict/"
IMAGES = {PREFIX + "env-a": "sha256:a", PREFIX + "env-b": "sha256:b"}


class Engine:
    """Docker's df / containers.list / images.remove, from the pool's running sessions."""

    def __init__(self, backend: FakePoolBackend):
        self.backend = backend
        self.removed: list[str] = []
        self.client = SimpleNamespace(df=self.df, containers=SimpleNamespace(list=self.list),
                                      images=SimpleNamespace(remove=self.remove))

    async def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def list(self, all=False):
        return [SimpleNamespace(attrs={"Config": {"Image": s.image}, "Image": IMAGES[s.image]},
                                labels={LABEL_USER: s.username})
                for s in self.backend.running.values()]

    def df(self):
        counts = {name: sum(1 for s in self.backend.running.values() if s.image == name)
                  for name in IMAGES}
        return {"Images": [{"RepoTags": [name + ":latest"], "Id": IMAGES[name],
                            "Size": 600e6, "SharedSize": 0, "Containers": counts[name]}
                           for name in IMAGES if name not in self.removed]}

    def remove(self, name):
        self.removed.append(name)
        self.backend.images[name] = ""


async def test_eviction_drains_warm_sessions_and_spares_claimed_ones(tmp_path):
    backend = FakePoolBackend()
    c = Config()
    c.WarmPool.memory_budget = 10 << 30
    pool = WarmPool(config=c, backend=backend)
    pool.set_target("pinned", PREFIX + "env-a", 2)
    pool.set_target("pinned", PREFIX + "env-b", 1)
    await settle(pool)
    claimed = pool.claim(PREFIX + "env-b", {"repo_key": "gh/o/b"})  # a user's now
    index = CacheIndex(tmp_path / "cache.sqlite")
    for name in IMAGES:
        index.add(name, name.rsplit("-", 1)[-1], "env", None)
    engine = Engine(backend)
    evictor = ImageEvictor(engine, index, PREFIX, budget_bytes=700e6, log=pool.log)
    evictor.pool = pool
    removed = await evictor.run()
    assert removed == [PREFIX + "env-a"]  # env-b is used by the claimed session
    assert [s.image for s in backend.running.values()] == [PREFIX + "env-b"]
    assert claimed.username in backend.running
    await settle(pool)  # the target stays, but nothing is started for a removed image
    assert pool.status()[PREFIX + "env-a"]["warm"] == 0
    index.close()
