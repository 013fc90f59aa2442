"""A course's own launch allowance, which the per-address launch limits consult.

A class behind one NAT address looks like one client to the per-address limits
(launch/limits.py). A launch that carries a registered course's key (``?course=<key>``,
or the ``course/<key>/`` prefix thebe's binderUrl carries) and asks for one of that
course's repositories is let past those limits while the course has launches left:
**seats x launches_per_seat launches per LaunchLimits.window seconds, counted per course**
(from every address together). Counting launches, not running sessions, keeps the check in
the service's memory and bounds a leaked key: whoever holds it gets at most that many
launches per window, never more sessions than the session quota allows (the GPU caps and
session quotas are checked after this, for every launch). Beyond the allowance, the normal
per-address limits apply to the launch.
"""

import time
from collections import deque

from binderlab.courses.model import Pattern
from binderlab.courses.registry import CourseRegistry


class CourseAllowance:
    def __init__(self, registry: CourseRegistry, providers: dict[str, int], window: float,
                 launches_per_seat: float = 1.0, clock=time.time):
        self.registry = registry
        self.providers = providers
        self.window = window
        self.launches_per_seat = launches_per_seat
        self.clock = clock
        self._recent: dict[str, deque] = {}  # course id -> times of allowed launches

    def course_for(self, key: str, repo_key: str, ref: str):
        """(course, why not): the course whose key this is, if it covers the repository."""
        course = self.registry.by_key(key)
        if course is None:
            return None, "the course key in the link is not registered here (the course " \
                         "may have ended; ask your instructor for the current link)"
        patterns = [Pattern.parse(p, self.providers) for p in course.patterns]
        if not any(p.covers(repo_key, ref) for p in patterns):
            return None, f"the course key is for {course.title}, whose repositories do " \
                         f"not include {repo_key}" + (f" at {ref}" if ref else "")
        return course, ""

    def admit(self, key: str, repo_key: str, ref: str) -> str:
        """'' when the course's allowance takes this launch (and counts it), else why not."""
        course, why = self.course_for(key, repo_key, ref)
        if course is None:
            return why
        now = self.clock()
        self.registry.count_launch(course.id, now)  # the page's plot: every launch asked
        recent = self._recent.setdefault(course.id, deque())
        while recent and now - recent[0] > self.window:
            recent.popleft()
        allowance = max(1, int(course.seats * self.launches_per_seat))
        if len(recent) >= allowance:
            return f"{course.title} has had its {allowance} launches in {self.window:g} s"
        recent.append(now)
        return ""

    def used(self, course_id: str) -> int:
        """Launches counted against the course's allowance in the current window."""
        now = self.clock()
        return sum(1 for t in self._recent.get(course_id, ()) if now - t <= self.window)
