"""LMS launches, the rules without a hub: which notebook a launch names, who is an
instructor, and the service's answer to the hub's "would you launch this?". The launches
through a real hub, a stand-in LMS and jupyterhub-ltiauthenticator are in tests/test_lti.py.
"""

import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from binderlab.authenticators import course
from binderlab.authenticators.lti import CourseLaunch
from binderlab.contract import INSTRUCTOR_GROUP

SERVICE = "https://binder.example.edu/"


def test_custom_parameters_name_the_notebook():
    link = course.course_link({"repo": "gh/physics/course", "ref": "week-1",
                               "file": "notebooks/intro.ipynb"}, [], SERVICE)
    assert link.loading_page(SERVICE) == ("https://binder.example.edu/v2/gh/physics/course/"
                                          "week-1?labpath=notebooks%2Fintro.ipynb")
    # the browser goes there through the service's login (the hub's OAuth), which only
    # goes on to a path of the service
    assert link.launch_url(SERVICE) == (
        "https://binder.example.edu/login?next=%2Fv2%2Fgh%2Fphysics%2Fcourse%2Fweek-1%3F"
        "labpath%3Dnotebooks%252Fintro.ipynb")
    assert link.launch_url("https://example.edu/binder/").startswith(
        "https://example.edu/binder/login?next=%2Fbinder%2Fv2%2Fgh%2F")
    # ref defaults to HEAD, file to none (JupyterLab's file browser)
    assert course.course_link({"repo": "gl/group/course"}, [], SERVICE).loading_page(
        SERVICE) == "https://binder.example.edu/v2/gl/group/course/HEAD"
    # a ref with a slash stays one path segment
    assert course.course_link({"repo": "gh/o/r", "ref": "release/2026"}, [], SERVICE
                              ).loading_page(SERVICE).endswith("/v2/gh/o/r/release%2F2026")


def test_target_link_names_the_notebook_when_no_custom_parameters():
    target = "https://binder.example.edu/v2/gh/physics/course/main?labpath=week1.ipynb"
    link = course.course_link({}, ["https://hub.example.edu/hub", target], SERVICE)
    assert (link.repo, link.ref, link.file) == ("gh/physics/course", "main", "week1.ipynb")
    # custom parameters win over the target link
    link = course.course_link({"repo": "gh/other/course"}, [target], SERVICE)
    assert link.repo == "gh/other/course"
    # a launch link of another host is not followed (that would lend the login to it)
    with pytest.raises(course.BadLaunch) as refused:
        course.course_link({}, ["https://evil.example.org/v2/gh/o/r/main"], SERVICE)
    assert "custom parameters repo=" in str(refused.value)


@pytest.mark.parametrize("custom, says", [
    ({}, "names no course notebook"),
    ({"repo": "github.com/owner/course"}, "repo=gh/owner/course"),
    ({"repo": "gh/o/r", "file": "../../etc/passwd"}, "relative to the repository"),
    ({"repo": "gh/o/r", "file": "/etc/passwd"}, "relative to the repository"),
    ({"repo": "gh/o/r", "ref": "main branch"}, "white space"),
    ({"repo": "gh/o/../r"}, "not a binder spec"),
])
def test_bad_course_parameters_say_what_to_fix(custom, says):
    with pytest.raises(course.BadLaunch) as refused:
        course.course_link(custom, [""], SERVICE)
    assert says in str(refused.value)


@pytest.mark.parametrize("roles, instructor", [
    (["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"], True),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"], True),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",
      "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student"], False),
    # a learner sub-role named Instructor is still a learner
    (["http://purl.imsglobal.org/vocab/lis/v2/membership/Learner#Instructor"], False),
    ("Instructor", True),
    ("urn:lti:role:ims/lis/Instructor/Lecturer,urn:lti:instrole:ims/lis/Faculty", True),
    ("Learner", False),
    ("urn:lti:role:ims/lis/TeachingAssistant", True),
    ("", False),
    (None, False),
])
def test_instructor_roles(roles, instructor):
    assert course.is_instructor(roles, course.DEFAULT_INSTRUCTOR_ROLES) is instructor


def test_the_lms_decides_the_instructor_group_only():
    assert course.groups_after_launch({"course-a"}, True, "instructors") == [
        "course-a", "instructors"]
    assert course.groups_after_launch({"course-a", "instructors"}, False, "instructors") == [
        "course-a"]


def test_course_launch_settings(monkeypatch):
    monkeypatch.delenv("BINDERLAB_INSTRUCTOR_GROUP", raising=False)
    monkeypatch.setenv("BINDERLAB_SERVICE_URL", "http://127.0.0.1:9999/")
    settings = CourseLaunch()
    assert settings.instructor_group == INSTRUCTOR_GROUP == "instructors"
    assert settings.service_url == "http://127.0.0.1:9999/"
    assert settings.check_with_service and settings.check_timeout == 10
    monkeypatch.setenv("BINDERLAB_INSTRUCTOR_GROUP", "teachers")
    assert CourseLaunch().instructor_group == "teachers"
    assert CourseLaunch(instructor_roles=["Mentor"]).instructor_roles == ["Mentor"]


async def test_launchable_applies_the_hosts_rules(start_binderlab):
    app = await start_binderlab(LaunchLimits={"banned_specs": ["gh/banned/*"]})

    async def ask(path):
        response = await AsyncHTTPClient().fetch(app.public_url + "api/launchable/" + path,
                                                 raise_error=False)
        return response.code, json.loads(response.body)

    code, answer = await ask("gh/physics/course/main")
    assert code == 200 and answer["repo_key"] == "gh/physics/course"
    code, answer = await ask("gh/banned/course/main")
    assert code == 403 and "cannot be launched on this host" in answer["message"]
    code, answer = await ask("nosuch/o/r/main")
    assert code == 404 and "Unknown repository provider" in answer["message"]
    code, answer = await ask("gh/onlyowner")
    assert code == 400, answer


async def test_user_endpoint_needs_logins(start_binderlab):
    app = await start_binderlab()
    response = await AsyncHTTPClient().fetch(app.public_url + "api/user", raise_error=False)
    assert response.code == 404 and b"without logins" in response.body
    app = await start_binderlab(BinderLab={"authentication": "optional"})
    response = await AsyncHTTPClient().fetch(app.public_url + "api/user", raise_error=False)
    assert response.code == 403 and b"Not logged in" in response.body


@pytest.mark.parametrize("public_url, cross_site", [("https://hub.example.edu", True),
                                                     ("http://127.0.0.1:8000", False)])
def test_example_lti13_overlay(monkeypatch, public_url, cross_site):
    """The example hub overlay (tests/test_lti.py runs it on a real hub): over HTTPS the
    hub's cookies must reach it on the LMS's cross-site form post."""
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader

    example = Path(__file__).parents[2] / "deploy" / "docker" / "lms" / "hub_overlay_lti13.py"
    for name, value in {"BINDERLAB_LTI13_ISSUER": "https://canvas.instructure.com",
                        "BINDERLAB_LTI13_CLIENT_ID": "10000000000001,10000000000002",
                        "BINDERLAB_LTI13_AUTHORIZE_URL": "https://sso.example/authorize",
                        "BINDERLAB_LTI13_JWKS_URL": "https://sso.example/jwks",
                        "BINDERLAB_HUB_PUBLIC_URL": public_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BINDERLAB_LTI_USERNAME_KEY", raising=False)
    config = PyFileConfigLoader(example.name, str(example.parent)).load_config()
    assert config.JupyterHub.authenticator_class == "binderlab-lti13"
    assert config.LTI13Authenticator.client_id == ["10000000000001", "10000000000002"]
    assert config.LTI13Authenticator.username_key == "sub"
    cookies = config.JupyterHub.tornado_settings.get("cookie_options") \
        if "tornado_settings" in config.JupyterHub else None
    assert cookies == ({"samesite": "None", "secure": True} if cross_site else None)


async def test_the_hub_asks_the_service_before_a_login(start_binderlab):
    from tornado import web

    from tests.harness.service import free_port

    app = await start_binderlab(LaunchLimits={"banned_specs": ["gh/banned/*"]})
    ask = CourseLaunch(service_url=app.public_url)
    await ask.check_launchable(course.CourseLink("gh/physics/course", "main"))
    with pytest.raises(web.HTTPError) as refused:
        await ask.check_launchable(course.CourseLink("gh/banned/course", "main"))
    assert refused.value.status_code == 403
    assert "gh/banned/course cannot be launched on this host" in refused.value.log_message
    assert "fix the link in the LMS" in refused.value.log_message
    # a service that does not answer: try again later (503), nobody is logged in
    down = CourseLaunch(service_url=f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(web.HTTPError) as unreachable:
        await down.check_launchable(course.CourseLink("gh/physics/course", "main"))
    assert unreachable.value.status_code == 503
    assert "try the link again" in unreachable.value.log_message
    # with the check off, the loading page reports a refusal after the login instead
    await CourseLaunch(service_url=down.service_url, check_with_service=False
                       ).check_launchable(course.CourseLink("gh/banned/course", "main"))


async def test_lti13_auth_model_names_the_user_by_the_chosen_claim():
    """The authenticate step on a verified id_token (what ltiauthenticator's callback hands
    it): the user's name from username_key, the instructor group, where the browser goes."""
    from traitlets.config import Config

    from binderlab.authenticators.lti import CourseLTI13Authenticator

    class Handler:  # what authenticate uses of JupyterHub's handler
        binderlab_course_url = ""

        def find_user(self, name):
            return None  # a first launch: no hub user yet

    config = Config()
    config.CourseLaunch.check_with_service = False
    config.CourseLaunch.service_url = SERVICE
    claim = "https://purl.imsglobal.org/spec/lti/claim/"
    id_token = {"sub": "a1b2", "email": "Ada@Example.edu",
                claim + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"],
                claim + "custom": {"repo": "gh/physics/course", "file": "intro.ipynb"}}
    for key, name in (("email", "ada@example.edu"), ("sub", "a1b2"),
                      ("custom_lms_user", "a1b2")):  # no such custom value: sub
        authenticator = CourseLTI13Authenticator(config=config, username_key=key)
        assert authenticator.manage_groups
        handler = Handler()
        model = await authenticator.authenticate(handler, dict(id_token))
        assert authenticator.normalize_username(model["name"]) == name
        assert model["groups"] == ["instructors"]
        assert handler.binderlab_course_url == (
            "https://binder.example.edu/login?next=%2Fv2%2Fgh%2Fphysics%2Fcourse%2FHEAD%3F"
            "labpath%3Dintro.ipynb")
