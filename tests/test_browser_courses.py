"""In Chromium, against a real `binderlab up`: a course page on another origin runs a cell
with thebe 0.9.3 through the course's key (thebe's binderUrl is <host>/course/<key>), and
the instructor's page shows the course's prebuild, seats and a plot of its launches."""
# ruff: noqa: F401, F811

import time
from pathlib import Path

import pytest
import requests

from tests.test_browser import node
from tests.test_browser_frontend import course_page_with, other_origin, run_form, run_script
from tests.test_frontend import thebe

pytestmark = [pytest.mark.browser, pytest.mark.docker]


def operator_token(service) -> str:
    return (service.workdir / "state" / "courses_api_token").read_text().strip()


def course_api(service, method, path="", **kwargs):
    return requests.request(method, f"{service.url}api/courses{path}", timeout=30,
                            headers={"Authorization": f"token {operator_token(service)}"},
                            **kwargs)


def wait_prebuilt(service, course_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        course = course_api(service, "GET", f"/{course_id}").json()
        states = [e.get("state") for e in course["environments"]]
        if states and all(s in ("ready", "failed") for s in states):
            return course
        time.sleep(0.5)
    raise AssertionError(f"prebuild of {course_id} did not finish: {course}")


def test_course_key_through_thebe_and_the_instructor_page(node, service, git_server, thebe,
                                                          other_origin, tmp_path):
    repo = git_server.create("dockerfile")
    created = course_api(service, "POST", json={
        "id": "thermo-1", "title": "Thermodynamics 1", "seats": 30,
        "patterns": [f"gh/{repo.gh_spec}/main"]})
    assert created.status_code == 201, created.text
    course = created.json()
    try:
        key = course["key"]
        prebuilt = wait_prebuilt(service, "thermo-1")
        assert prebuilt["environments"][0]["state"] == "ready", prebuilt
        [link] = course["links"]
        assert link["thebe_config"]["binderOptions"]["binderUrl"] == \
            f"{service.url}course/{key}"

        # 1. the form, opened from the instructor page's link (?course=<key>), puts the key
        # in the launch link, the badge and the thebe snippet
        form = run_form(node, f"{service.url}?course={key}",
                        [{"name": "course", "input": f"{repo.url}/tree/main"}],
                        "course-key-form", tmp_path)
        [snippet] = form["steps"]
        assert snippet["error"] is None, snippet
        assert snippet["launchUrl"] == link["launch_url"]
        assert f'href="{link["launch_url"]}"' in snippet["html"]
        assert f'"binderUrl": "{service.url}course/{key}"' in snippet["thebeHead"]
        # 2. a course page on another origin with the form's thebe snippet and badge
        root, origin = other_origin
        (root / "course.html").write_text(course_page_with(snippet["thebeHead"],
                                                           snippet["html"]))
        result = run_script(node, "course_page.mjs", f"{origin}/course.html", "course-key-thebe",
                            "--expect-output", "37 °C =  98.6 °F", "--timeout-s", "240")
        assert result["ok"] and result["rc"] == 0, (
            f"{result['error']}\n{result['stderr']}\nrequests: {result.get('requests')}")
        [stream] = [r for r in result["requests"] if "/build/" in r["path"]]
        # the stream thebe opened carries the key in its path: the course's allowance
        assert stream["path"] == f"/course/{key}/build/gh/{repo.gh_spec}/main"
        assert stream["status"] == 200 and stream["allowOrigin"] in ("*", origin)
        assert result["status"][-1] == "Kernel Connected", result["status"]

        # 3. the instructor's page: prebuild state, seats, the launch in the plot
        page = run_script(node, "instructor_page.mjs", f"{service.url}courses/thermo-1",
                          "instructor-page", "--token", operator_token(service))
        assert page["ok"] and page["rc"] == 0, f"{page['error']}\n{page['stderr']}"
        assert page["title"] == "Thermodynamics 1" and page["seats"] == "30"
        [env] = page["environments"]
        assert env["pattern"] == f"gh/{repo.gh_spec}/main" and env["state"] == "ready"
        # no pool on this host yet (the warm pool is wired in at merge): no warm seats
        assert env["warm"] == "0 of 0"
        assert page["plot"]["bars"] == [1] and page["plot"]["barHeights"][0] > 50
        assert page["plot"]["width"] > 300
        assert page["links"] == [link["launch_url"]] and f"?course={key}" in page["links"][0]
        assert page["stylesheetLoaded"]
        assert page["pageErrors"] == [] and page["offHostRequests"] == []
        assert Path(page["screenshots"]["instructor-page"]).stat().st_size > 10_000
        # without the token the page is not shown
        assert requests.get(f"{service.url}courses/thermo-1", timeout=10).status_code == 401
    finally:
        course_api(service, "DELETE", "/thermo-1")
        # the session thebe started ends with the shared service (keep_sessions_on_exit off)
