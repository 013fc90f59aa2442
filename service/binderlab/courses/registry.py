"""The registered courses, kept in ``<state_dir>/courses.json`` so they survive a restart.

One writer: the service (the CLI goes through its API), so no file locking is needed. The
file is written whole to a temporary file and renamed into place: a crash mid-write leaves
the previous version, never half a file. It holds course keys, so it is private (0600).

Besides the courses it keeps what the instructor's page shows: the prebuild state of each
environment and launches per minute (bounded: ``MAX_BUCKETS`` minutes per course).
"""

import json
import os
import time
from pathlib import Path

from binderlab.courses.model import Course, CourseError

MAX_BUCKETS = 7 * 24 * 60  # a week of minutes with launches, per course
BUCKET = 60  # seconds per launch-history bucket


class CourseRegistry:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.courses: dict[str, Course] = {}
        self.prebuilds: dict[str, dict[str, dict]] = {}  # course -> pattern -> state
        self.launches: dict[str, dict[int, int]] = {}  # course -> bucket start -> count
        self.unsaved = False  # launches counted since the last save
        self.load()

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.courses = {cid: Course(**c) for cid, c in data.get("courses", {}).items()}
        except (ValueError, TypeError) as e:
            # refuse to start rather than silently drop every course (and their keys)
            raise CourseError(f"{self.path} cannot be read ({e}); fix or move it away.",
                              500) from None
        self.prebuilds = data.get("prebuilds", {})
        self.launches = {cid: {int(t): n for t, n in buckets.items()}
                         for cid, buckets in data.get("launches", {}).items()}

    def save(self) -> None:
        data = {"courses": {cid: c.as_dict() for cid, c in self.courses.items()},
                "prebuilds": self.prebuilds,
                "launches": {cid: {str(t): n for t, n in b.items()}
                             for cid, b in self.launches.items()}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)
        self.unsaved = False

    # ---- courses ------------------------------------------------------------------------

    def get(self, course_id: str) -> Course:
        course = self.courses.get(course_id)
        if course is None:
            raise CourseError(f"No course {course_id!r} is registered here.", 404)
        return course

    def by_key(self, key: str) -> Course | None:
        for course in self.courses.values():
            if key and course.key == key:
                return course
        return None

    def add(self, course: Course) -> Course:
        if course.id in self.courses:
            raise CourseError(f"A course {course.id!r} exists already: pick another id, or "
                              "remove it first.", 409)
        course.created = course.created or time.time()
        self.courses[course.id] = course
        self.save()
        return course

    def replace(self, course: Course) -> Course:
        old = self.get(course.id)
        course.created, course.owner, course.key = old.created, old.owner, old.key
        self.courses[course.id] = course
        # environments no longer named lose their prebuild state
        self.prebuilds[course.id] = {p: s for p, s in self.prebuilds.get(course.id, {}).items()
                                     if p in course.patterns}
        self.save()
        return course

    def remove(self, course_id: str) -> Course:
        course = self.get(course_id)
        del self.courses[course_id]
        self.prebuilds.pop(course_id, None)
        self.launches.pop(course_id, None)
        self.save()
        return course

    # ---- what the page shows --------------------------------------------------------------

    def set_prebuild(self, course_id: str, pattern: str, **state) -> None:
        if course_id not in self.courses:
            return  # removed while it built
        self.prebuilds.setdefault(course_id, {})[pattern] = {**state, "at": time.time()}
        self.save()

    def count_launch(self, course_id: str, when: float) -> None:
        """One launch under the course's key (saved with the next save, not each launch)."""
        buckets = self.launches.setdefault(course_id, {})
        start = int(when // BUCKET * BUCKET)
        buckets[start] = buckets.get(start, 0) + 1
        self.unsaved = True
        while len(buckets) > MAX_BUCKETS:
            del buckets[min(buckets)]
