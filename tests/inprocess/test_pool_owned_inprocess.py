"""Logged-in claims of warm sessions, the logic (issue 14): when a launch claims for a user,
when it does not, what a failed claim leaves, how a later launch finds the claimed session,
and the mount slots' bookkeeping. The mounts themselves run for real in
tests/test_pool_logged_in.py."""

import asyncio
from pathlib import Path

import pytest
from traitlets.config import Config

from binderlab.sessions.pool import WarmPool
from binderlab.sessions.pooled import launch_or_claim
from binderlab.sessions.poolmounts import PoolMounts, mount_points, pool_mounts_root
from binderlab.sessions.poolstorage import ClaimStorage
from tests.inprocess.pooling import FakePoolBackend
from tests.inprocess.test_pool_inprocess import settle


class OwnedBackend(FakePoolBackend):
    """The fake backend with logged-in claims: ``volumes`` holds the users who have one."""

    def __init__(self):
        super().__init__()
        self.storage = object()  # claims for owners are on
        self.volumes: set[str] = set()
        self.owned: list[tuple[str, str]] = []  # (pooled user, owner)
        self.fail_owned = False

    async def why_not_owned(self, user_options, owner):
        return "" if owner in self.volumes else f"{owner} has no persistent volume yet"

    async def claim_owned(self, session, user_options, owner):
        await asyncio.sleep(0.01)  # the merge container runs: other launches go on
        if self.fail_owned:
            raise RuntimeError("the merge container failed")
        self.owned.append((session.username, owner))
        return ["Your files are in /persistent (merged the repository: 1 added)"]


class Launcher:
    def __init__(self):
        self.launched = []

    async def launch(self, image, user_options, owner=""):
        self.launched.append(owner)
        yield {"phase": "ready", "url": f"http://hub/user/{owner}/", "token": "own"}


async def warm_pool() -> WarmPool:
    c = Config()
    c.WarmPool.memory_budget = c.WarmPool.session_memory = 1 << 20
    c.WarmPool.refill_delay = 0
    pool = WarmPool(config=c, backend=OwnedBackend())
    pool.set_target("pinned", "img", 1)
    await settle(pool)
    return pool


OPTIONS = {"repo_key": "gh/course/lab", "upstream": "a" * 40}


async def test_a_user_with_a_volume_claims_with_the_merge_in_the_launch_log():
    pool = await warm_pool()
    (warm,) = pool.warm["img"]
    pool.backend.volumes.add("ada")
    launcher = Launcher()
    events = [e async for e in launch_or_claim(pool, launcher, "img", OPTIONS, owner="ada")]
    assert events[-1] == {"phase": "ready", "url": warm.url, "token": warm.token}
    assert pool.backend.owned == [(warm.username, "ada")] and not launcher.launched
    messages = [e.get("message", "") for e in events]
    assert "Claimed a warm session\n" in messages
    assert any(m.startswith("Your files are in /persistent") for m in messages)
    # counted as the user's from now on, under the repository it was claimed for
    assert pool.claimed_users == {warm.username: "gh/course/lab"}
    assert not pool.holds(warm.username)


async def test_a_first_launch_starts_the_named_server_and_leaves_the_warm_one():
    pool = await warm_pool()
    (warm,) = pool.warm["img"]
    launcher = Launcher()  # ada has no volume: the spawner creates it, with its settings
    events = [e async for e in launch_or_claim(pool, launcher, "img", OPTIONS, owner="ada")]
    assert events[-1]["url"] == "http://hub/user/ada/" and launcher.launched == ["ada"]
    assert pool.warm["img"] == [warm] and not pool.claimed_users
    assert pool.status()["img"]["claimed"] == 0


async def test_gpu_launches_of_users_are_not_claims():
    pool = await warm_pool()
    pool.backend.volumes.add("ada")
    launcher = Launcher()
    options = {**OPTIONS, "gpus": ["0"]}
    events = [e async for e in launch_or_claim(pool, launcher, "img", options, owner="ada")]
    assert events[-1]["token"] == "own" and not pool.backend.owned


async def test_a_failed_claim_stops_the_warm_session_and_starts_the_users_own():
    pool = await warm_pool()
    (warm,) = pool.warm["img"]
    pool.backend.volumes.add("ada")
    pool.backend.fail_owned = True
    launcher = Launcher()
    events = [e async for e in launch_or_claim(pool, launcher, "img", OPTIONS, owner="ada")]
    assert events[-1]["url"] == "http://hub/user/ada/" and launcher.launched == ["ada"]
    assert warm.username not in pool.backend.running  # half-claimed: stopped, not reused
    assert warm.username not in pool.claimed_users
    await settle(pool)
    assert len(pool.warm["img"]) == 1 and pool.warm["img"][0] is not warm  # refilled


class FakeHubAPI:
    """The hub API answers ClaimStorage.running asks for."""

    def __init__(self, shared, users):
        self.shared, self.users = shared, users

    async def api(self, method, path, body=None):
        if path.endswith("/shared"):
            return {"items": [{"server": {"user": {"name": u}, "name": ""}}
                              for u in self.shared]}
        return self.users[path.rsplit("/", 1)[-1]]

    def running_event(self, server):
        if not (server and server.get("ready")):
            return None
        return {"phase": "ready", "url": server["url"],
                "token": server["user_options"]["token"]}


async def test_a_second_launch_returns_to_the_claimed_session(tmp_path):
    ready = {"ready": True, "url": "http://hub/user/binderpool-1/",
             "user_options": {"token": "t" * 20}}
    hub = FakeHubAPI(["binderpool-1", "binderpool-2"],
                     {"binderpool-1": {"servers": {"": ready}},
                      "binderpool-2": {"servers": {"": ready}}})
    storage = ClaimStorage(launcher=hub, engine=None, content_dir=tmp_path,
                           mounts=PoolMounts(tmp_path / "slots"), image_prefix="x/", log=None,
                           merge_class=None)
    claims = {"binderpool-1": "gh/course/lab", "binderpool-2": "gh/other/repo"}
    found = await storage.running("ada", "gh/course/lab", claims)
    assert found["token"] == "t" * 20 and found["url"].endswith("/binderpool-1/")
    assert await storage.running("ada", "gh/none/such", claims) is None
    # a shared server whose claim the pool forgot (it ended) is not returned to
    assert await storage.running("ada", "gh/course/lab", {}) is None


def test_mountinfo_is_read_with_its_escapes_and_propagation():
    text = (
        "36 35 98:0 /mnt1 /mnt1 rw,noatime master:1 - ext3 /dev/root rw\n"
        "40 27 0:45 /x /srv/pool\\040mounts rw shared:7 - ext4 /dev/sda rw\n"
        "41 40 0:45 /vol/_data/f /srv/pool\\040mounts/binderpool-ab rw shared:7 - ext4 "
        "/dev/sda rw\n")
    points = mount_points(text)
    assert points["/mnt1"] == "master:1"
    assert points["/srv/pool mounts"] == "shared:7"
    mounts = PoolMounts(Path("/srv/pool mounts"))
    mounts.points = lambda: points
    assert mounts.attached() == {"binderpool-ab"}


def test_slots_take_pool_user_names_only(tmp_path):
    mounts = PoolMounts(tmp_path)
    assert mounts.slot("binderpool-0a1b").parent == tmp_path.resolve()
    for bad in ("../etc", "a/b", "", "x" * 200):
        with pytest.raises(ValueError):
            mounts.slot(bad)


def test_slots_only_with_the_pool_and_required_logins(tmp_path):
    class App:
        state_path = tmp_path
        warm_pool = True
        authentication = "required"

    assert pool_mounts_root(App()) == tmp_path / "pool-mounts"
    App.authentication = "optional"  # anonymous launches there need ordinary pooled ones
    assert pool_mounts_root(App()) is None
    App.authentication, App.warm_pool = "required", False
    assert pool_mounts_root(App()) is None


def test_hub_settings_carry_the_slots():
    from binderlab.contract import HubSettings

    settings = HubSettings(pool_mounts="/var/lib/binderlab/pool-mounts")
    assert HubSettings.from_env(settings.to_env()).pool_mounts == settings.pool_mounts
    assert HubSettings.from_env({}).pool_mounts == ""


async def test_a_claimed_session_counts_against_its_users_session_cap(
        start_binderlab, streams, git_server, monkeypatch):
    from binderlab.contract import LABEL_USER
    from binderlab.sessions.trackers import Session
    from binderlab.web.base import BaseHandler
    from tests.inprocess.test_pool_launch_inprocess import POOL, warm

    monkeypatch.setattr(BaseHandler, "hub_user_name",  # the login, as the budget tests do
                        property(lambda self: self.get_query_argument("test_user", "")))
    # (the login is the stand-in above; the backend's claims for owners are on)
    app = await start_binderlab(**POOL, LaunchLimits={"max_sessions_per_user": 2})
    app.pool.backend = OwnedBackend()
    app.pool.backend.volumes.add("ann")
    repos = [git_server.create("requirements", owner="inproc") for _ in range(3)]
    first = await streams(app, f"gh/{repos[0].gh_spec}/main", "test_user=ann").end()
    assert first["phase"] == "ready"
    await warm(app, first["image"], 1)
    second = await streams(app, f"gh/{repos[1].gh_spec}/main", "test_user=ann").end()
    assert second["phase"] == "ready"
    ((pooled, owner),) = app.pool.backend.owned
    assert owner == "ann" and pooled in second["url"]
    # the tracker sees the claimed container as the spawner labelled it: the pool's user
    app.sessions.running[pooled] = Session({LABEL_USER: pooled}, first["image"], None)
    refused = await streams(app, f"gh/{repos[2].gh_spec}/main", "test_user=ann").end()
    assert (refused["phase"], refused["status_code"]) == ("failed", 429), refused
    other = await streams(app, f"gh/{repos[2].gh_spec}/main", "test_user=bob").end()
    assert other["phase"] == "ready"


def test_the_claims_merge_takes_the_services_storage_options():
    from traitlets.config import Configurable

    from binderlab.spawners.claimmerge import ClaimMerge

    c = Config()
    c.ClaimMerge.merge_timeout = 30.0
    c.ClaimMerge.volume_mount_path = "/work"
    merge = ClaimMerge(engine=None, image="img", owner="ada", folder="gh-course-lab",
                       image_prefix="x/", log=None, parent=Configurable(config=c))
    assert (merge.merge_timeout, merge.volume_mount_path) == (30.0, "/work")
    assert ClaimMerge(engine=None, image="img", owner="ada", folder="f", image_prefix="x/",
                      log=None).merge_mem_limit == "512m"  # the spawner's default
    assert merge.user.name == "ada" and merge.name == "gh-course-lab"


class SlowLauncher(Launcher):
    """A launcher whose user sessions (named servers) it remembers, as the hub's does."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    async def running(self, owner, repo_key):
        # what ClaimStorage.running answers: a warm session shared with them (the share is
        # made at the claim's end) that was claimed for this repository
        await asyncio.sleep(0)  # it asks the hub
        for username, who in self.pool.backend.owned:
            if who == owner and self.pool.claimed_users.get(username) == repo_key:
                return {"url": f"http://hub/user/{username}/", "token": "claimed"}
        return None


async def test_two_tabs_of_one_user_claim_one_warm_session_not_two():
    pool = await warm_pool()
    pool.memory_budget = 2 << 20  # room for two warm sessions
    pool.set_target("pinned", "img", 2)
    await settle(pool)
    assert len(pool.warm["img"]) == 2
    pool.backend.volumes.add("ada")
    launcher = SlowLauncher(pool)
    options = {**OPTIONS, "client": "ada"}

    async def launch():
        return [e async for e in launch_or_claim(pool, launcher, "img", options, owner="ada")]

    first, second = await asyncio.gather(launch(), launch())
    # one claim merged into (and mounted) her folder; the other launch returned to it
    assert len(pool.backend.owned) == 1 and not launcher.launched
    assert pool.status()["img"]["claimed"] == 1
    assert "Returning to your running session\n" in [e.get("message") for e in second]
    (claimed,) = pool.claimed_users
    assert {first[-1]["url"], second[-1]["url"]} == {f"http://127.0.0.1:1/user/{claimed}/",
                                                     f"http://hub/user/{claimed}/"}
    assert not pool._turns  # nothing kept once both launches are through


class KernelCalls:
    """The pooled server's Jupyter API as warm_kernel calls it: records each request."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    async def fetch(self, request):
        from types import SimpleNamespace

        self.calls.append((request.method, request.url.rsplit("/user/p/", 1)[1]))
        return SimpleNamespace(body=b'{"id": "k1"}' if request.method == "POST" else b"")


@pytest.mark.parametrize("storage", [None, object()], ids=["anonymous", "logged-in"])
async def test_a_logged_in_pool_hands_over_no_kernel(storage, monkeypatch):
    """A logged-in claim shuts pre-started kernels down (their directory is the slot the
    user's folder then covers), so a logged-in pool's warm session keeps none: the claim
    would wait for its shutdown (bench/pool_loggedin.py: ~0.25 s of ~0.9 s) for nothing."""
    from binderlab.sessions import pooled
    from binderlab.sessions.warmsessions import WarmSession

    async def answered(url, headers):  # the kernel's kernel_info_reply
        pass

    monkeypatch.setattr(pooled, "kernel_info", answered)
    http = KernelCalls()
    backend = pooled.HubPoolBackend(launcher=type("L", (), {"http": http})(), engine=None,
                                    content_dir=Path("/nonexistent"),
                                    username_prefix="binderpool-", storage=storage)
    assert backend.handover_kernel  # the default: thebe's first session gets the kernel
    await backend.warm_kernel(WarmSession("p", "img", "t", "http://hub/user/p/", 0.0, None))
    if storage is None:
        assert http.calls == [("POST", "api/kernels"), ("POST", "api/sessions")]
    else:
        assert http.calls == [("POST", "api/kernels"), ("DELETE", "api/kernels/k1")]
