"""``/api/courses`` (JSON) and ``/courses/<id>`` (the instructor's page).

Who may: an operator (the ``Authorization: token <c.Courses.api_token>`` header, or a
hub user in ``c.Courses.operator_users``) manages every course; an instructor (a hub
user in ``c.Courses.instructor_users`` or the ``instructor_group``) registers courses and
manages the ones they registered. Everyone else gets 403 (401 without any credentials).
"""

import json
import time
from urllib.parse import quote, unquote

from tornado import web

from binderlab.courses import plot
from binderlab.courses.manager import INSTRUCTOR, Courses
from binderlab.courses.model import Course, CourseError
from binderlab.web.base import BaseHandler
from binderlab.web.pages import script_json

# thebe's repoProvider names for the course providers (PROTOCOL.md)
THEBE_PROVIDERS = {"gh": "github", "gl": "gitlab", "git": "git", "gist": "gist"}


def thebe_head(public: str, config: dict) -> str:
    """What a course page puts in its <head>, as the form's snippet (snippets.js) does."""
    block = json.dumps(config, indent=2).replace("<", "\\u003c")
    return "\n".join([
        '<script type="text/x-thebe-config">', block, "</script>",
        f'<link rel="stylesheet" href="{public}static/vendor/thebe/thebe.css">',
        f'<script src="{public}static/vendor/thebe/index.js"></script>'])


class CourseBase(BaseHandler):
    """A login cookie counts on a write only with the page's xsrf token beside it
    (JupyterHub's rule, as for the event stream); the operator's token needs none."""

    @property
    def courses(self) -> Courses:
        courses = getattr(self.binderlab, "courses", None)
        if courses is None:
            raise web.HTTPError(404, "Courses are not enabled on this host.")
        return courses

    def caller(self) -> tuple[str, str]:
        header = self.request.headers.get("Authorization", "")
        token = header[6:].strip() if header.lower().startswith("token ") else ""
        role, name = self.courses.role(self.hub_user, token)
        if not role:
            if not token and not self.hub_user:
                raise web.HTTPError(401, "Log in as an instructor, or send the operator's "
                                    "token: 'Authorization: token <c.Courses.api_token>'.")
            raise web.HTTPError(403, "Only instructors and operators manage courses; ask the "
                                "operator for the instructor role.")
        return role, name

    def course(self, course_id: str, role: str, name: str) -> Course:
        course = self._call(self.courses.registry.get, course_id)
        if not self.courses.may_manage(role, name, course):
            raise web.HTTPError(403, f"Course {course_id!r} is another instructor's.")
        return course

    def body(self) -> dict:
        # a cross-site form cannot send JSON without CORS approval, which these routes
        # never give
        if "json" not in self.request.headers.get("Content-Type", ""):
            raise web.HTTPError(415, "Send the course as JSON (Content-Type: "
                                "application/json).")
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise web.HTTPError(400, f"The body is not JSON: {e}.") from None

    @staticmethod
    def _call(fn, *args):
        try:
            return fn(*args)
        except CourseError as e:
            raise web.HTTPError(e.status, str(e)) from None

    def links(self, course: Course) -> dict:
        """Launch link, badge and thebe settings per concrete environment, with the key."""
        public = self.binderlab.public_url
        out = []
        for pattern in self.courses.patterns(course):
            if not pattern.concrete:
                continue
            link = f"{public}v2/{pattern.provider}/{pattern.spec()}?course={course.key}"
            out.append({
                "pattern": pattern.text, "launch_url": link,
                "badge_markdown": f"[![Launch in binderlab]({public}badge_logo.svg)]({link})",
                # thebe builds <binderUrl>/build/<prefix>/<spec> itself: the key rides in the
                # base URL (course/<key>/build/..., web/build.py)
                "thebe_config": {
                    "requestKernel": True,
                    "binderOptions": {"binderUrl": f"{public}course/{quote(course.key)}",
                                      "repo": unquote(pattern.repo_spec),
                                      "ref": pattern.ref or "HEAD",
                                      "repoProvider": THEBE_PROVIDERS[pattern.provider]},
                    "kernelOptions": {"kernelName": "python3"}},
            })
            out[-1]["thebe_head"] = thebe_head(public, out[-1]["thebe_config"])
        return {"links": out}


class CoursesAPIHandler(CourseBase):
    def get(self):
        role, name = self.caller()
        listed = [c for c in self.courses.registry.courses.values()
                  if self.courses.may_manage(role, name, c)]
        self.finish({"courses": [self.courses.status(c) for c in listed]})

    def post(self):
        role, name = self.caller()
        data = self.body()
        course = self._call(self.courses.add, data, name if role == INSTRUCTOR else "")
        self.set_status(201)
        self.finish({**self.courses.status(course), **self.links(course)})


class CourseAPIHandler(CourseBase):
    def get(self, course_id: str):
        course = self.course(course_id, *self.caller())
        self.finish({**self.courses.status(course), **self.links(course)})

    def put(self, course_id: str):
        self.course(course_id, *self.caller())
        course = self._call(self.courses.replace, course_id, self.body())
        self.finish({**self.courses.status(course), **self.links(course)})

    def delete(self, course_id: str):
        self.course(course_id, *self.caller())
        course = self._call(self.courses.remove, course_id)
        self.finish({"removed": course.id})


class CoursePageHandler(CourseBase):
    """The instructor's page: prebuild states, warm and claimed seats, GPU queue, a plot of
    launches over time, and the links to hand out."""

    def get(self, course_id: str):
        if self.require_login():
            return
        course = self.course(course_id, *self.caller())
        status = self.courses.status(course)
        self.set_header("Cache-Control", "no-store")  # the page shows the course key
        self.render("course.html", base_url=self.binderlab.base_url, c=status,
                    links=self.links(course)["links"],
                    fill_lead=self.courses.fill_lead,
                    plot=plot.launches_svg(status["launches"], time.time(),
                                           tz=course.zone()))


class CoursesPageHandler(CourseBase):
    """``/courses``: the caller's courses and a form to register one."""

    def get(self):
        if self.require_login():
            return
        role, name = self.caller()
        listed = [c for c in self.courses.registry.courses.values()
                  if self.courses.may_manage(role, name, c)]
        self.set_header("Cache-Control", "no-store")
        self.render("courses.html", base_url=self.binderlab.base_url, courses=listed,
                    role=role, name=name, settings_json=script_json({
                        "baseUrl": self.binderlab.base_url,
                        **({"xsrfToken": self.xsrf_token.decode()} if self.hub_user else {}),
                    }))


default_handlers = [
    (r"courses", CoursesPageHandler),
    (r"api/courses", CoursesAPIHandler),
    (r"api/courses/([a-z0-9-]+)", CourseAPIHandler),
    (r"courses/([a-z0-9-]+)", CoursePageHandler),
]
