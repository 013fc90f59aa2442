"""Instructors in logged-in mode, on a real `binderlab up` whose hub logs people in with
JupyterHub's DummyAuthenticator: the hub group `instructors` (where the LTI authenticator
puts an LMS's instructors) grants the role; a student gets 403; writes with the login
cookie need the page's xsrf token (JupyterHub's rule)."""

import json
import re

import requests

from tests.test_logged_in import PASSWORD, log_in, pytest

pytestmark = pytest.mark.docker


def settings(page: requests.Response) -> dict:
    match = re.search(r'<script type="application/json" id="courses-settings">(.*?)</script>',
                      page.text, re.S)
    assert match, page.text[:2000]
    return json.loads(match.group(1))


def test_hub_group_instructors_manage_their_own_courses(make_service, git_server, tmp_path):
    overlay = tmp_path / "hub_overlay.py"
    overlay.write_text(f"""
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.JupyterHub.load_groups = {{"instructors": {{"users": ["ada"]}}}}
""")
    svc = make_service("up", extra_config=f"""
c.BinderLab.authentication = "required"
c.UpApp.hub_config_overlay = {str(overlay)!r}
""")
    repo = git_server.create("dockerfile")
    ada = requests.Session()
    page = log_in(svc, ada, "courses", "ada")
    assert page.url == svc.url + "courses" and "The courses you registered, ada" in page.text
    xsrf = settings(page)["xsrfToken"]
    body = {"id": "optics-2", "title": "Optics 2", "seats": 12,
            "patterns": [f"gh/{repo.gh_spec}/main"]}
    # the login cookie alone does not make a write: a cross-site page could send it
    assert ada.post(svc.url + "api/courses", json=body, timeout=30).status_code == 401
    created = ada.post(svc.url + "api/courses", json=body, timeout=30,
                       headers={"X-XSRFToken": xsrf})
    assert created.status_code == 201, created.text
    assert created.json()["owner"] == "ada"
    shown = ada.get(svc.url + "courses/optics-2", timeout=30)
    assert shown.status_code == 200 and "Optics 2" in shown.text
    assert "optics-2" in ada.get(svc.url + "courses", timeout=30).text

    # a student (no group) is logged in too, and manages nothing
    bob = requests.Session()
    log_in(svc, bob, "", "bob")
    assert bob.get(svc.url + "courses", timeout=30).status_code == 403
    assert bob.get(svc.url + "courses/optics-2", timeout=30).status_code == 403
    # the operator's token sees ada's course
    token = (svc.workdir / "state" / "courses_api_token").read_text().strip()
    listed = requests.get(svc.url + "api/courses", timeout=30,
                          headers={"Authorization": f"token {token}"}).json()["courses"]
    assert [(c["id"], c["owner"]) for c in listed] == [("optics-2", "ada")]
