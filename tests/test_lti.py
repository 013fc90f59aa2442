"""LMS launches (issue 13): a real `binderlab up` whose hub logs people in with binderlab's
course-launch authenticators over jupyterhub-ltiauthenticator, launched from a stand-in LMS
on 127.0.0.1 (tests/harness/lms.py: an LTI 1.3 platform signing id_tokens with a test RSA
key whose JWKS it serves, an LTI 1.1 consumer signing with oauthlib).

The student launches run in Chromium, where a student's browser is: the LMS page's form, the
hub's redirect to the platform's authorization, its form post of the id_token back, the
hub's redirect to the binder service, the service's OAuth with the hub, the loading page and
the session all happen in that browser. The other launches (an instructor's, the bad ones)
use an HTTP client with a cookie jar that does exactly what the browser did: it follows the
same redirects and posts the same forms (read from the pages), which lets the test look at
each answer (the hub's error pages) and at the hub's users in between.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.harness.lms import INSTRUCTOR, LEARNER, Launch13, StandInLMS, form_of
from tests.test_logged_in import launch

pytestmark = pytest.mark.docker

COURSE_TEXT = "Week 1: the course notebook"
NOTEBOOK = (Path(__file__).parent / "repos" / "dockerfile" / "hello.ipynb").read_text(
).replace("Hello from the dockerfile test repo", COURSE_TEXT)
COURSE_FILE = "week1/intro.ipynb"


EXAMPLES = Path(__file__).parent.parent / "deploy" / "docker" / "lms"


@pytest.fixture(scope="module")
def lti_service(make_module_service):
    """``lti_service(13 or 11)`` -> (service, lms): a hub with the example hub overlay of that
    LTI version (deploy/docker/lms/), registered with a stand-in LMS. Shared by the module's
    tests that ask for the same version and mode: each launches people of its own names."""
    started = {}

    def make(version: int, authentication: str = "required"):
        if (version, authentication) in started:
            return started[version, authentication]
        platform = StandInLMS()
        try:
            svc = make_module_service(
                "up", env=platform.env13() if version == 13 else platform.env11(),
                extra_config=f"""
c.BinderLab.authentication = {authentication!r}
c.UpApp.hub_config_overlay = {str(EXAMPLES / f"hub_overlay_lti{version}.py")!r}
c.LaunchLimits.banned_specs = ["gh/banned/*"]
""")
        except BaseException:
            platform.close()
            raise
        platform.hub_url = svc.hub_url  # the tool's address, as the LMS registers it
        started[version, authentication] = (svc, platform)
        return svc, platform

    yield make
    for _, platform in started.values():
        platform.close()


def course_repo(git_server, owner="physics"):
    repo = git_server.create("dockerfile", owner=owner)
    repo.commit({COURSE_FILE: NOTEBOOK}, message="week 1")
    return repo


def hub_user(svc, name: str) -> dict | None:
    response = requests.get(f"{svc.hub_url}/hub/api/users/{name}", timeout=30,
                            headers={"Authorization": f"token {svc.service_token}"})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def lti13_http(browser: requests.Session, course_page: str) -> requests.Response:
    """What the browser does with an LTI 1.3 link: post the LMS page's login-initiation
    form, follow the hub to the platform's authorization, post its id_token form back, and
    follow the redirects that answer."""
    page = browser.get(course_page, timeout=30)
    page.raise_for_status()
    action, fields = form_of(page.text)
    authorization = browser.post(action, data=fields, timeout=60)
    authorization.raise_for_status()
    assert authorization.url.startswith(course_page.split("/course13/")[0] + "/authorize?")
    action, fields = form_of(authorization.text)
    return browser.post(action, data=fields, timeout=120)


def lti11_http(browser: requests.Session, course_page: str) -> requests.Response:
    page = browser.get(course_page, timeout=30)
    page.raise_for_status()
    action, fields = form_of(page.text)
    return browser.post(action, data=fields, timeout=120)


def in_chromium(course_page: str, user: str, shots: str) -> dict:
    from tests.test_browser import BROWSER_DIR, CHROMIUM, SCREENSHOTS

    node = shutil.which("node")
    assert node, "node is not on PATH (tests/test_browser.py says what to install)"
    proc = subprocess.run(
        [node, str(BROWSER_DIR / "lti_launch.mjs"), course_page, str(SCREENSHOTS / shots),
         "--user", user, "--file", COURSE_FILE, "--expect", COURSE_TEXT],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=400,
        env={**os.environ, "BINDERLAB_CHROMIUM": CHROMIUM})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1])


def session_has_course_file(ready: dict) -> bool:
    contents = requests.get(f"{ready['url']}api/contents/{COURSE_FILE}", timeout=30,
                            headers={"Authorization": f"token {ready['token']}"})
    return contents.status_code == 200 and contents.json()["type"] == "notebook"


def whoami(svc, browser: requests.Session) -> dict:
    response = browser.get(svc.url + "api/user", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.browser
def test_lti13_student_lands_in_course_notebook_and_instructor_is_known(
        lti_service, git_server):
    svc, lms = lti_service(13)
    repo = course_repo(git_server)

    # the student: a course link with custom parameters (Canvas/Moodle "custom fields")
    page = lms.launch13(Launch13(sub="student-7f3a", roles=[LEARNER], custom={
        "repo": f"gh/{repo.gh_spec}", "ref": "main", "file": COURSE_FILE}))
    result = in_chromium(page, "student-7f3a", "lti13_student")
    assert result["ok"], result
    visited = [re.sub(r"\?.*", "", u) for u in result["visited"]]
    # every step happened in the browser: LMS page, hub login initiation, the platform's
    # authorization, the hub's callback, the binder service's loading page, the session
    # (the form posts are the browser's own: the LMS page's and the platform's)
    steps = [f"GET {page}", f"POST {svc.hub_url}/hub/lti13/oauth_login",
             f"GET {lms.url}/authorize", f"POST {svc.hub_url}/hub/lti13/oauth_callback",
             # the service's login: the hub's OAuth (no form: the hub knows the student)
             f"GET {svc.url}login", f"GET {svc.hub_url}/hub/api/oauth2/authorize",
             f"GET {svc.url}oauth_callback", f"GET {svc.url}login",
             f"GET {svc.url}v2/gh/{repo.gh_spec}/main"]
    assert [v for v in visited if v in steps] == steps, visited
    assert re.match(rf"{svc.hub_url}/user/student-7f3a/gh-physics-[a-z0-9-]+/doc/tree/"
                    rf"{COURSE_FILE}$", result["finalUrl"]), result["finalUrl"]
    assert result["notebookOpen"] and not result["offHostRequests"]
    assert result["expectedShown"], result["notebookText"]
    student = hub_user(svc, "student-7f3a")
    assert student["groups"] == []
    [server] = student["servers"].values()  # a logged-in named server, one per repository
    assert server["name"].startswith("gh-physics-") and server["ready"]

    # the instructor: a link whose target is a binder launch link, no custom parameters
    teacher = requests.Session()
    landed = lti13_http(teacher, lms.launch13(Launch13(
        sub="prof-2c9e", roles=[INSTRUCTOR], email="prof@example.edu",
        target_link_uri=f"{svc.url}v2/gh/{repo.gh_spec}/main?labpath={COURSE_FILE}")))
    assert landed.status_code == 200, landed.text[-2000:]
    # on the service's loading page for that notebook, logged in through the hub
    assert landed.url == f"{svc.url}v2/gh/{repo.gh_spec}/main?labpath=week1%2Fintro.ipynb"
    assert hub_user(svc, "prof-2c9e")["groups"] == ["instructors"]
    # the binder service sees the role in the user model its HubOAuth gets from the hub
    assert whoami(svc, teacher) == {"name": "prof-2c9e", "groups": ["instructors"],
                                    "instructor": True}
    ready = launch(svc, teacher, repo)[-1]
    assert ready["phase"] == "ready", ready
    assert ready["url"].startswith(f"{svc.hub_url}/user/prof-2c9e/gh-physics-")
    assert session_has_course_file(ready)

    # the same person launching later as a learner (e.g. in another course) is not one
    again = lti13_http(teacher, lms.launch13(Launch13(sub="prof-2c9e", roles=[LEARNER],
                                                      custom={"repo": f"gh/{repo.gh_spec}"})))
    assert again.status_code == 200 and again.url == f"{svc.url}v2/gh/{repo.gh_spec}/HEAD"
    assert hub_user(svc, "prof-2c9e")["groups"] == []


def test_lti13_bad_launches_end_on_an_error_page_with_no_user(lti_service, git_server):
    # with 'optional' logins too: an LMS launch is the student's own, never anonymous
    svc, lms = lti_service(13, "optional")
    repo = course_repo(git_server)
    course = {"repo": f"gh/{repo.gh_spec}", "ref": "main", "file": COURSE_FILE}

    def refused(launch: Launch13, status: int, says: str) -> None:
        answer = lti13_http(requests.Session(), lms.launch13(launch))
        assert answer.status_code == status, (launch, answer.status_code, answer.text[-1500:])
        assert says in answer.text, (says, answer.text[-1500:])
        assert answer.url.startswith(f"{svc.hub_url}/hub/lti13/oauth_callback")
        assert hub_user(svc, launch.sub) is None

    refused(Launch13("forger", [LEARNER], course, wrong_key=True), 400,
            "Signature verification failed")
    refused(Launch13("late", [LEARNER], course, expires_in=-120), 400,
            "Signature has expired")
    refused(Launch13("lost", [LEARNER], {"ref": "main"}), 400,
            "set the custom parameters repo=")
    refused(Launch13("typo", [LEARNER], {"repo": "github.com/physics/course"}), 400,
            "repo=gh/owner/course")
    # a repository the binder service refuses: its own reason, before anyone is logged in
    refused(Launch13("banned", [LEARNER], {"repo": "gh/banned/course"}), 403,
            "gh/banned/course cannot be launched on this host")
    assert all(hub_user(svc, n) is None for n in ("forger", "late", "lost", "typo", "banned"))

    # a good launch works; its id_token posted again (a replay) does not
    browser = requests.Session()
    ok = lti13_http(browser, lms.launch13(Launch13("student-1", [LEARNER], course)))
    assert ok.status_code == 200 and ok.url.startswith(f"{svc.url}v2/gh/{repo.gh_spec}/main")
    ready = launch(svc, browser, repo)[-1]
    assert ready["phase"] == "ready", ready
    assert ready["url"].startswith(f"{svc.hub_url}/user/student-1/gh-physics-")
    replayed = lms.id_tokens[-1]
    # by another browser (the id_token stolen): no state or nonce of its own
    stolen = requests.post(f"{svc.hub_url}/hub/lti13/oauth_callback", data=replayed,
                           timeout=30)
    assert stolen.status_code == 400 and "OAuth state missing from cookies" in stolen.text
    # by the same browser: the nonce it was issued for is spent
    again = browser.post(f"{svc.hub_url}/hub/lti13/oauth_callback", data=replayed, timeout=30)
    assert again.status_code == 400, again.text[-1500:]
    assert "OAuth state missing from cookies" in again.text or "nonce" in again.text
    # the platform never signed anything for a request that was not the hub's own
    assert lms.refusals == []


@pytest.mark.browser
def test_lti11_student_lands_in_course_notebook_and_instructor_is_known(
        lti_service, git_server):
    svc, lms = lti_service(11)
    repo = course_repo(git_server)
    page = lms.launch11("s-4711", "Learner", custom={
        "repo": f"gh/{repo.gh_spec}", "ref": "main", "file": COURSE_FILE})
    result = in_chromium(page, "s-4711", "lti11_student")
    assert result["ok"], result
    visited = [re.sub(r"\?.*", "", u) for u in result["visited"]]
    steps = [f"GET {page}", f"POST {svc.hub_url}/hub/lti/launch", f"GET {svc.url}login",
             f"GET {svc.hub_url}/hub/api/oauth2/authorize", f"GET {svc.url}oauth_callback",
             f"GET {svc.url}login", f"GET {svc.url}v2/gh/{repo.gh_spec}/main"]
    assert [v for v in visited if v in steps] == steps, visited
    assert re.match(rf"{svc.hub_url}/user/s-4711/gh-physics-[a-z0-9-]+/doc/tree/"
                    rf"{COURSE_FILE}$", result["finalUrl"]), result["finalUrl"]
    assert result["notebookOpen"] and not result["offHostRequests"]
    assert result["expectedShown"], result["notebookText"]
    assert hub_user(svc, "s-4711")["groups"] == []

    # the instructor, with a launch link in custom_next (no repo parameter)
    teacher = requests.Session()
    landed = lti11_http(teacher, lms.launch11(
        "t-0815", "urn:lti:role:ims/lis/Instructor", custom={
            "next": f"{svc.url}v2/gh/{repo.gh_spec}/main?labpath={COURSE_FILE}"}))
    assert landed.status_code == 200, landed.text[-2000:]
    assert landed.url == f"{svc.url}v2/gh/{repo.gh_spec}/main?labpath=week1%2Fintro.ipynb"
    assert whoami(svc, teacher) == {"name": "t-0815", "groups": ["instructors"],
                                    "instructor": True}
    ready = launch(svc, teacher, repo)[-1]
    assert ready["phase"] == "ready" and session_has_course_file(ready), ready


def test_lti11_bad_launches_end_on_an_error_page_with_no_user(lti_service, git_server):
    svc, lms = lti_service(11)
    repo = course_repo(git_server)
    course = {"repo": f"gh/{repo.gh_spec}", "ref": "main"}

    def refused(page: str, user: str, status: int, says: str, fields=None) -> None:
        browser = requests.Session()
        if fields is None:
            answer = lti11_http(browser, page)
        else:
            answer = browser.post(fields[0], data=fields[1], timeout=60)
        assert answer.status_code == status, (answer.status_code, answer.text[-1500:])
        assert says in answer.text, (says, answer.text[-1500:])
        assert hub_user(svc, user) is None

    refused(lms.launch11("forger", "Learner", course, secret="not-the-secret"), "forger",
            401, "Invalid oauth_signature")
    refused(lms.launch11("lost", "Learner", {}), "lost", 400,
            "set the custom parameters repo=")
    refused(lms.launch11("banned", "Learner", {"repo": "gh/banned/course"}), "banned", 403,
            "gh/banned/course cannot be launched on this host")
    # a replayed launch: the same signed form posted twice
    page = lms.launch11("student-2", "Learner", course)
    signed = lms.signed11(page.rsplit("/", 1)[-1])
    first = requests.Session().post(signed[0], data=signed[1], timeout=60)
    assert first.status_code == 200 and first.url.startswith(f"{svc.url}v2/")
    assert hub_user(svc, "student-2")["groups"] == []
    refused(page, "nobody", 401, "oauth_nonce + oauth_timestamp already used", fields=signed)
    # an old launch (a form kept and posted later): its timestamp is refused
    old = dict(signed[1], oauth_timestamp=str(int(signed[1]["oauth_timestamp"]) - 3600))
    refused(page, "nobody", 401, "Timestamp given is invalid", fields=(signed[0], old))
