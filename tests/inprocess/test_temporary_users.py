"""Logged-in mode's removal of finished temporary users (sessions/temporary.py), against a
hub API stand-in that answers as JupyterHub's /users does: only temporary users without a
server go, never a person, one being started, or one created a moment ago."""

from datetime import UTC, datetime, timedelta

from binderlab.sessions.temporary import TemporaryUserReaper

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def user(name, age_s=600, servers=None, admin=False):
    created = (NOW - timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")
    return {"name": name, "created": created, "last_activity": created, "admin": admin,
            "servers": servers or {}}


class Hub:
    def __init__(self, users):
        self.users = {u["name"]: u for u in users}
        self.calls = []
        self.username_prefix = "binder-"
        self.starting = {"binder-starting"}

    async def api(self, method, path, body=None):
        self.calls.append((method, path))
        if method == "GET":
            assert "state=inactive" in path
            return [u for u in self.users.values()
                    if not any(s.get("ready") for s in u["servers"].values())]
        self.users.pop(path.rsplit("/", 1)[-1])
        return {}


async def test_only_finished_temporary_users_are_removed():
    hub = Hub([
        user("binder-done"),
        user("binder-culled", servers={"": {"ready": False, "pending": None}}),
        user("binder-running", servers={"": {"ready": True}}),
        user("binder-stopping", servers={"": {"ready": False, "pending": "stop"}}),
        user("binder-starting"),
        user("binder-new", age_s=5),
        user("alice"),  # a person: their identity and volume stay
        user("binder-admin", admin=True),
    ])
    removed = await TemporaryUserReaper(hub, grace=120).remove_finished_once(NOW)
    assert sorted(removed) == ["binder-culled", "binder-done"]
    assert set(hub.users) == {"binder-running", "binder-stopping", "binder-starting",
                              "binder-new", "alice", "binder-admin"}


async def test_grace_is_configurable():
    hub = Hub([user("binder-new", age_s=5)])
    assert await TemporaryUserReaper(hub, grace=1).remove_finished_once(NOW) == ["binder-new"]


async def test_the_pools_claimed_users_go_too_once_culled():
    hub = Hub([user("binderpool-culled"), user("binderpool-warm", servers={"": {"ready": True}}),
               user("binder-done")])
    reaper = TemporaryUserReaper(hub, ("binderpool-",), grace=120)
    assert sorted(await reaper.remove_finished_once(NOW)) == ["binder-done",
                                                              "binderpool-culled"]
    assert set(hub.users) == {"binderpool-warm"}
