"""A logged-in user's sessions list (sessions/usersessions.py): their named servers and the
warm sessions they claimed, and stopping one of theirs (never anyone else's). The page and
its API run for real in tests/test_pool_logged_in.py."""

import pytest

from binderlab.errors import LaunchError
from binderlab.sessions.usersessions import stop_user_session, user_sessions


def server(ready=True, pending=None, started="2026-12-01T10:00:00Z", **options):
    return {"ready": ready, "pending": pending, "url": "/user/x/", "started": started,
            "last_activity": started, "user_options": options}


class Hub:
    """What the launcher asks the hub (GET /users/<name>), and what it was told to do."""

    def __init__(self, users, claimed=None):
        self.users, self.claimed, self.calls, self.stopped = users, claimed or {}, [], []

    async def api(self, method, path, body=None):
        self.calls.append((method, path))
        if method == "GET":
            return self.users[path.rsplit("/", 1)[-1]]
        return {}

    def session_url(self, model):
        return "http://hub" + model["url"]

    async def claimed_sessions(self, owner):
        return self.claimed.get(owner, [])

    async def stop(self, username):
        self.stopped.append(username)


def ada_and_bob():
    return Hub({"ada": {"servers": {
        "gh-course-lab-1234": server(token="t1", repo_key="gh/course/lab", ref="a" * 40),
        "gh-other-x-9": server(ready=False, pending="spawn", started="2026-12-01T11:00:00Z",
                               token="t2", repo_key="gh/other/x", ref="b" * 40),
        "notebook": server(),  # a server of hers binderlab did not start (no launch token)
    }}, "bob": {"servers": {}}},
        claimed={"ada": [("binderpool-ab12", "gh/course/warm",
                          server(started="2026-12-01T09:00:00Z", token="t3"))]})


async def test_her_named_servers_and_claimed_warm_sessions_newest_first():
    listed = await user_sessions(ada_and_bob(), "ada")
    assert [(s.id, s.repo_key, s.state, s.warm) for s in listed] == [
        ("gh-other-x-9", "gh/other/x", "spawn", False),
        ("gh-course-lab-1234", "gh/course/lab", "ready", False),
        ("binderpool-ab12", "gh/course/warm", "ready", True),
    ]
    assert listed[1].commit == "a" * 40 and listed[1].url == "http://hub/user/x/"


async def test_a_named_server_stops_through_the_hub_and_a_claimed_one_with_its_user():
    hub = ada_and_bob()
    stopped = await stop_user_session(hub, "ada", "gh-course-lab-1234")
    assert stopped.repo_key == "gh/course/lab"
    assert ("DELETE", "/users/ada/servers/gh-course-lab-1234") in hub.calls
    await stop_user_session(hub, "ada", "binderpool-ab12")
    assert hub.stopped == ["binderpool-ab12"]  # the pooled hub user goes with its server


@pytest.mark.parametrize("owner, sid", [
    ("bob", "binderpool-ab12"),  # ada's claimed session: not bob's to stop
    ("bob", "gh-course-lab-1234"),
    ("ada", "notebook"),  # not a binderlab session
    ("ada", "gh-gone-1"),
])
async def test_only_her_own_sessions_stop(owner, sid):
    hub = ada_and_bob()
    with pytest.raises(LaunchError) as refused:
        await stop_user_session(hub, owner, sid)
    assert refused.value.status_code == 404 and "no session" in str(refused.value)
    assert not hub.stopped and not [c for c in hub.calls if c[0] == "DELETE"]


async def test_sessions_page_and_api_need_logins(start_binderlab):
    from tornado.httpclient import AsyncHTTPClient

    fetch = AsyncHTTPClient().fetch
    app = await start_binderlab()
    for path in ("api/sessions", "sessions"):
        response = await fetch(app.public_url + path, raise_error=False)
        assert response.code == 404 and b"without logins" in response.body, path
    app = await start_binderlab(BinderLab={"authentication": "optional"})
    response = await fetch(app.public_url + "api/sessions", raise_error=False)
    assert response.code == 401 and b"Log in first" in response.body
    response = await fetch(app.public_url + "api/sessions/gh-x-1", method="DELETE",
                           raise_error=False)
    assert response.code == 401
    # the page sends a browser without a login to the service's login, and back
    page = await fetch(app.public_url + "sessions", follow_redirects=False, raise_error=False)
    assert page.code == 302 and page.headers["Location"] == "/login?next=/sessions"
