"""Courses with seats on a real service: `binderlab course ...` against the running
service's API, a class's 40 launches from one address with the course key, the registry
across a restart.

The 40 launches are counted at the service, as tests/test_limits.py counts them:
``build_only=true`` launches go through the same limits (resolve, per-address rate, the
course's allowance) and cost one build for all of them; 40 real sessions at once are too
heavy for this 2-core machine. A real session through the course key is started by thebe
in tests/test_browser_courses.py.
"""

import requests

from tests.test_limits import assert_rate_limited, build_only, outcome, pytest

pytestmark = pytest.mark.docker  # (the help test needs no engine, but is cheap)


def cli_ok(svc, *args) -> str:
    proc = svc.cli("course", *args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_forty_launches_from_one_address_with_the_course_key(make_service, git_server):
    svc = make_service("serve", extra_config="""
c.LaunchLimits.per_client = 5
c.LaunchLimits.window = 600
c.Courses.launches_per_seat = 1.0
""")
    repo = git_server.create("dockerfile")
    out = cli_ok(svc, "add", "physics-101", "--repo", f"gh/{repo.gh_spec}/main",
                 "--seats", "40", "--window", "Tuesdays 10:00-11:30",
                 "--timezone", "Europe/Berlin", "--title", "Physics 101")
    assert "physics-101: Physics 101 (40 seats)" in out
    assert "Tue 10:00-11:30 (Europe/Berlin)" in out
    key = next(line.split()[-1] for line in out.splitlines() if "key:" in line)
    assert f"?course={key}" in out  # the link students get
    # without the key: five launches from this address, then the per-address limit
    assert [outcome(build_only(svc, repo.gh_spec)) for _ in range(5)] == ["ready"] * 5
    assert_rate_limited(build_only(svc, repo.gh_spec), 600)
    # with it: the whole class of 40, from the same address
    assert [outcome(build_only(svc, repo.gh_spec, course=key))
            for _ in range(40)] == ["ready"] * 40
    beyond = build_only(svc, repo.gh_spec, course=key)
    assert_rate_limited(beyond, 600)
    assert "Physics 101 has had its 40 launches" in beyond["message"]
    # one build for the registration's prebuild; every launch after it was a cache hit
    assert svc.metric("binderlab_builds_total") == 1
    shown = cli_ok(svc, "show", "physics-101")
    assert f"gh/{repo.gh_spec}/main: ready {svc.image_prefix}" in shown
    assert "physics-101\t40 seats" in cli_ok(svc, "list")

    # the course, its key and its launch history survive a restart of the service
    svc.stop()
    svc.start()
    assert f"key:      {key}" in cli_ok(svc, "show", "physics-101")
    token = (svc.workdir / "state" / "courses_api_token").read_text().strip()
    course = requests.get(svc.url + "api/courses/physics-101", timeout=30,
                          headers={"Authorization": f"token {token}"}).json()
    assert sum(n for _, n in course["launches"]) == 41  # the 40 and the one beyond
    assert outcome(build_only(svc, repo.gh_spec, course=key)) == "ready"

    assert cli_ok(svc, "remove", "physics-101").strip() == "Removed course physics-101."
    # the removed course's key is worth nothing: its launches get the per-address limit
    # (counted afresh since the restart: rate state is in memory)
    assert [outcome(build_only(svc, repo.gh_spec, course=key))
            for _ in range(5)] == ["ready"] * 5
    gone = build_only(svc, repo.gh_spec, course=key)
    assert_rate_limited(gone, 600)
    assert "not registered here" in gone["message"]
    assert cli_ok(svc, "list").strip() == "No courses are registered."


def test_course_cli_errors_say_what_to_do(make_service, git_server):
    svc = make_service("serve")
    repo = git_server.create("dockerfile")
    bad = svc.cli("course", "add", "physics-101", "--repo", f"gh/{repo.gh_spec}/main",
                  "--seats", "0")
    assert bad.returncode == 1
    assert "Seats 0: give a whole number from 1 to 10000" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = svc.cli("course", "add", "physics-101", "--repo", "github.com/x/y", "--seats", "3")
    assert bad.returncode == 1 and "provider one of" in bad.stderr
    missing = svc.cli("course", "show", "nope")
    assert missing.returncode == 1 and "No course 'nope'" in missing.stderr
    # a wrong token is refused by the service
    wrong = svc.cli("course", "list", "--token", "not-the-token")
    assert wrong.returncode == 1 and "(HTTP 403)" in wrong.stderr
    assert requests.get(svc.url + "api/courses", timeout=10).status_code == 401
    # the service stopped: the CLI says so and changes nothing
    svc.stop()
    down = svc.cli("course", "add", "physics-101", "--repo", f"gh/{repo.gh_spec}/main",
                   "--seats", "3")
    assert down.returncode == 1
    assert "does not answer" in down.stderr and "Nothing changed" in down.stderr
    registry = svc.workdir / "state" / "courses.json"
    assert not registry.exists() or "physics-101" not in registry.read_text()


@pytest.mark.parametrize("sub", ["add", "list", "show", "remove"])
def test_course_cli_help(sub):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "binderlab", "course", sub, "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"binderlab course {sub}" in out.stdout
    assert "--token" in out.stdout and "--url" in out.stdout


def test_course_cli_options_have_help():
    from binderlab.commands.course import CourseAddApp, CourseCommand
    from tests.test_config import own_traits

    for cls in (CourseCommand, CourseAddApp):
        missing = [n for _, n, t in own_traits(cls) if len((t.help or "").strip()) < 10]
        assert not missing, missing
