"""Launches through the real app claim warm sessions (fake hub and pool backend)."""

import asyncio

from prometheus_client import REGISTRY

from tests.inprocess.pooling import FakePoolBackend

POOL = {"BinderLab": {"warm_pool": True},
        "WarmPool": {"refill_interval": 0.02, "refill_delay": 0.05, "memory_budget": 1 << 30,
                     "session_memory": 1 << 20}}


async def pooled_app(start_binderlab, **sections):
    app = await start_binderlab(**POOL, **sections)
    app.pool.backend = FakePoolBackend()
    app.pool.backend.builder = app.builder
    return app


async def warm(app, image, count):
    while app.pool.status().get(image, {}).get("warm", 0) < count:
        await asyncio.sleep(0.01)


def sessions_gauge() -> float:
    return REGISTRY.get_sample_value("binderlab_sessions_running") or 0.0


async def test_second_launch_claims_the_warm_session(start_binderlab, streams, repo):
    app = await pooled_app(start_binderlab)
    first = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert first["phase"] == "ready"
    assert len(app.launcher.launched) == 1  # nothing warm yet: the launcher's session
    await warm(app, first["image"], 1)  # the rate source asked for one
    backend = app.pool.backend
    pooled = next(iter(backend.running.values()))

    repo.commit({"new.ipynb": "{}"}, "a notebook")
    second = streams(app, f"gh/{repo.gh_spec}/main")
    ready = await second.end()
    assert ready["phase"] == "ready" and ready["image"] == first["image"]
    assert ready["token"] == pooled.token and ready["url"] == pooled.url
    assert len(app.launcher.launched) == 1  # no new session was started
    username, options = backend.claims[-1]
    assert username == pooled.username
    assert options["content"] == options["ref"] != first["binder_persistent_request"][-40:]
    assert "Claimed a warm session\n" in [e.get("message") for e in second.events]
    await warm(app, first["image"], 1)  # replaced
    assert pooled.username not in [s.username for s in app.pool.warm[first["image"]]]


async def test_gpu_launches_are_never_pooled(start_binderlab, streams, repo):
    app = await pooled_app(start_binderlab, StaticGPUInventory={"devices": ["0"]})
    first = await streams(app, f"gh/{repo.gh_spec}/main").end()
    await warm(app, first["image"], 1)
    gpu = await streams(app, f"gh/{repo.gh_spec}/main", "gpu=1").end()
    assert gpu["phase"] == "ready" and gpu["gpus"] == ["0"]
    assert not app.pool.backend.claims  # a warm session holds no GPU
    assert app.pool.status()[first["image"]]["target"] == 1  # GPU launches do not count
    assert app.launcher.launched[-1]["gpus"] == ["0"]


async def test_warm_sessions_do_not_use_the_session_quota(start_binderlab, streams, repo):
    app = await pooled_app(start_binderlab, LaunchLimits={"max_sessions": 1})
    image = (await streams(app, f"gh/{repo.gh_spec}/main").end())["image"]
    await warm(app, image, 1)
    # the fake hub's tracker sees the warm session like any session of this host
    from binderlab.contract import LABEL_USER
    from binderlab.sessions.trackers import Session

    for s in app.pool.backend.running.values():
        app.sessions.running[s.username] = Session({LABEL_USER: s.username}, image, None)
    app.sessions.running.pop(app.launcher.launched[0]["username"])  # the first one ended
    ready = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert ready["phase"] == "ready", ready  # the warm one did not fill the quota
    # now the claimed session is a user session: the quota is full
    refused = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert refused["phase"] == "failed" and refused["status_code"] == 503, refused
    assert "full (1 sessions running)" in refused["message"]


async def test_pool_status_and_off_by_default(start_binderlab, binderlab):
    assert binderlab.pool is None
    app = await pooled_app(start_binderlab)
    app.pool.set_target("course:1", "binderlab-inproc/env-x", 2)
    await asyncio.sleep(0.1)  # a few refill passes
    assert not app.pool.backend.started
    # an image not built yet: the target waits for it, nothing is started
    assert app.pool.status() == {"binderlab-inproc/env-x": {
        "target": 2, "warm": 0, "starting": 0, "claimed": 0}}


async def test_pool_users_need_their_own_prefix(tmp_path):
    from traitlets.config import Config

    from binderlab.app import BinderLab

    c = Config()
    c.BinderLab.config_file = str(tmp_path / "none.py")
    c.BinderLab.state_dir = str(tmp_path / "state")
    c.BinderLab.docker_url = "none"
    c.BinderLab.session_tracker_class = "kubernetes"  # no engine: nothing is contacted
    c.BinderLab.warm_pool = True
    c.WarmPool.username_prefix = "binder-"  # the launcher's anonymous users
    app = BinderLab(config=c)
    import pytest

    with pytest.raises(ValueError, match="must differ"):
        app.initialize([])
    c.WarmPool.username_prefix = "pool-"
    app = BinderLab(config=c)
    app.initialize([])
    assert app.pool.username_prefix == "pool-"
    assert app.pool.backend.prestart_kernel  # the hub backend, kernel pre-start on
    await app.shutdown()


async def test_logged_in_launches_go_to_their_own_server():
    """A logged-in user's session needs their volume mounted at creation: never a claim."""
    from traitlets.config import Config

    from binderlab.sessions.pool import WarmPool
    from binderlab.sessions.pooled import launch_or_claim
    from tests.inprocess.test_pool_inprocess import settle

    c = Config()
    c.WarmPool.memory_budget = c.WarmPool.session_memory = 1 << 20
    pool = WarmPool(config=c, backend=FakePoolBackend())
    pool.set_target("pinned", "img", 1)
    await settle(pool)

    class Launcher:
        async def launch(self, image, user_options, owner=""):
            yield {"phase": "ready", "url": f"http://hub/user/{owner}/", "token": "own"}

    events = [e async for e in launch_or_claim(pool, Launcher(), "img", {}, owner="ada")]
    assert events[-1]["url"] == "http://hub/user/ada/" and not pool.backend.claims
    assert pool.status()["img"]["warm"] == 1
    anonymous = [e async for e in launch_or_claim(pool, Launcher(), "img", {})]
    assert anonymous[-1]["token"] != "own" and pool.backend.claims
