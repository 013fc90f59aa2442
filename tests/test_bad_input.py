"""Bad requests get a clear answer, no git command ever sees a user value as an option, and
the service stays up (real service; no launch needs to succeed here)."""

import os
from urllib.parse import quote

import pytest
import requests

from tests.harness.sse import follow

pytestmark = pytest.mark.docker

MARKER = "/tmp/binderlab-test-pwned"


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    yield
    assert not os.path.exists(MARKER), "a user value was run as a command"


def stream(service, path, **params):
    return follow(f"{service.url}{path}", timeout=60, params=params)


def test_unknown_provider_is_404(service):
    [event] = stream(service, "build/nope/owner/repo/main")
    assert event["status_code"] == 404
    assert "Unknown repository provider 'nope'" in event["message"]


@pytest.mark.parametrize("path", [
    "build/gh/only-owner",
    "build/gl/just-a-project",
    "build/git/no-ref-here",
    "build/gist/owner/not-hex!/main",
])
def test_malformed_spec_is_400(service, path):
    [event] = stream(service, path)
    assert event["status_code"] == 400, event
    assert "Malformed" in event["message"]


def test_event_stream_needs_accept_header(service):
    response = requests.get(f"{service.url}build/gh/o/r/main", timeout=10)
    assert response.status_code == 400
    assert "text/event-stream" in response.json()["message"]


@pytest.mark.parametrize("ref", [
    f"--upload-pack=touch {MARKER}",
    f"-c core.sshCommand=touch {MARKER}",
])
def test_option_like_ref_is_refused_before_git(service, git_server, ref):
    repo = git_server.create("dockerfile")
    [event] = stream(service, f"build/gh/{repo.gh_spec}/{quote(ref)}")
    assert event["status_code"] == 400
    assert "cannot start with '-'" in event["message"]


@pytest.mark.parametrize("url, expected", [
    (f"ext::sh -c touch% {MARKER}", "Not a repository URL"),
    ("file:///etc", "'file' is not allowed"),
    ("/srv/some/local/repo", "Not a repository URL"),
    ("ftp://127.0.0.1/repo.git", "'ftp' is not allowed"),
    ("https://user:secret@example.org/repo.git", "must not carry credentials"),
])
def test_dangerous_urls_are_refused(service, url, expected):
    [event] = stream(service, f"build/git/{quote(url, safe='')}/main")
    assert event["status_code"] == 400, event
    assert expected in event["message"]


def test_ref_that_does_not_exist_fails_with_its_name(service, git_server):
    repo = git_server.create("dockerfile")
    events = stream(service, f"build/gh/{repo.gh_spec}/no-such-branch")
    assert events[-1]["phase"] == "failed"
    assert "'no-such-branch' not found" in events[-1]["message"]
    assert events[-1]["status_code"] == 404


def test_repository_that_does_not_exist_fails(service):
    events = stream(service, "build/gh/nobody/nothing-here/main")
    assert events[-1]["phase"] == "failed"
    assert "Could not reach repository" in events[-1]["message"]


def test_loopback_host_refused_by_default(make_service, git_server):
    """With the default blocked networks, a repo on 127.0.0.1 is never contacted (SSRF)."""
    svc = make_service("serve", allow_loopback=False)
    repo = git_server.create("dockerfile")
    events = stream(svc, f"build/git/{quote(repo.url, safe='')}/main")
    assert events[-1]["phase"] == "failed"
    assert "resolves to 127.0.0.1" in events[-1]["message"]
    assert events[-1]["status_code"] == 403
    assert "fetching" == events[0]["phase"] and len(events) == 2  # nothing was fetched


def test_hub_down_fails_clearly_and_service_stays_up(make_service, git_server):
    svc = make_service("serve")  # no JupyterHub runs at its hub_url
    repo = git_server.create("dockerfile")
    events = stream(svc, f"build/gh/{repo.gh_spec}/main")
    assert events[-1]["phase"] == "failed", events[-1]
    assert "JupyterHub is not reachable" in events[-1]["message"]
    assert "built" in [e["phase"] for e in events]  # the build itself went through
    health = requests.get(svc.url + "health", timeout=20)
    assert health.status_code == 503
    hub = next(c for c in health.json()["checks"] if c["service"] == "JupyterHub")
    assert hub["ok"] is False and "not reachable" in hub["error"]
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200
    # and a later request is answered normally
    again = stream(svc, f"build/gh/{repo.gh_spec}/main", build_only="true")
    assert again[-1]["phase"] == "ready"


def test_build_only_refused_unless_enabled(make_service, git_server):
    svc = make_service("serve", extra_config="c.BinderLab.allow_build_only = False")
    [event] = stream(svc, "build/gh/o/r/main", build_only="true")
    assert event["status_code"] == 403
