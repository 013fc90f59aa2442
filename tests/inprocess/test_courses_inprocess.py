"""Courses with seats: the model's checks, the schedule, the registry, the allowance
through the real /build handler and limits, the scheduler driving a pool, the API and the
instructor role. In-process (fake builder and launcher), so each test takes milliseconds."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from tornado.httpclient import AsyncHTTPClient

from binderlab.courses import schedule
from binderlab.courses.manager import REPO_PARTS
from binderlab.courses.model import CourseError, Pattern, Window, validate
from binderlab.courses.registry import CourseRegistry
from binderlab.web import courses as course_handlers

BERLIN = ZoneInfo("Europe/Berlin")


class FakePool:
    """The warm pool's interface (sessions/pool.py on the pool branch): records targets."""

    def __init__(self):
        self.targets: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, str, int]] = []
        self.claimed: dict[str, int] = {}

    def set_target(self, source: str, image: str, count: int) -> None:
        self.calls.append((source, image, count))
        self.targets[(source, image)] = count

    def status(self) -> dict:
        out = {}
        for (_, image), n in self.targets.items():
            out[image] = {"target": n, "warm": max(0, n - self.claimed.get(image, 0)),
                          "starting": 0, "claimed": self.claimed.get(image, 0)}
        return out


# ---- the model ---------------------------------------------------------------------------

def course_data(**over):
    return {"id": "physics-101", "title": "Physics 101", "seats": 40,
            "patterns": ["gh/physics/lab-notebooks/main"], **over}


@pytest.mark.parametrize("over, says", [
    ({"id": "Physics 101"}, "lowercase letters"),
    ({"seats": 0}, "whole number from 1"),
    ({"seats": True}, "whole number"),
    ({"patterns": []}, "1 to 50 repository patterns"),
    ({"patterns": ["github.com/physics/x"]}, "provider one of"),
    ({"patterns": ["gh/physics"]}, "owner/name"),
    ({"patterns": ["gh/physics/x/ma..in"]}, "not a git ref"),
    ({"timezone": "Mars/Olympus"}, "IANA name"),
    ({"windows": ["Tuesdays 10-11"]}, "HH:MM-HH:MM"),
    ({"windows": ["Funday 10:00-11:00"]}, "not a day of the week"),
    ({"windows": ["tue 11:30-10:00"]}, "end after it starts"),
    ({"windows": ["tue 24:00-25:00"]}, "00:00 to 23:59"),
    ({"colour": "red"}, "Unknown course field"),
])
def test_bad_course_input_says_what_to_change(over, says):
    with pytest.raises(CourseError) as e:
        validate(course_data(**over), REPO_PARTS)
    assert says in str(e.value)
    assert e.value.status == 400


def test_a_valid_course_gets_a_key_and_canonical_windows():
    course = validate(course_data(windows=["Tuesdays 10:00-11:30", "thu 9:15–10:45"],
                                  timezone="Europe/Berlin"), REPO_PARTS)
    assert course.windows == ["Tue 10:00-11:30", "Thu 09:15-10:45"]
    assert len(course.key) >= 16
    assert validate(course_data(), REPO_PARTS).key != course.key


def test_patterns_cover_refs_and_repositories():
    exact = Pattern.parse("gh/physics/lab-notebooks/main", REPO_PARTS)
    any_ref = Pattern.parse("gh/physics/lab-notebooks", REPO_PARTS)
    owner = Pattern.parse("gh/physics/*/lecture-*", REPO_PARTS)
    gitlab = Pattern.parse("gl/group%2Fsub%2Fproj/main", REPO_PARTS)
    assert exact.covers("gh/physics/lab-notebooks", "main")
    assert exact.covers("gh/Physics/Lab-Notebooks", "main")  # hosts ignore case
    assert not exact.covers("gh/physics/lab-notebooks", "dev")
    assert any_ref.covers("gh/physics/lab-notebooks", "0123abcd" * 5)
    assert not any_ref.covers("gh/physics/other", "main")
    assert owner.covers("gh/physics/other", "lecture-3") and not owner.concrete
    assert exact.concrete and exact.spec() == "physics/lab-notebooks/main"
    assert any_ref.spec() == "physics/lab-notebooks/HEAD"
    assert gitlab.covers("gl/group/sub/proj", "main") and gitlab.spec() == \
        "group%2Fsub%2Fproj/main"


# ---- the schedule --------------------------------------------------------------------------

def test_windows_follow_local_time_across_daylight_saving():
    course = validate(course_data(windows=["Tuesdays 10:00-11:30"], timezone="Europe/Berlin"),
                      REPO_PARTS)
    for day in (datetime(2026, 3, 24, tzinfo=BERLIN), datetime(2026, 3, 31, tzinfo=BERLIN)):
        # the Tuesdays before and after the clocks change (29 March 2026)
        start = day.replace(hour=10)
        assert not schedule.filling(course, start - timedelta(minutes=6), fill_lead=300)
        assert schedule.filling(course, start - timedelta(minutes=4), fill_lead=300)
        assert schedule.filling(course, start + timedelta(minutes=89), fill_lead=300)
        assert not schedule.filling(course, start + timedelta(minutes=90), fill_lead=300)
    # 10:00 in Berlin is 09:00 UTC in winter, 08:00 UTC in summer
    assert schedule.filling(course, datetime(2026, 3, 24, 9, 0, tzinfo=UTC), 0)
    assert schedule.filling(course, datetime(2026, 3, 31, 8, 0, tzinfo=UTC), 0)
    assert not schedule.filling(course, datetime(2026, 3, 31, 9, 45, tzinfo=UTC), 0)


def test_prebuild_is_due_once_per_window():
    course = validate(course_data(windows=["Tuesdays 10:00-11:30"]), REPO_PARTS)
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # a Tuesday
    before = start - timedelta(hours=2)
    assert not schedule.prebuild_due(course, before, 3600, before.timestamp() - 86400 * 3)
    at = start - timedelta(minutes=59)
    assert schedule.prebuild_due(course, at, 3600, before.timestamp())
    assert not schedule.prebuild_due(course, at + timedelta(minutes=1), 3600, at.timestamp())
    # next week's window is due again
    assert schedule.prebuild_due(course, at + timedelta(days=7), 3600, at.timestamp())
    always = validate(course_data(), REPO_PARTS)
    assert schedule.filling(always, before, 300)  # no windows: seats warm all the time
    assert not schedule.prebuild_due(always, at, 3600, 0)  # prebuilt when registered only


def test_the_registry_survives_a_restart_and_keeps_the_key_private(tmp_path):
    path = tmp_path / "courses.json"
    registry = CourseRegistry(path)
    course = registry.add(validate(course_data(), REPO_PARTS, owner="ada"))
    registry.set_prebuild(course.id, course.patterns[0], state="ready", image="img:1")
    registry.count_launch(course.id, 1_000_000)
    registry.save()
    again = CourseRegistry(path)
    assert again.get("physics-101").key == course.key
    assert again.get("physics-101").owner == "ada"
    assert again.prebuilds["physics-101"][course.patterns[0]]["image"] == "img:1"
    assert again.launches["physics-101"] == {999_960: 1}
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(CourseError) as e:
        again.add(validate(course_data(), REPO_PARTS))
    assert e.value.status == 409
    path.write_text("{not json")
    with pytest.raises(CourseError, match="cannot be read"):
        CourseRegistry(path)


def test_window_text_round_trips():
    assert str(Window.parse("wednesday 8:05-9:00")) == "Wed 08:05-09:00"


# ---- through the running service -------------------------------------------------------------

async def api(app, method, path, body=None, token=None, user=None):
    """A request to the service's course API; (status, JSON body)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"token {token}"
    if user is not None:
        headers["X-Test-User"] = json.dumps(user)
    client = AsyncHTTPClient(force_instance=True)
    try:
        response = await client.fetch(
            app.public_url + path, method=method, headers=headers, raise_error=False,
            body=json.dumps(body) if body is not None else (None if method in ("GET", "DELETE")
                                                             else b""))
    finally:
        client.close()
    text = response.body.decode() if response.body else ""
    return response.code, (json.loads(text) if text.startswith("{") else text)


@pytest.fixture
def hub_users(monkeypatch):
    """Stands in for the hub's OAuth login (web/auth.py, tested in test_logged_in.py): the
    request's X-Test-User header is the user model JupyterHub would have given."""

    async def prepare(self):
        header = self.request.headers.get("X-Test-User")
        self.hub_user = json.loads(header) if header else None

    monkeypatch.setattr(course_handlers.CourseBase, "prepare", prepare)


def gh_pattern(repo, ref="main"):
    return f"gh/{repo.gh_spec}/{ref}" if ref else f"gh/{repo.gh_spec}"


async def settle(app):
    """Let the prebuilds the service started finish."""
    import asyncio
    for task in list(app.courses._building.values()):
        await asyncio.wait_for(task, 30)


async def test_forty_launches_with_the_course_key_pass_the_per_address_limit(
        start_binderlab, streams, repo, git_server):
    app = await start_binderlab(LaunchLimits={"per_client": 3, "max_sessions": 0},
                                Courses={"launches_per_seat": 1.0})
    token = app.courses.api_token
    status, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo, ref="")]), token=token)
    assert status == 201, course
    key = course["key"]
    # without the key the per-address limit refuses the fourth launch from this address
    for _ in range(3):
        assert (await streams(app, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"
    refused = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert refused["status_code"] == 429
    # with it, all 40 seats launch from the same address: query form and thebe's path form
    finals = []
    for i in range(40):
        if i % 2:
            finals.append(await streams(app, f"gh/{repo.gh_spec}/main", f"course={key}").end())
        else:
            finals.append(await _course_path_stream(app, key, repo))
    assert [f["phase"] for f in finals] == ["ready"] * 40
    assert len(app.sessions.running) == 43
    # the 41st is beyond the seats: the normal limit applies again, and says why
    beyond = await streams(app, f"gh/{repo.gh_spec}/main", f"course={key}").end()
    assert beyond["status_code"] == 429
    assert "Physics 101 has had its 40 launches" in beyond["message"]
    # the key admits only the course's repositories
    other = git_server.create("requirements", owner="inproc")
    wrong = await streams(app, f"gh/{other.gh_spec}/main", f"course={key}").end()
    assert wrong["status_code"] == 429 and "do not include" in wrong["message"]
    unknown = await streams(app, f"gh/{repo.gh_spec}/main", "course=" + "x" * 24).end()
    assert unknown["status_code"] == 429 and "not registered here" in unknown["message"]
    # the page's plot counts every launch asked with the key for the course's repositories
    assert sum(app.courses.registry.launches["physics-101"].values()) == 41


async def _course_path_stream(app, key, repo):
    from tests.inprocess.mocking import EventStream

    stream = EventStream(f"{app.public_url}course/{key}/", f"gh/{repo.gh_spec}/main")
    try:
        return await stream.end()
    finally:
        stream.close()


async def test_course_key_does_not_lift_the_session_quota(start_binderlab, streams, repo):
    app = await start_binderlab(LaunchLimits={"per_client": 1, "max_sessions": 2})
    _, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo)]), token=app.courses.api_token)
    for _ in range(2):
        ok = await streams(app, f"gh/{repo.gh_spec}/main", f"course={course['key']}").end()
        assert ok["phase"] == "ready"
    full = await streams(app, f"gh/{repo.gh_spec}/main", f"course={course['key']}").end()
    assert full["status_code"] == 503 and "full" in full["message"]


async def test_the_scheduler_prebuilds_and_fills_the_pool_for_the_window(
        start_binderlab, repo):
    app = await start_binderlab(Courses={"fill_lead": 300, "check_interval": 3600})
    pool = app.pool = FakePool()
    now = [datetime(2026, 12, 1, 8, 0, tzinfo=UTC)]  # a Tuesday, two hours before class
    app.courses.clock = lambda: now[0]
    status, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo)], windows=["Tuesdays 10:00-11:30"]),
        token=app.courses.api_token)
    assert status == 201
    await settle(app)
    state = app.courses.registry.prebuilds["physics-101"][gh_pattern(repo)]
    assert state["state"] == "ready" and state["image"].startswith("binderlab-inproc/")
    assert app.builder.builds == 1
    image = state["image"]
    source = "course:physics-101"
    assert pool.calls == []  # outside the window nothing is kept warm
    now[0] = datetime(2026, 12, 1, 9, 1, tzinfo=UTC)  # 59 minutes before: prebuilt again
    app.courses.tick()
    await settle(app)
    assert app.courses.registry.prebuilds["physics-101"][gh_pattern(repo)]["state"] == "ready"
    assert app.builder.builds == 1  # the environment had not changed: a cache hit
    assert pool.calls == []
    now[0] = datetime(2026, 12, 1, 9, 56, tzinfo=UTC)  # four minutes before
    app.courses.tick()
    assert pool.calls == [(source, image, 40)]
    app.courses.tick()  # unchanged targets are not sent again
    assert pool.calls == [(source, image, 40)]
    pool.claimed[image] = 12
    _, shown = await api(app, "GET", "api/courses/physics-101", token=app.courses.api_token)
    assert shown["environments"][0]["pool"] == {"target": 40, "warm": 28, "starting": 0,
                                                "claimed": 12}
    assert shown["filling"] is True
    now[0] = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)  # the window ended
    app.courses.tick()
    assert pool.calls[-1] == (source, image, 0)
    now[0] = datetime(2026, 12, 8, 9, 56, tzinfo=UTC)  # next Tuesday
    app.courses.tick()
    await settle(app)
    assert pool.calls[-1] == (source, image, 40)
    await api(app, "DELETE", "api/courses/physics-101", token=app.courses.api_token)
    assert pool.calls[-1] == (source, image, 0)


async def test_a_failed_prebuild_shows_its_reason(start_binderlab, repo):
    app = await start_binderlab(FakeBuilder={"fail_with": "pip could not resolve numpy==0.0"})
    await api(app, "POST", "api/courses", course_data(patterns=[gh_pattern(repo)]),
              token=app.courses.api_token)
    await settle(app)
    _, shown = await api(app, "GET", "api/courses/physics-101", token=app.courses.api_token)
    assert shown["environments"][0]["state"] == "failed"
    assert "numpy==0.0" in shown["environments"][0]["message"]


async def test_api_needs_an_operator_or_an_instructor(start_binderlab, repo, hub_users):
    app = await start_binderlab(Courses={"instructor_users": ["grace"],
                                         "operator_users": ["root"]})
    token = app.courses.api_token
    body = course_data(patterns=[gh_pattern(repo)])
    assert (await api(app, "GET", "api/courses"))[0] == 401
    assert (await api(app, "GET", "api/courses", token="wrong"))[0] == 403
    student = {"name": "sam", "groups": []}
    code, err = await api(app, "POST", "api/courses", body, user=student)
    assert code == 403 and "instructor role" in err["message"]
    # an instructor by the group the LMS login puts them in, another by config
    ada = {"name": "ada", "groups": ["instructors"]}
    grace = {"name": "grace", "groups": []}
    code, mine = await api(app, "POST", "api/courses", body, user=ada)
    assert code == 201 and mine["owner"] == "ada"
    code, theirs = await api(app, "POST", "api/courses", course_data(
        id="chem-1", patterns=[gh_pattern(repo)]), user=grace)
    assert code == 201
    # each sees and changes only their own; the operator all
    assert [c["id"] for c in (await api(app, "GET", "api/courses", user=ada))[1]["courses"]] \
        == ["physics-101"]
    assert (await api(app, "DELETE", "api/courses/chem-1", user=ada))[0] == 403
    assert (await api(app, "GET", "courses/chem-1", user=ada))[0] == 403
    code, changed = await api(app, "PUT", "api/courses/physics-101",
                              {**body, "seats": 25}, user=ada)
    assert code == 200 and changed["seats"] == 25 and changed["key"] == mine["key"]
    assert sorted(c["id"] for c in (await api(app, "GET", "api/courses",
                                              token=token))[1]["courses"]) == \
        ["chem-1", "physics-101"]
    # an operator by name manages others' courses; JupyterHub's admin flag is not in the
    # login's user model, so it grants nothing here
    assert (await api(app, "DELETE", "api/courses/chem-1",
                      user={"name": "eve", "admin": True, "groups": []}))[0] == 403
    assert (await api(app, "DELETE", "api/courses/chem-1",
                      user={"name": "root", "groups": []}))[0] == 200
    assert (await api(app, "GET", "api/courses/chem-1", token=token))[0] == 404


async def test_api_refuses_bad_input_clearly(start_binderlab, repo):
    app = await start_binderlab()
    token = app.courses.api_token
    code, err = await api(app, "POST", "api/courses", course_data(seats=-3), token=token)
    assert code == 400 and "whole number" in err["message"]
    client = AsyncHTTPClient(force_instance=True)
    response = await client.fetch(app.public_url + "api/courses", method="POST",
                                  body="id=x", raise_error=False,
                                  headers={"Authorization": f"token {token}"})
    client.close()
    assert response.code == 415
    code, _ = await api(app, "POST", "api/courses", course_data(patterns=[gh_pattern(repo)]),
                        token=token)
    assert code == 201
    code, err = await api(app, "POST", "api/courses", course_data(patterns=[gh_pattern(repo)]),
                          token=token)
    assert code == 409 and "exists already" in err["message"]
    code, err = await api(app, "PUT", "api/courses/physics-101",
                          course_data(id="other", patterns=[gh_pattern(repo)]), token=token)
    assert code == 400 and "cannot change" in err["message"]
    assert app.courses.registry.get("physics-101").patterns == [gh_pattern(repo)]


async def test_instructor_page_shows_state_links_and_a_plot(start_binderlab, streams, repo,
                                                            hub_users):
    app = await start_binderlab()
    app.pool = FakePool()
    ada = {"name": "ada", "groups": ["instructors"]}
    _, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo), "gh/inproc/*"]), user=ada)
    await settle(app)
    for _ in range(3):
        await streams(app, f"gh/{repo.gh_spec}/main", f"course={course['key']}").end()
    code, page = await api(app, "GET", "courses/physics-101", user=ada)
    assert code == 200
    assert "<svg" in page and 'data-launches="3"' in page
    assert f"?course={course['key']}" in page  # the link students get
    assert f"course/{course['key']}" in page  # thebe's binderUrl
    assert "ready" in page and "not prebuilt" in page  # the wildcard pattern
    assert "40 of 40" in page  # no windows: the seats are warm all the time


# ---- each option ---------------------------------------------------------------------------

async def test_configured_token_group_and_operators(start_binderlab, repo, hub_users):
    app = await start_binderlab(Courses={"api_token": "t0ken-from-config",
                                         "operator_users": ["ops"]},
                                BinderLab={"instructor_group": "teachers"})
    body = course_data(patterns=[gh_pattern(repo)])
    assert (await api(app, "GET", "api/courses", token="t0ken-from-config"))[0] == 200
    # the default group no longer grants the role; the configured one does
    assert (await api(app, "POST", "api/courses", body,
                      user={"name": "ada", "groups": ["instructors"]}))[0] == 403
    code, course = await api(app, "POST", "api/courses", body,
                             user={"name": "ada", "groups": ["teachers"]})
    assert code == 201 and course["owner"] == "ada"
    # an operator user manages a course that is not theirs
    code, _ = await api(app, "PUT", "api/courses/physics-101", {**body, "seats": 5},
                        user={"name": "ops", "groups": []})
    assert code == 200 and app.courses.registry.get("physics-101").seats == 5


async def test_empty_instructor_group_grants_nothing(start_binderlab, repo, hub_users):
    app = await start_binderlab(BinderLab={"instructor_group": ""})
    code, _ = await api(app, "POST", "api/courses", course_data(patterns=[gh_pattern(repo)]),
                        user={"name": "ada", "groups": ["instructors", ""]})
    assert code == 403


async def test_default_allowance_is_one_and_a_half_launches_per_seat(start_binderlab, repo):
    app = await start_binderlab()
    _, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo)]), token=app.courses.api_token)
    assert course["allowance"] == {"used": 0, "of": 60, "window_seconds": 600}


async def test_the_schedule_loop_runs_every_check_interval(start_binderlab, repo):
    """No test calls tick() here: the service's own loop (check_interval) fills the pool
    once the injected clock enters the window."""
    import asyncio

    app = await start_binderlab(Courses={"check_interval": 0.05})
    pool = app.pool = FakePool()
    now = [datetime(2026, 12, 1, 8, 0, tzinfo=UTC)]
    app.courses.clock = lambda: now[0]
    await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo)], windows=["Tuesdays 10:00-11:30"]),
        token=app.courses.api_token)
    await settle(app)
    await asyncio.sleep(0.2)
    assert pool.calls == []
    now[0] = datetime(2026, 12, 1, 10, 15, tzinfo=UTC)
    for _ in range(100):
        if pool.calls:
            break
        await asyncio.sleep(0.05)
    assert pool.calls and pool.calls[0][2] == 40


async def test_the_course_shows_the_gpu_queue_and_its_launches_wait_in_it(
        start_binderlab, streams, repo, git_server):
    app = await start_binderlab(StaticGPUInventory={"devices": ["0"]},
                                GPUAllocator={"max_gpus_per_user": 0})
    _, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo)]), token=app.courses.api_token)
    key = course["key"]
    first = await streams(app, f"gh/{repo.gh_spec}/main", f"gpu=1&course={key}").end()
    assert first["gpus"] == ["0"]
    # the only GPU is taken: a student with the key waits in the queue like anyone
    waiting = streams(app, f"gh/{repo.gh_spec}/main", f"gpu=1&course={key}")
    assert (await waiting.until("waiting"))["queue_position"] == 1
    other = git_server.create("requirements", owner="inproc")
    elsewhere = streams(app, f"gh/{other.gh_spec}/main", "gpu=1")
    assert (await elsewhere.until("waiting"))["queue_position"] == 2
    _, shown = await api(app, "GET", "api/courses/physics-101", token=app.courses.api_token)
    assert shown["gpu_queue"] == {"waiting": 2, "course": 1, "total": 1, "in_use": 1}
    code, page = await api(app, "GET", "courses/physics-101", token=app.courses.api_token)
    assert "GPU queue: 2 waiting (1 of this course), 1 of 1 GPUs in use." in page
    waiting.close()
    elsewhere.close()


async def test_the_gpu_cap_per_client_holds_with_the_key(start_binderlab, streams, repo):
    app = await start_binderlab(StaticGPUInventory={"devices": ["0", "1"]},
                                GPUAllocator={"max_gpus_per_user": 1})
    _, course = await api(app, "POST", "api/courses", course_data(
        patterns=[gh_pattern(repo)]), token=app.courses.api_token)
    params = f"gpu=1&course={course['key']}"
    assert (await streams(app, f"gh/{repo.gh_spec}/main", params).end())["gpus"]
    refused = await streams(app, f"gh/{repo.gh_spec}/main", params).end()
    assert refused["status_code"] == 429 and "GPU" in refused["message"], refused


async def test_the_loading_page_passes_the_key_to_the_stream(start_binderlab, repo):
    import re

    app = await start_binderlab()
    client = AsyncHTTPClient(force_instance=True)
    response = await client.fetch(f"{app.public_url}v2/gh/{repo.gh_spec}/main?course=k3y-"
                                  "abcdefghijklmnop", raise_error=False)
    client.close()
    assert response.code == 200
    settings = json.loads(re.search(
        r'<script type="application/json" id="launch-settings">(.*?)</script>',
        response.body.decode(), re.S).group(1))
    assert settings["buildParams"]["course"] == "k3y-abcdefghijklmnop"
