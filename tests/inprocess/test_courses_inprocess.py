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
