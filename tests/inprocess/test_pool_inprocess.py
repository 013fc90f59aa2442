"""The warm pool's accounting, with a fake backend and clock: targets, the memory budget,
claims (never one session twice), refills, max age, drains, rebuilt images, shutdown."""

import asyncio

import pytest
from traitlets.config import Config

from binderlab.sessions.pool import WarmPool
from tests.inprocess.pooling import FakePoolBackend

MB = 1 << 20


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_pool(budget_sessions=10, **options) -> tuple[WarmPool, FakePoolBackend, Clock]:
    c = Config()
    c.WarmPool.session_memory = 100 * MB
    c.WarmPool.memory_budget = budget_sessions * 100 * MB
    c.WarmPool.max_starting = 100
    c.WarmPool.refill_delay = 0
    for key, value in options.items():
        setattr(c.WarmPool, key, value)
    backend, clock = FakePoolBackend(), Clock()
    return WarmPool(config=c, backend=backend, clock=clock), backend, clock


async def settle(pool: WarmPool) -> None:
    """Run reconcile and wait for the starts and stops it began."""
    await pool.reconcile()
    while pool._tasks:
        await asyncio.gather(*list(pool._tasks))


async def test_targets_add_up_per_image_and_zero_drops_a_source():
    pool, backend, _ = make_pool()
    pool.set_target("pinned", "img-a", 2)
    pool.set_target("course:physics", "img-a", 3)
    pool.set_target("rate", "img-b", 1)
    await settle(pool)
    assert pool.status() == {
        "img-a": {"target": 5, "warm": 5, "starting": 0, "claimed": 0},
        "img-b": {"target": 1, "warm": 1, "starting": 0, "claimed": 0}}
    pool.set_target("course:physics", "img-a", 0)
    await settle(pool)
    assert pool.status()["img-a"] == {"target": 2, "warm": 2, "starting": 0, "claimed": 0}
    assert len(backend.running) == 3  # the three over target were stopped
    with pytest.raises(ValueError):
        pool.set_target("pinned", "img-a", -1)


async def test_memory_budget_caps_the_sum_largest_target_first():
    pool, backend, _ = make_pool(budget_sessions=4)
    pool.set_target("course:x", "img-big", 3)
    pool.set_target("rate", "img-small", 2)
    await settle(pool)
    status = pool.status()
    assert status["img-big"]["target"] == 3 and status["img-big"]["warm"] == 3
    assert status["img-small"]["target"] == 1 and status["img-small"]["warm"] == 1
    assert len(backend.running) == 4


async def test_no_budget_means_no_warm_sessions():
    pool, backend, _ = make_pool(budget_sessions=0)
    pool.set_target("pinned", "img-a", 3)
    await settle(pool)
    assert pool.status()["img-a"]["target"] == 0 and not backend.running


async def test_pinned_config_is_a_source():
    pool, backend, _ = make_pool(pinned={"img-a": 2})
    await settle(pool)
    assert pool.status()["img-a"]["warm"] == 2


async def test_concurrent_claims_never_share_a_session_and_are_replaced():
    pool, backend, _ = make_pool()
    pool.set_target("course:c", "img-a", 5)
    await settle(pool)

    async def claim():
        await asyncio.sleep(0)
        return pool.claim("img-a", {"repo_key": "gh/o/r"})

    claimed = await asyncio.gather(*(claim() for _ in range(8)))
    got = [s for s in claimed if s is not None]
    assert len(got) == 5 and len({s.username for s in got}) == 5
    assert len({s.token for s in got}) == 5
    assert claimed.count(None) == 3  # those launch the usual way
    assert pool.status()["img-a"] == {"target": 5, "warm": 0, "starting": 0, "claimed": 5}
    await settle(pool)  # refilled
    status = pool.status()["img-a"]
    assert status["warm"] == 5 and status["claimed"] == 5
    assert {s.username for s in got}.isdisjoint(
        s.username for s in pool.warm["img-a"])


async def test_claimed_sessions_count_as_user_sessions_warm_ones_do_not():
    from binderlab.contract import LABEL_REPO_KEY, LABEL_USER
    from binderlab.sessions.trackers import Session

    pool, _, _ = make_pool()
    pool.set_target("pinned", "img-a", 2)
    await settle(pool)
    users = [s.username for s in pool.warm["img-a"]]
    claimed = pool.claim("img-a", {"repo_key": "gh/o/r"})
    sessions = [Session({LABEL_USER: u, LABEL_REPO_KEY: ""}, "img-a", None) for u in users]
    sessions.append(Session({LABEL_USER: "binder-abc", LABEL_REPO_KEY: "gh/x/y"}, "img", None))
    counted = pool.user_sessions(sessions)
    assert [s.labels[LABEL_USER] for s in counted] == [claimed.username, "binder-abc"]
    assert counted[0].labels[LABEL_REPO_KEY] == "gh/o/r"  # per-repository quotas see it


async def test_rate_source_follows_recent_launches_and_expires():
    pool, backend, clock = make_pool(rate_window=60, rate_max_per_image=2)
    for _ in range(3):
        pool.record_launch("img-a")
    await settle(pool)
    assert pool.status()["img-a"]["warm"] == 2  # capped per image
    clock.now += 61
    await settle(pool)
    assert "img-a" not in pool.status() and not backend.running


async def test_recycled_at_max_age():
    pool, backend, clock = make_pool(max_age=100)
    pool.set_target("pinned", "img-a", 2)
    await settle(pool)
    first = set(backend.running)
    clock.now += 50
    await settle(pool)
    assert set(backend.running) == first  # young enough
    clock.now += 51
    await settle(pool)
    assert len(backend.running) == 2 and first.isdisjoint(backend.running)


async def test_drain_stops_an_images_sessions_and_a_gone_image_is_not_refilled():
    pool, backend, _ = make_pool()
    pool.set_target("pinned", "img-a", 2)
    pool.set_target("pinned", "img-b", 1)
    await settle(pool)
    backend.images["img-a"] = ""  # evicted
    assert await pool.drain("img-a") == 2
    await settle(pool)
    assert [s.image for s in backend.running.values()] == ["img-b"]
    assert pool.status()["img-a"]["warm"] == 0
    backend.images["img-a"] = "id2"  # built again: the target still holds
    await settle(pool)
    assert pool.status()["img-a"]["warm"] == 2


async def test_rebuilt_image_replaces_its_warm_sessions():
    pool, backend, _ = make_pool()
    pool.set_target("pinned", "img-a", 2)
    await settle(pool)
    old = set(backend.running)
    backend.images["img-a"] = "id-rebuilt"
    await settle(pool)
    assert len(backend.running) == 2 and old.isdisjoint(backend.running)
    assert all(s.image_id == "id-rebuilt" for s in pool.warm["img-a"])


async def test_failing_start_backs_off():
    pool, backend, clock = make_pool(retry_after=30)
    backend.fail_start = True
    pool.set_target("pinned", "img-a", 2)
    await settle(pool)
    tries = backend.started
    await settle(pool)
    assert backend.started == tries  # no loop against a broken image
    backend.fail_start = False
    clock.now += 31
    await settle(pool)
    assert pool.status()["img-a"]["warm"] == 2


async def test_max_starting_bounds_concurrent_starts():
    pool, backend, _ = make_pool(max_starting=2)
    backend.gate.close()
    pool.set_target("pinned", "img-a", 5)
    await pool.reconcile()
    await asyncio.sleep(0)
    assert backend.gate.waiting == 2 and pool.status()["img-a"]["starting"] == 2
    backend.gate.open()
    for _ in range(3):
        await settle(pool)
    assert pool.status()["img-a"]["warm"] == 5


async def test_close_stops_warm_and_starting_sessions():
    pool, backend, _ = make_pool(refill_interval=0.01, touch_interval=0.01)
    pool.set_target("pinned", "img-a", 3)
    pool.start()
    while pool.status()["img-a"]["warm"] < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert set(backend.touched) >= set(backend.running)  # the culler is told they are in use
    backend.gate.close()
    pool.claim("img-a")  # a refill starts and waits at the gate
    while not backend.gate.waiting:
        await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(pool.close())
    await asyncio.sleep(0.05)
    backend.gate.open()
    await closing
    claimed = [u for u in backend.running if not pool.holds(u)]
    assert len(backend.running) == len(claimed) == 1  # only the user's claimed session
    assert not pool._tasks


async def test_claimed_users_survive_a_restart_until_their_session_ends(tmp_path):
    from binderlab.contract import LABEL_CLIENT, LABEL_REPO_KEY, LABEL_USER
    from binderlab.sessions.trackers import Session

    state = tmp_path / "pool-claims.json"
    c = Config()
    c.WarmPool.memory_budget = c.WarmPool.session_memory = 100 * MB
    pool = WarmPool(config=c, backend=FakePoolBackend(), state_file=state)
    pool.set_target("pinned", "img-a", 1)
    await settle(pool)
    claimed = pool.claim("img-a", {"repo_key": "gh/o/r", "client": "user:ada"})
    restarted = WarmPool(config=c, backend=FakePoolBackend(), state_file=state)
    session = Session({LABEL_USER: claimed.username}, "img-a", None)
    assert restarted.user_sessions([session]) == [session]  # still a user's session
    # still under its repository and the person who claimed it (their session cap)
    assert session.labels[LABEL_REPO_KEY] == "gh/o/r"
    assert session.labels[LABEL_CLIENT] == "user:ada"
    assert restarted.user_sessions([]) == []  # it ended: forgotten, also on disk
    assert not WarmPool(config=c, backend=FakePoolBackend(), state_file=state).claimed_users


async def test_refill_waits_refill_delay_after_a_claim():
    pool, backend, clock = make_pool(refill_delay=5)
    pool.set_target("pinned", "img-a", 1)
    await settle(pool)
    pool.claim("img-a")
    clock.now += 4
    await settle(pool)
    assert pool.status()["img-a"]["warm"] == 0 and backend.started == 1  # still waiting
    clock.now += 1.5
    await settle(pool)
    assert pool.status()["img-a"]["warm"] == 1 and backend.started == 2
