"""``binderlab course add|list|show|remove``: manage courses through the running service.

The CLI talks to the service's /api/courses with the operator token, so the service stays
the one writer of the course registry and applies a change at once (prebuild, pool fill).
It finds the service and the token from the same config file as the service
(``--config``): the service's local address (``c.BinderLab.ip``/``port``/``base_url``)
and ``c.Courses.api_token``, or the token the service keeps in ``<state_dir>``. When the
service does not answer, the command says so and changes nothing.
"""

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Application

COMMON_ALIASES = {"config": "CourseCommand.config_file", "url": "CourseCommand.url",
                  "token": "CourseCommand.token"}


class CourseCommand(Application):
    """What every `binderlab course` subcommand shares: where the service is, the token."""

    config_file = Unicode("binderlab_config.py",
                          help="The service's config file (default binderlab_config.py)."
                          ).tag(config=True)
    url = Unicode("", help="""The binder service's URL. Default: its local address from the
        config (c.BinderLab.ip, port, base_url).""").tag(config=True)
    token = Unicode("", help="""The operator token. Default: c.Courses.api_token, else the
        one the service keeps in <state_dir>/courses_api_token.""").tag(config=True)

    def service(self) -> tuple[str, str]:
        from binderlab.app import BinderLab

        self.load_config_file(self.config_file)
        service = BinderLab(config=self.config)
        url = self.url or (f"http://{'127.0.0.1' if service.ip in ('', '0.0.0.0') else service.ip}"
                           f":{service.port}{service.base_url}")
        token = self.token or self.config.Courses.get("api_token", "")
        if not token:
            path = Path(service.state_dir) / "courses_api_token"
            if not path.exists():
                self.fail(f"No operator token: set c.Courses.api_token, or start the service "
                          f"once so it writes {path}.")
            token = path.read_text().strip()
        return url.rstrip("/") + "/", token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        url, token = self.service()
        request = urllib.request.Request(
            url + path, method=method, data=json.dumps(body).encode() if body else None,
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("message", e.reason)
            except ValueError:
                message = e.reason
            self.fail(f"{message} (HTTP {e.code})")
        except (urllib.error.URLError, OSError) as e:
            self.fail(f"The binder service at {url} does not answer ({getattr(e, 'reason', e)})"
                      ": start it (binderlab up or serve), or pass --url. Nothing changed.")

    def fail(self, message: str):
        sys.stderr.write(f"binderlab course: {message}\n")
        raise SystemExit(1)

    def one_id(self) -> str:
        if len(self.extra_args) != 1:
            self.fail(f"give one course id: binderlab course {self.name.split('-')[-1]} <id>")
        return self.extra_args[0]


def describe(c: dict) -> str:
    lines = [f"{c['id']}: {c['title']} ({c['seats']} seats)",
             "  windows:  " + (", ".join(c["windows"]) + f" ({c['timezone']})"
                               if c["windows"] else "none (seats warm at all times)"),
             f"  key:      {c['key']}"]
    for env in c.get("environments", []):
        pool = env.get("pool", {})
        lines.append(f"  {env['pattern']}: {env.get('state', 'pending')}"
                     f"{' ' + env['image'] if env.get('image') else ''}; warm "
                     f"{pool.get('warm', 0)}/{pool.get('target', 0)}, claimed "
                     f"{pool.get('claimed', 0)}")
        if env.get("message"):
            lines.append(f"    {env['message']}")
    for link in c.get("links", []):
        lines.append(f"  link:     {link['launch_url']}")
    return "\n".join(lines)


class CourseAddApp(CourseCommand):
    name = "binderlab-course-add"
    description = """Register a course (or change it with --replace).

    binderlab course add <id> --repo gh/physics/lab-notebooks/main --seats 40
        [--window "Tuesdays 10:00-11:30"] [--timezone Europe/Berlin] [--title "Physics 101"]

    Prints the course and its key; the key goes in the links students use."""

    aliases = {**COMMON_ALIASES, "repo": "CourseAddApp.repos", "seats": "CourseAddApp.seats",
               "window": "CourseAddApp.windows", "timezone": "CourseAddApp.timezone",
               "title": "CourseAddApp.title"}
    flags = {"replace": ({"CourseAddApp": {"replace": True}},
                         "Change an existing course (its key stays).")}
    repos = List(Unicode(), help="""Repository pattern '<provider>/<repo>[/<ref>]' (repeat
        --repo for more); without a ref every ref of the repository counts.""").tag(config=True)
    seats = Integer(0, help="Students launching at once (1 to 10000).").tag(config=True)
    windows = List(Unicode(), help="""Weekly window, e.g. 'Tuesdays 10:00-11:30' (repeat for
        more). None: seats are kept warm at all times.""").tag(config=True)
    timezone = Unicode("UTC", help="IANA timezone of the windows (default UTC).").tag(
        config=True)
    title = Unicode("", help="The course's title (default: its id).").tag(config=True)
    replace = Bool(False, help="Change an existing course instead of adding one.").tag(
        config=True)

    def start(self):
        body = {"id": self.one_id(), "title": self.title, "patterns": self.repos,
                "seats": self.seats, "timezone": self.timezone, "windows": self.windows}
        if self.replace:
            course = self.call("PUT", f"api/courses/{body['id']}", body)
        else:
            course = self.call("POST", "api/courses", body)
        print(describe(course))


class CourseListApp(CourseCommand):
    name = "binderlab-course-list"
    description = "List the registered courses: binderlab course list"
    aliases = COMMON_ALIASES

    def start(self):
        courses = self.call("GET", "api/courses")["courses"]
        if not courses:
            print("No courses are registered.")
        for c in courses:
            print(f"{c['id']}\t{c['seats']} seats\t{', '.join(c['patterns'])}\t"
                  f"{', '.join(c['windows']) or 'no windows'}")


class CourseShowApp(CourseCommand):
    name = "binderlab-course-show"
    description = """Show a course: its key, links, prebuild state and warm seats.

    binderlab course show <id>"""
    aliases = COMMON_ALIASES

    def start(self):
        print(describe(self.call("GET", f"api/courses/{self.one_id()}")))


class CourseRemoveApp(CourseCommand):
    name = "binderlab-course-remove"
    description = """Remove a course: its key stops granting seats, its warm seats go.

    binderlab course remove <id>"""
    aliases = COMMON_ALIASES

    def start(self):
        course_id = self.one_id()
        self.call("DELETE", f"api/courses/{course_id}")
        print(f"Removed course {course_id}.")


class CourseApp(Application):
    name = "binderlab-course"
    description = "Manage courses with seats (through the running service's API)."
    subcommands = {
        "add": (CourseAddApp, "Register a course (--replace: change one)."),
        "list": (CourseListApp, "List the registered courses."),
        "show": (CourseShowApp, "Show a course: key, links, prebuilds, warm seats."),
        "remove": (CourseRemoveApp, "Remove a course."),
    }

    def start(self):
        if self.subapp is None:
            self.print_help()
            raise SystemExit(2)
        return self.subapp.start()
