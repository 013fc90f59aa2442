"""The ``Courses`` options, who may manage which course, and the scheduler that prebuilds
a course's environments and keeps its seats warm in the pool.

The scheduler is a loop of ``tick(now)`` calls every ``check_interval`` seconds; ``now``
comes from ``clock`` (replaceable: tests call ``tick`` with the times they choose). Each
tick (1) starts the prebuilds that are due (schedule.py) and (2) tells the warm pool how
many started sessions each course environment should have: ``seats`` while the course is
filling, 0 otherwise (``pool.set_target("course:<id>", image, count)``). Targets are sent
only when they change; a removed course's go to 0.
"""

import asyncio
import secrets
from pathlib import Path

from traitlets import Float, List, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.contract import matches
from binderlab.courses import schedule
from binderlab.courses.allowance import CourseAllowance
from binderlab.courses.model import Course, CourseError, Pattern, validate
from binderlab.courses.registry import CourseRegistry
from binderlab.launch.context import LaunchRequest

# repository path parts before the ref, per git provider (see model.Pattern)
REPO_PARTS = {"gh": 2, "gist": 2, "gl": 1, "git": 1}
OPERATOR, INSTRUCTOR = "operator", "instructor"


class Courses(LoggingConfigurable):
    instructor_users = List(
        Unicode(), help="""JupyterHub users with the instructor role: they register courses
        and manage the ones they registered. Default: none (members of
        c.BinderLab.instructor_group are instructors too).""",
    ).tag(config=True)
    operator_users = List(
        Unicode(), help="""JupyterHub users who manage every course, like the operator's
        token. Default: none.""").tag(config=True)
    api_token = Unicode(
        "", help="""Token that makes an /api/courses request an operator's (header
        'Authorization: token <token>'); what `binderlab course` sends. Empty (default): a
        random one kept in <state_dir>/courses_api_token, which the CLI reads from the same
        state_dir.""").tag(config=True)
    fill_lead = Float(
        300, help="""Seconds before a course window starts that its seats are started in
        the warm pool (default 300); they are released when the window ends.""",
    ).tag(config=True)
    prebuild_lead = Float(
        3600, help="""Seconds before a course window starts that its environments are
        prebuilt again (default 3600), so a push since the last prebuild is built before
        class. Courses are also prebuilt when registered or changed.""").tag(config=True)
    check_interval = Float(
        30, help="Seconds between the scheduler's checks of windows (default 30)."
    ).tag(config=True)
    launches_per_seat = Float(
        1.5, help="""Launches per seat per LaunchLimits.window that a course's key lets past
        the per-address limits (default 1.5: 40 seats allow 60 launches, for reloads and
        second tabs). Beyond them the normal limits apply.""").tag(config=True)

    def __init__(self, app, **kwargs):
        super().__init__(parent=app, log=app.log, **kwargs)
        self.app = app
        self.clock = schedule.utcnow
        state: Path = app.state_path
        self.registry = CourseRegistry(state / "courses.json")
        if not self.api_token:
            self.api_token = _token_file(state / "courses_api_token")
        self.providers = {p: n for p, n in REPO_PARTS.items() if p in app.providers}
        self.allowance = CourseAllowance(self.registry, self.providers, app.limits.window,
                                         self.launches_per_seat)
        app.limits.courses = self.allowance
        self._targets: dict[tuple[str, str], int] = {}  # (source, image) -> count sent
        self._building: dict[tuple[str, str], asyncio.Task] = {}
        self._last_prebuild: dict[str, float] = {}  # course -> POSIX time

    @property
    def pool(self):
        return getattr(self.app, "pool", None)

    # ---- who may do what ------------------------------------------------------------------

    def role(self, hub_user: dict | None, token: str) -> tuple[str, str]:
        """(role, hub user name): operator, instructor or '' (neither)."""
        if token and secrets.compare_digest(token, self.api_token):
            return OPERATOR, ""
        if not hub_user:
            return "", ""
        name = hub_user.get("name", "")
        # the login's user model holds name and groups only (JupyterHub's "identify"
        # scopes), not the admin flag: operators are named here
        if name in self.operator_users:
            return OPERATOR, name
        groups = hub_user.get("groups") or []
        # one group for the whole host: the LTI authenticator fills the same one
        group = self.app.instructor_group
        if name in self.instructor_users or (group and group in groups):
            return INSTRUCTOR, name
        return "", name

    @staticmethod
    def may_manage(role: str, name: str, course: Course) -> bool:
        return role == OPERATOR or (role == INSTRUCTOR and course.owner == name)

    # ---- changes ----------------------------------------------------------------------------

    def add(self, data: dict, owner: str) -> Course:
        course = self.registry.add(validate(data, self.providers, owner=owner))
        self.log.info("Course %s registered (%d seats, %s)", course.id, course.seats,
                      ", ".join(course.patterns))
        self.after_change(course)
        return course

    def replace(self, course_id: str, data: dict) -> Course:
        old = self.registry.get(course_id)
        if data.get("id", course_id) != course_id:
            raise CourseError("A course's id cannot change; register a new course.")
        course = self.registry.replace(validate({**data, "id": course_id}, self.providers,
                                                key=old.key, owner=old.owner))
        self.after_change(course)
        return course

    def remove(self, course_id: str) -> Course:
        course = self.registry.remove(course_id)
        self._last_prebuild.pop(course_id, None)
        self.send_targets()
        return course

    def after_change(self, course: Course) -> None:
        """Prebuild now, then bring the pool's targets in line."""
        self._last_prebuild[course.id] = self.clock().timestamp()
        self.prebuild(course)
        self.send_targets()

    # ---- prebuilds ---------------------------------------------------------------------------

    def patterns(self, course: Course) -> list[Pattern]:
        return [Pattern.parse(p, self.providers) for p in course.patterns]

    def prebuild(self, course: Course) -> list[asyncio.Task]:
        tasks = []
        for pattern in self.patterns(course):
            if not pattern.concrete:
                self.registry.set_prebuild(course.id, pattern.text, state="not prebuilt",
                                           message="a pattern with wildcards names no one "
                                           "environment; its launches build on first use")
                continue
            key = (course.id, pattern.text)
            if key in self._building and not self._building[key].done():
                continue
            task = self.app.background_task(self._prebuild(course.id, pattern))
            self._building[key] = task
            tasks.append(task)
        return tasks

    async def _prebuild(self, course_id: str, pattern: Pattern) -> None:
        provider = self.app.providers[pattern.provider]
        previous = self.registry.prebuilds.get(course_id, {}).get(pattern.text, {})
        self.registry.set_prebuild(course_id, pattern.text, state="building",
                                   image=previous.get("image", ""), message="")
        final = {"phase": "failed", "message": "the prebuild ended without a result"}
        try:
            request = LaunchRequest(provider, pattern.spec(), build_only=True)
            async for event in self.app.pipeline.events(request):
                if event["phase"] in ("ready", "failed"):
                    final = event
        except Exception as e:  # logged, shown on the page; the next window tries again
            self.log.exception("Prebuild of %s for course %s crashed", pattern.text,
                               course_id)
            final = {"phase": "failed", "message": str(e)}
        if final["phase"] == "ready":
            self.registry.set_prebuild(course_id, pattern.text, state="ready",
                                       image=final.get("imageName", ""), message="")
        else:
            self.registry.set_prebuild(course_id, pattern.text, state="failed",
                                       image=previous.get("image", ""),
                                       message=final.get("message", "").strip())
        self.log.info("Prebuild of %s for course %s: %s", pattern.text, course_id,
                      final["phase"])
        self.send_targets()

    # ---- the schedule ------------------------------------------------------------------------

    def tick(self, now=None) -> None:
        now = now or self.clock()
        for course in list(self.registry.courses.values()):
            last = self._last_prebuild.get(course.id, course.created)
            if schedule.prebuild_due(course, now, self.prebuild_lead, last):
                self._last_prebuild[course.id] = now.timestamp()
                self.prebuild(course)
        self.send_targets(now)
        if self.registry.unsaved:
            self.registry.save()  # the launch history counted since the last tick

    def wanted_targets(self, now=None) -> dict[tuple[str, str], int]:
        now = now or self.clock()
        wanted: dict[tuple[str, str], int] = {}
        for course in self.registry.courses.values():
            filling = schedule.filling(course, now, self.fill_lead)
            for state in self.registry.prebuilds.get(course.id, {}).values():
                if state.get("image"):
                    wanted[(f"course:{course.id}", state["image"])] = \
                        course.seats if filling else 0
        return wanted

    def send_targets(self, now=None) -> None:
        wanted = self.wanted_targets(now)
        for key in self._targets:
            wanted.setdefault(key, 0)  # removed courses, replaced images
        pool = self.pool
        for (source, image), count in wanted.items():
            if self._targets.get((source, image), 0) == count:
                continue
            if pool is None:
                continue  # no pool on this host: the seats are the allowance only
            pool.set_target(source, image, count)
            self.log.info("Pool target of %s for %s: %d", image, source, count)
            self._targets[(source, image)] = count
        self._targets = {k: v for k, v in self._targets.items() if v}

    async def run(self) -> None:
        try:
            while True:
                try:
                    self.tick()
                except Exception:
                    self.log.exception("Course schedule check failed")
                await asyncio.sleep(self.check_interval)
        finally:  # the service stops: keep the launches counted since the last tick
            if self.registry.unsaved:
                self.registry.save()

    # ---- what the API and the page show --------------------------------------------------------

    def status(self, course: Course, with_key: bool = True, now=None) -> dict:
        now = now or self.clock()
        pool_status = self.pool.status() if self.pool is not None else {}
        prebuilds = self.registry.prebuilds.get(course.id, {})
        environments = []
        for pattern in course.patterns:
            state = prebuilds.get(pattern, {"state": "pending"})
            seats = pool_status.get(state.get("image", ""), {})
            environments.append({"pattern": pattern, **state,
                                 "pool": {k: seats.get(k, 0) for k in
                                          ("target", "warm", "starting", "claimed")}})
        window = schedule.current_or_next(course, now)
        gpus = self.app.gpus
        body = {**course.as_dict(),
                "filling": schedule.filling(course, now, self.fill_lead),
                "pool": self.pool is not None,
                "window": [window[0].isoformat(), window[1].isoformat()] if window else None,
                "environments": environments,
                "allowance": {"used": self.allowance.used(course.id),
                              "of": max(1, int(course.seats * self.launches_per_seat)),
                              "window_seconds": self.allowance.window},
                "gpu_queue": self.gpu_queue(course) if gpus is not None else None,
                "launches": sorted(self.registry.launches.get(course.id, {}).items())}
        if not with_key:
            body.pop("key")
        return body

    def gpu_queue(self, course: Course) -> dict:
        """Launches waiting for a GPU: all of them, and those of this course's repositories."""
        gpus = self.app.gpus
        claims = getattr(getattr(gpus, "book", None), "claims", {})
        repos = [p.repo for p in self.patterns(course)]
        mine = sum(1 for t in gpus.queue if t in claims and matches(claims[t].repo_key, repos))
        return {"waiting": len(gpus.queue), "course": mine, "total": len(gpus.devices),
                "in_use": len(gpus.busy())}


def _token_file(path: Path) -> str:
    if not path.exists():
        path.touch(mode=0o600)  # before the secret goes in: never readable by others
        path.write_text(secrets.token_hex(24))
    return path.read_text().strip()
