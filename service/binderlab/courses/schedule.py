"""When a course's environments are prebuilt and its seats kept warm.

Windows are weekly and in the course's timezone (zoneinfo), so "Tuesdays 10:00" stays
10:00 local time across daylight-saving changes. All functions take the time as an
argument (an aware datetime): the scheduler's clock is injectable, tests pass their own.

- A course **fills** the pool from ``fill_lead`` seconds before a window starts until the
  window ends. A course without windows is filled all the time it is registered.
- A course is **prebuilt** when it is registered or changed, and again ``prebuild_lead``
  seconds before each window (a push since the last prebuild is built before class).
"""

from datetime import UTC, date, datetime, timedelta

from binderlab.courses.model import Course


def occurrences(course: Course, now: datetime) -> list[tuple[datetime, datetime]]:
    """(start, end) of each window in the week before, of and after ``now``, as aware
    datetimes in the course's timezone, in time order."""
    zone = course.zone()
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    found = []
    for window in course.parsed_windows():
        for week in (-1, 0, 1):
            day = monday + timedelta(days=window.day + 7 * week)
            found.append((_at(day, window.start, zone), _at(day, window.end, zone)))
    return sorted(found)


def _at(day: date, clock, zone) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)


def filling(course: Course, now: datetime, fill_lead: float) -> bool:
    """Whether the course's seats should be warm at ``now``."""
    if not course.windows:
        return True
    lead = timedelta(seconds=fill_lead)
    return any(start - lead <= now < end for start, end in occurrences(course, now))


def current_or_next(course: Course, now: datetime) -> tuple[datetime, datetime] | None:
    """The window under way at ``now``, else the next one; None without windows."""
    for start, end in occurrences(course, now):
        if end > now:
            return start, end
    return None


def last_prebuild_point(course: Course, now: datetime, prebuild_lead: float) -> datetime | None:
    """The latest moment at or before ``now`` when a prebuild was due (``prebuild_lead``
    seconds before a window's start); None without windows or before the first."""
    lead = timedelta(seconds=prebuild_lead)
    points = [start - lead for start, _ in occurrences(course, now) if start - lead <= now]
    return max(points) if points else None


def prebuild_due(course: Course, now: datetime, prebuild_lead: float,
                 last_prebuild: float) -> bool:
    """A window's prebuild point passed since the last prebuild (a POSIX time; 0: never)."""
    point = last_prebuild_point(course, now, prebuild_lead)
    return point is not None and point.timestamp() > last_prebuild


def utcnow() -> datetime:
    return datetime.now(UTC)
