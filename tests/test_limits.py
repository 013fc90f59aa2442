"""Launch limits on a real service (limits.py, applied in pipeline.py): the per-address rate
for scripts, the classroom allowances (operator-listed course repositories, loading-page
tickets), banned and allowed repositories, and session quotas.

Rate tests launch with ``build_only=true``: those are counted exactly like launches and cost
one build per repository, so 40 of them stay cheap. The harness turns per-address limits
off (every test launches from 127.0.0.1); each test here sets the ones it tests.
"""

import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from binderlab.launch.limits import LaunchLimits

pytestmark = pytest.mark.docker

LAUNCH_JS = Path(__file__).resolve().parent.parent / "frontend" / "static" / "launch.js"
TICKET_RE = re.compile(r"^\d+\.[0-9a-f]+\.[0-9a-f]+$")
RETRY_RE = re.compile(r"[Tt]ry again in (\d+) s")


# ---- helpers --------------------------------------------------------------------------------

def stream(url: str, params: dict | None = None, headers: dict | None = None,
           timeout: float = 300) -> list[dict]:
    """GET an event stream; its events up to ready/failed (or one http-error pseudo-event)."""
    events = []
    with requests.get(url, params=params, stream=True, timeout=timeout,
                      headers={"Accept": "text/event-stream", **(headers or {})}) as response:
        if response.status_code != 200:
            return [{"phase": "http-error", "status_code": response.status_code,
                     "message": response.text}]
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1]["phase"] in ("ready", "failed"):
                    break
    return events


def build_only(svc, spec: str, **params) -> dict:
    """One build-only launch of gh/<spec>/main; its last event."""
    return stream(f"{svc.url}build/gh/{spec}/main", {"build_only": "true", **params})[-1]


def outcome(event: dict) -> str:
    if event["phase"] == "ready":
        return "ready"
    return f"{event['phase']} {event.get('status_code')}"


def assert_rate_limited(event: dict, window: float) -> None:
    assert event["phase"] == "failed" and event["status_code"] == 429, event
    match = RETRY_RE.search(event["message"])
    assert match, f"no 'try again in N s' in {event['message']!r}"
    assert 0 < int(match.group(1)) <= window + 1, event["message"]


@contextmanager
def git_requests(git_server):
    """Record the paths the test git server is asked for (to prove nothing was fetched)."""
    seen: list[str] = []

    class Recording(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.path)
            super().do_GET()

        def do_HEAD(self):
            seen.append(self.path)
            super().do_HEAD()

    original = git_server.httpd.RequestHandlerClass
    git_server.httpd.RequestHandlerClass = partial(Recording, directory=str(git_server.root))
    try:
        yield seen
    finally:
        git_server.httpd.RequestHandlerClass = original


# The loading page's own script (frontend/static/launch.js) run in node with a stand-in DOM:
# what URL does it ask the build stream at? fetch() is captured, nothing is sent.
PAGE_SCRIPT = r"""
const [launchJs, settingsJson, pageUrl] = process.argv.slice(-3);
const fake = new Proxy(function () {}, {
  get: (t, p) => (p === Symbol.toPrimitive ? () => "" : p === "then" ? undefined : fake),
  set: () => true, apply: () => fake, construct: () => fake,
});
globalThis.document = fake;
globalThis.requestAnimationFrame = () => 0;
globalThis.cancelAnimationFrame = () => {};
const urls = [];
globalThis.fetch = (url) => { urls.push(String(url)); return new Promise(() => {}); };
globalThis.EventSource = function (url) { urls.push(String(url)); return fake; };
globalThis.window = { location: { href: pageUrl, replace() {} } };
const { startLoadingPage } = await import(launchJs);
for (const settings of JSON.parse(settingsJson)) startLoadingPage(settings);
console.log(JSON.stringify(urls));
process.exit(0);
"""


def page_settings(svc, spec: str) -> dict:
    """The launch settings a loading page view embeds (build URL and its parameters)."""
    page = requests.get(f"{svc.url}v2/gh/{spec}/main", timeout=20)
    assert page.status_code == 200, page.text
    match = re.search(r'<script type="application/json" id="launch-settings">(.*?)</script>',
                      page.text, re.S)
    assert match, "the loading page embeds no launch settings"
    return {**json.loads(match.group(1)), "cache_control": page.headers.get("Cache-Control")}


def page_build_urls(svc, spec: str, settings: list[dict]) -> list[str]:
    """The /build URLs the page's script opens for each of ``settings``."""
    node = shutil.which("node")
    assert node, "node is not on PATH (Debian: apt-get install -y nodejs)"
    proc = subprocess.run(
        [node, "--input-type=module", "-e", PAGE_SCRIPT, str(LAUNCH_JS),
         json.dumps(settings), f"{svc.url}v2/gh/{spec}/main"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same_tree_repos(git_server, count: int, **names) -> list:
    """``count`` new repositories with one tree between them: one image, one build."""
    repos = [git_server.create("dockerfile", **names)]
    test_id = (repos[0].work / ".binderlab-test-id").read_text()
    for _ in range(count - 1):
        repo = git_server.create("dockerfile")
        repo.commit({".binderlab-test-id": test_id})
        repos.append(repo)
    return repos


def sessions_running(docker_client, image_prefix: str) -> int:
    """What the quota counts: running binderlab session containers of this host (its image
    prefix; other runs' sessions on the shared engine do not count)."""
    return sum(1 for c in docker_client.containers.list(filters={"label": "binderlab.user"})
               if (c.attrs["Config"]["Image"] or "").startswith(image_prefix))


def stop_session(svc, ready: dict) -> None:
    user = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    requests.delete(f"{svc.hub_url}/hub/api/users/{user}/server", timeout=60,
                    headers={"Authorization": f"token {svc.service_token}"})


# ---- per-client rate ------------------------------------------------------------------------

def test_direct_api_launches_are_rate_limited(make_service, git_server):
    svc = make_service("serve", extra_config="""
c.LaunchLimits.per_client = 3
c.LaunchLimits.window = 600
""")
    repo, other = same_tree_repos(git_server, 2)
    assert [outcome(build_only(svc, repo.gh_spec)) for _ in range(3)] == ["ready"] * 3
    refused = build_only(svc, repo.gh_spec)
    assert_rate_limited(refused, 600)
    assert "loading page" in refused["message"], refused  # says how people get more
    # the allowance is per address, not per repository
    assert_rate_limited(build_only(svc, other.gh_spec), 600)
    # a refusal is not counted and the service stays up
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200


@pytest.mark.parametrize("header", ["X-Real-Ip", "X-Forwarded-For"])
def test_a_forged_forwarding_header_does_not_reset_the_limit(make_service, git_server, header):
    svc = make_service("serve", extra_config="c.LaunchLimits.per_client = 2")
    repo = git_server.create("dockerfile")
    assert [outcome(build_only(svc, repo.gh_spec)) for _ in range(2)] == ["ready"] * 2
    assert_rate_limited(build_only(svc, repo.gh_spec), 600)
    # nothing sits between this client and the service: the header is the client's own
    forged = stream(f"{svc.url}build/gh/{repo.gh_spec}/main", {"build_only": "true"},
                    headers={header: "198.51.100.23"})[-1]
    assert_rate_limited(forged, 600)


# ---- classrooms -----------------------------------------------------------------------------

def test_classroom_of_40_launches_a_course_repo_from_one_address(make_service, git_server):
    """40 students behind one NAT address, one course repository, within a minute: all
    pass; the same 40 launches of a repository that is not listed hit the strict limit."""
    svc = make_service("serve", extra_config="""
c.LaunchLimits.per_client = 20
c.LaunchLimits.per_client_course = 400
c.LaunchLimits.window = 600
c.LaunchLimits.course_repos = ["gh/test/course-*"]
""")
    course, other = same_tree_repos(git_server, 2, name=f"course-{time.time_ns()}")
    assert outcome(build_only(svc, course.gh_spec)) == "ready"  # the teacher tries it first

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: build_only(svc, course.gh_spec), range(40)))
    elapsed = time.monotonic() - started
    assert [outcome(e) for e in results] == ["ready"] * 40, \
        [e.get("message") for e in results if e["phase"] != "ready"][:3]
    assert elapsed < 60, f"40 launches took {elapsed:.0f} s"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: build_only(svc, other.gh_spec), range(40)))
    outcomes = sorted(outcome(e) for e in results)
    assert outcomes == ["failed 429"] * 20 + ["ready"] * 20, outcomes
    for event in results:
        if event["phase"] == "failed":
            assert_rate_limited(event, 600)


def test_loading_page_hands_out_a_ticket_its_script_sends(make_service, git_server):
    svc = make_service("serve", extra_config="c.LaunchLimits.per_client = 5")
    repo = git_server.create("dockerfile")
    first, second = page_settings(svc, repo.gh_spec), page_settings(svc, repo.gh_spec)
    ticket = first.get("buildParams", {}).get("launch_ticket")
    assert ticket and TICKET_RE.match(ticket), first
    assert ticket != second["buildParams"]["launch_ticket"], "one ticket per page view"
    assert "no-store" in (first["cache_control"] or ""), "a cached page would reuse a ticket"
    [url] = page_build_urls(svc, repo.gh_spec, [first])
    assert url.startswith(f"{svc.url}build/gh/{repo.gh_spec}/main?"), url
    assert f"launch_ticket={ticket}" in url, url


def test_classroom_through_the_loading_page(make_service, git_server):
    """40 page views of a repository nobody listed, from one address: each launch carries its
    page's ticket and passes, where the 6th script launch is refused. A ticket is single-use
    and bound to its repository: a replay or a ticket of another repository counts as a
    script launch."""
    svc = make_service("serve", extra_config="""
c.LaunchLimits.per_client = 5
c.LaunchLimits.per_client_with_page = 200
c.LaunchLimits.window = 600
""")
    repo, other = same_tree_repos(git_server, 2)
    views = [page_settings(svc, repo.gh_spec) for _ in range(40)]
    urls = page_build_urls(svc, repo.gh_spec, views)
    assert len(urls) == 40 and all("launch_ticket=" in u for u in urls), urls[:2]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda u: stream(u, {"build_only": "true"})[-1], urls))
    assert [outcome(e) for e in results] == ["ready"] * 40, \
        [e.get("message") for e in results if e["phase"] != "ready"][:3]

    # the strict allowance for scripts is untouched by the page launches ...
    assert [outcome(build_only(svc, repo.gh_spec)) for _ in range(5)] == ["ready"] * 5
    assert_rate_limited(build_only(svc, repo.gh_spec), 600)
    # ... and neither a replayed ticket nor another repository's ticket gets past it
    assert_rate_limited(stream(urls[0], {"build_only": "true"})[-1], 600)
    ticket = views[1]["buildParams"]["launch_ticket"]
    assert_rate_limited(build_only(svc, other.gh_spec, launch_ticket=ticket), 600)



# ---- tickets as a unit ----------------------------------------------------------------------

class TestTickets:
    SPEC = "gh/course/physics/main"

    def test_valid_once(self):
        limits = LaunchLimits()
        ticket = limits.issue_ticket(self.SPEC)
        assert TICKET_RE.match(ticket)
        assert limits.redeem_ticket(ticket, self.SPEC)
        assert not limits.redeem_ticket(ticket, self.SPEC)

    def test_bound_to_its_spec_path(self):
        limits = LaunchLimits()
        ticket = limits.issue_ticket(self.SPEC)
        for spec in ("gh/course/physics/other", "gh/course/chemistry/main",
                     "git/course/physics/main", self.SPEC + "/", ""):
            assert not limits.redeem_ticket(ticket, spec), spec
        assert limits.redeem_ticket(ticket, self.SPEC)  # the refusals did not use it up

    def test_expires_after_ticket_max_age(self, monkeypatch):
        limits = LaunchLimits(ticket_max_age=60)
        now = time.time()
        monkeypatch.setattr("binderlab.launch.limits.time.time", lambda: now)
        fresh, old = limits.issue_ticket(self.SPEC), limits.issue_ticket(self.SPEC)
        monkeypatch.setattr("binderlab.launch.limits.time.time", lambda: now + 59)
        assert limits.redeem_ticket(fresh, self.SPEC)
        monkeypatch.setattr("binderlab.launch.limits.time.time", lambda: now + 62)
        assert not limits.redeem_ticket(old, self.SPEC)

    def test_not_valid_before_it_was_issued(self, monkeypatch):
        limits = LaunchLimits()
        now = time.time()
        monkeypatch.setattr("binderlab.launch.limits.time.time", lambda: now + 3600)
        future = limits.issue_ticket(self.SPEC)
        monkeypatch.setattr("binderlab.launch.limits.time.time", lambda: now)
        assert not limits.redeem_ticket(future, self.SPEC)

    def test_forged_and_foreign_signatures_are_refused(self):
        limits, other = LaunchLimits(), LaunchLimits()
        ticket = limits.issue_ticket(self.SPEC)
        issued, nonce, signature = ticket.split(".")
        flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        forged = [
            f"{issued}.{nonce}.{flipped}",
            f"{int(issued) + 1}.{nonce}.{signature}",  # re-dated
            f"{issued}.{nonce}ff.{signature}",  # another nonce
            other.issue_ticket(self.SPEC),  # another host's (or before a restart) key
            f"{issued}.{nonce}.{'0' * len(signature)}",
        ]
        for candidate in forged:
            assert not limits.redeem_ticket(candidate, self.SPEC), candidate
        assert limits.redeem_ticket(ticket, self.SPEC)

    @pytest.mark.parametrize("junk", [
        "", ".", "..", "a.b", "a.b.c", "1.2", "1.2.3.4", "-1.00.00", "1e9.ab.cd",
        "\x00.\x00.\x00", "٣.ab.cd", "9" * 5000 + ".a.b", "x" * 10_000,
        "9" * 400 + ".ab.cd",
    ])
    def test_junk_is_refused_without_an_exception(self, junk):
        assert LaunchLimits().redeem_ticket(junk, self.SPEC) is False


def test_a_huge_ticket_stamp_is_not_a_server_error(make_service, git_server):
    svc = make_service("serve", extra_config="c.LaunchLimits.per_client = 5")
    repo = git_server.create("dockerfile")
    last = build_only(svc, repo.gh_spec, launch_ticket="9" * 400 + ".ab.cd")
    assert last["phase"] == "ready", last  # an unusable ticket: a launch without one


# ---- banned and allowed repositories --------------------------------------------------------

@pytest.fixture(scope="module")
def banning(make_module_service):
    """Shared by the ban tests: a ban keeps no state, and each test bans its own
    repository (per-address limits are off)."""
    return make_module_service("serve",
                               extra_config='c.LaunchLimits.banned_specs = ["gh/test/banned-*"]')


def test_banned_repository_is_refused_before_anything_is_fetched(banning, git_server):
    svc = banning
    banned = git_server.create("dockerfile", name=f"banned-{time.time_ns()}")
    fine = git_server.create("dockerfile")
    with git_requests(git_server) as seen:
        event = build_only(svc, banned.gh_spec)
        assert (event["phase"], event["status_code"]) == ("failed", 403), event
        assert f"gh/{banned.gh_spec} cannot be launched on this host" in event["message"]
        assert not [p for p in seen if banned.name in p], seen
        assert outcome(build_only(svc, fine.gh_spec)) == "ready"
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200


def test_a_ban_is_not_escaped_by_changing_case(banning, git_server):
    svc = banning
    banned = git_server.create("dockerfile", name=f"banned-{time.time_ns()}")
    with git_requests(git_server) as seen:
        last = stream(f"{svc.url}build/gh/TEST/{banned.name.upper()}/main",
                      {"build_only": "true"})[-1]
    assert (last["phase"], last.get("status_code")) == ("failed", 403), (last, seen)


def test_a_ban_is_not_escaped_through_the_git_provider(banning, git_server):
    svc = banning
    banned = git_server.create("dockerfile", name=f"banned-{time.time_ns()}")
    last = stream(f"{svc.url}build/git/{quote(banned.url, safe='')}/main",
                  {"build_only": "true"})[-1]
    assert (last["phase"], last.get("status_code")) == ("failed", 403), last


def test_only_allowed_repositories_launch(make_service, git_server):
    svc = make_service("serve", extra_config="""
c.LaunchLimits.allowed_specs = ["gh/test/allowed-*"]
c.LaunchLimits.banned_specs = ["gh/test/allowed-but-banned-*"]
""")
    allowed = git_server.create("dockerfile", name=f"allowed-{time.time_ns()}")
    banned = git_server.create("dockerfile", name=f"allowed-but-banned-{time.time_ns()}")
    other = git_server.create("dockerfile")
    assert outcome(build_only(svc, allowed.gh_spec)) == "ready"
    with git_requests(git_server) as seen:
        refused = build_only(svc, other.gh_spec)
        assert (refused["phase"], refused["status_code"]) == ("failed", 403), refused
        assert "is not among the repositories this host launches" in refused["message"]
        assert f"gh/{other.gh_spec}" in refused["message"]
        ban = build_only(svc, banned.gh_spec)
        assert (ban["phase"], ban["status_code"]) == ("failed", 403), ban
        assert "cannot be launched on this host" in ban["message"]  # a ban wins
        assert not [p for p in seen if other.name in p or banned.name in p], seen


# ---- session quotas -------------------------------------------------------------------------

def test_session_quotas_per_repository_and_for_the_host(make_service, git_server,
                                                         docker_client):
    """max_sessions_per_repo=1: a second session of a repository is refused (429) while
    another repository still launches; max_sessions: 503 "host is full". Only this host's
    sessions count (other binderlab instances may share the engine)."""
    svc = make_service("up", extra_config="""
c.LaunchLimits.max_sessions_per_repo = 1
c.LaunchLimits.max_sessions = 3
""")
    base = sessions_running(docker_client, svc.image_prefix)
    assert base == 0
    a, b, c, d = same_tree_repos(git_server, 4)

    def launch(repo):
        return stream(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]

    first = launch(a)
    assert first["phase"] == "ready", first
    again = launch(a)
    assert (again["phase"], again["status_code"]) == ("failed", 429), again
    assert f"gh/{a.gh_spec}" in again["message"] and "Try again later" in again["message"]
    second, third = launch(b), launch(c)
    assert second["phase"] == third["phase"] == "ready", (second, third)
    full = launch(d)
    assert (full["phase"], full["status_code"]) == ("failed", 503), full
    assert "host is full" in full["message"], full
    # refused launches started nothing
    assert sessions_running(docker_client, svc.image_prefix) == base + 3
    # a freed place can be taken again
    stop_session(svc, second)
    deadline = time.monotonic() + 60
    while sessions_running(docker_client, svc.image_prefix) > base + 2 \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert launch(d)["phase"] == "ready"


@pytest.fixture(scope="module")
def quota_service(make_module_service):
    """Shared by the tests below: each launches its own repository, and the quota is per
    repository, so one test's sessions never count against another's."""
    return make_module_service("up", extra_config="c.LaunchLimits.max_sessions_per_repo = 1")


def test_concurrent_launches_respect_the_repository_quota(quota_service, git_server,
                                                          docker_client):
    repo = git_server.create("dockerfile")
    assert outcome(build_only(quota_service, repo.gh_spec)) == "ready"  # built once
    url = f"{quota_service.url}build/gh/{repo.gh_spec}/main"
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: stream(url)[-1], range(3)))
    assert sorted(outcome(e) for e in results) == ["failed 429", "failed 429", "ready"]


def test_quota_counts_only_this_hosts_sessions(quota_service, git_server, docker_client):
    repo = git_server.create("dockerfile")
    # a session of another binderlab instance on the same engine, for the same repository
    stranger = docker_client.containers.run(
        "binderlab-test/base:latest", ["sleep", "300"], detach=True, remove=True,
        labels={"binderlab.user": "someone-elses", "binderlab.repo-key": f"gh/{repo.gh_spec}"})
    try:
        ready = stream(f"{quota_service.url}build/gh/{repo.gh_spec}/main")[-1]
        assert ready["phase"] == "ready", ready
    finally:
        stranger.remove(force=True)
