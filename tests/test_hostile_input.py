"""Hostile input through the real service: YAML bombs, deep nesting, binary junk as an
environment file, a huge repository, junk bytes in the spec path, and urlpath/labpath/filepath
values that try to leave the session. The service must answer clearly within a bounded time,
stay up, and keep its memory bounded.

The environment-file cases run with the harness's repo2docker configuration (its build
packs: Dockerfile and a local pip one); the same files under repo2docker's own build packs
(where the conda build pack reads environment.yml) are checked on the fingerprint itself,
in a separate process, with time and memory bounds.
"""

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from binderlab.fingerprint.buildpacks import MAX_YAML_DEPTH, canonical, canonical_environment_yml
from tests.harness.service import Service
from tests.harness.sse import follow

pytestmark = pytest.mark.docker

LAUNCH_JS = Path(__file__).resolve().parent.parent / "frontend" / "static" / "launch.js"
MiB = 1 << 20


# ---- hostile files --------------------------------------------------------------------------

def alias_bomb() -> str:
    """ "Billion laughs": 9 levels of 9 aliases, 9**10 strings once expanded, in an otherwise
    valid environment.yml."""
    lines = ["name: laughs", "channels: [conda-forge]", "dependencies: [python=3.11, numpy]",
             "lol:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("variables: *a9")
    return "\n".join(lines) + "\n"


def deep_nesting(depth: int = 50_000) -> str:
    return "name: deep\ndependencies:\n  - " + "[" * depth + "]" * depth + "\n"


def binary_junk(size: int = 2 * MiB) -> bytes:
    return os.urandom(size)


# ---- the service and its memory -------------------------------------------------------------

def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out += [child, *descendants(child)]
    return out


def workers_peak_kb(pid: int) -> int:
    """The largest peak RSS among the service's child processes (the fingerprint worker)."""
    peaks = []
    for child in descendants(pid):
        try:
            peaks.append(memory_kb(child)["VmHWM"])
        except (OSError, KeyError):
            pass
    return max(peaks, default=0)


def remove_images(docker_client, prefix: str) -> None:
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(prefix):
                docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def hostile_service(docker_client, git_server, tmp_path_factory):
    """One `binderlab serve` (harness config, build-only allowed) for the file cases."""
    svc = Service(tmp_path_factory.mktemp("binderlab-hostile"), git_server.url, "serve")
    svc.start()
    yield svc
    svc.stop()
    remove_images(docker_client, svc.image_prefix)


def publish(git_server, files: dict[str, bytes | str], case: str = "environment-yml"):
    """A new repository from tests/repos/<case> with ``files`` added (bytes as they are)."""
    repo = git_server.create(case)
    for name, content in files.items():
        path = repo.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    repo.commit({}, message="hostile file")
    return repo


def assert_clear_answer(events: list[dict]) -> None:
    """`ready` (the file was used or keyed by its text) or a `failed` with a 4xx and a
    message a person can read; never a 5xx or a stream that just ends."""
    last = events[-1]
    assert last["phase"] in ("ready", "failed"), events[-3:]
    if last["phase"] == "failed":
        assert 400 <= last["status_code"] < 500, last
        assert last["message"].strip() and "Internal" not in last["message"], last


HOSTILE_FILES = {
    "alias-bomb": {"environment.yml": alias_bomb()},
    "alias-bomb-in-binder-dir": {"binder/environment.yml": alias_bomb()},
    "deep-nesting": {"environment.yml": deep_nesting()},
    "binary-requirements": {"requirements.txt": binary_junk()},
    "binary-environment": {"environment.yml": binary_junk()},
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_environment_file(hostile_service, git_server, case):
    svc = hostile_service
    repo = publish(git_server, HOSTILE_FILES[case])
    before = memory_kb(svc.proc.pid)

    started = time.monotonic()
    events = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", timeout=300,
                    params={"build_only": "true"})
    took = time.monotonic() - started
    assert_clear_answer(events)
    assert took < 180, f"{case}: {took:.0f} s"

    assert requests.get(svc.url + "versions", timeout=10).status_code == 200
    after = memory_kb(svc.proc.pid)
    assert after["VmRSS"] - before["VmRSS"] < 100 * 1024, (before, after)
    assert after["VmHWM"] < 400 * 1024, after
    assert workers_peak_kb(svc.proc.pid) < 500 * 1024
    # and the next ordinary launch works
    assert follow(f"{svc.url}build/gh/{git_server.create('dockerfile').gh_spec}/main",
                  params={"build_only": "true"})[-1]["phase"] == "ready"


# ---- the same files under repo2docker's own build packs (conda reads environment.yml) ----

def fingerprint_in_process(tmp_path: Path, files: dict[str, bytes | str]) -> tuple:
    """Run `python -m binderlab.fingerprint` (repo2docker's default build packs) on a folder
    holding ``files``; return (exit code, stdout, stderr, seconds, peak RSS in kB)."""
    folder = tmp_path / uuid.uuid4().hex
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    def limit():  # a bomb that expanded would hit this instead of the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "binderlab.fingerprint", str(folder)],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit)
    took = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return proc.returncode, proc.stdout, proc.stderr, took, peak


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_environment_file_under_repo2dockers_build_packs(tmp_path, case):
    code, out, err, took, peak = fingerprint_in_process(tmp_path, HOSTILE_FILES[case])
    assert took < 60, took
    assert peak < 600 * 1024, peak  # kB, the largest child so far
    if code == 0:
        result = json.loads(out)
        assert result["kind"] in ("env", "tree"), result
    else:  # repo2docker cannot read it: the service reports "repo2docker cannot read ..."
        assert "MemoryError" not in err and "Killed" not in err, err[-2000:]
        assert err.strip().splitlines()[-1], err


def test_canonical_form_bounds_expansion():
    """The canonical form of environment.yml refuses (and the caller keys by text) what
    expands beyond its bounds, quickly."""
    for text in (alias_bomb(), deep_nesting(), deep_nesting(MAX_YAML_DEPTH + 5)):
        started = time.monotonic()
        with pytest.raises((ValueError, RecursionError)):
            canonical_environment_yml(text)
        key_text = canonical("environment.yml", text.encode())
        assert time.monotonic() - started < 10
        assert len(key_text) <= len(text) + 16  # the text itself, not an expansion


# ---- a huge repository ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def huge_repo(git_server):
    """200 MB of random bytes committed (incompressible), on an environment-only repo."""
    repo = git_server.create("environment-yml")
    with open(repo.work / "data.bin", "wb") as f:
        for _ in range(200):
            f.write(os.urandom(MiB))
    repo.commit({}, message="200 MB of data")
    yield repo
    shutil.rmtree(repo.work, ignore_errors=True)
    shutil.rmtree(repo.bare, ignore_errors=True)


def test_huge_repository_with_a_small_git_timeout_fails_clearly(make_service, huge_repo):
    svc = make_service("serve", extra_config="c.BinderLab.git_timeout = 0.5")
    started = time.monotonic()
    events = follow(f"{svc.url}build/gh/{huge_repo.gh_spec}/main", timeout=120,
                    params={"build_only": "true"})
    took = time.monotonic() - started
    last = events[-1]
    assert last["phase"] == "failed", events[-3:]
    assert "took longer than 0.5 s" in last["message"], last
    assert last["status_code"] in (404, 504), last
    assert took < 30, took
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200
    # no git process left behind
    time.sleep(1)
    assert not [p for p in descendants(svc.proc.pid)
                if "git" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                and "fetch" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]


def test_huge_repository_does_not_grow_the_service(make_service, huge_repo):
    svc = make_service("serve")
    before = memory_kb(svc.proc.pid)
    events = follow(f"{svc.url}build/gh/{huge_repo.gh_spec}/main", timeout=600,
                    params={"build_only": "true"})
    after = memory_kb(svc.proc.pid)
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200
    assert_clear_answer(events)
    assert after["VmHWM"] - before["VmHWM"] < 100 * 1024, (before, after, events[-1])


# ---- junk in the URL ------------------------------------------------------------------------

def raw_get(svc, path: bytes) -> tuple[int, bytes]:
    """Send a request line with exactly these bytes; return the status and the body."""
    port = int(svc.url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Accept: text/event-stream\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


JUNK_PATHS = [
    b"/build/gh/\xff\xfe/\x80/main",
    b"/build/gh/owner/repo/\xff\xfe",
    b"/build/gh/own\x00er/repo/main",
    b"/build/gh/owner/repo/\x01\x02\x7f",
    b"/build/gh/owner/repo/%00%0a%0d",
    b"/build/gh/%FF%FE%FD/repo/main",
    b"/build/git/\xff%FF%00/main",
    b"/build/gl/%C0%AE%C0%AE%2F%C0%AE%C0%AE/main",
    b"/build/gist/\xc3\xa9/abc/main",
    b"/build/gh/" + b"%41" * 4000 + b"/repo/main",
    b"/build/gh/owner/repo/main?build_only=true&launch_ticket=%FF%FE",
    b"/build/gh/owner/repo/main?gpu=%FF",
    b"/v2/gh/\xff/\xfe/main",
    b"/v2/gh/owner/repo/main?urlpath=%FF%FE",
    b"/v2/gl/%00/main",
]


def test_junk_bytes_in_the_url(hostile_service):
    svc = hostile_service
    for path in JUNK_PATHS:
        status, body = raw_get(svc, path)
        assert status < 500, (path, status, body[:300])
        if status == 200 and path.startswith(b"/build/"):
            last = [line for line in body.decode(errors="replace").splitlines()
                    if line.startswith("data:")][-1]
            event = json.loads(last[5:])
            assert event["phase"] in ("failed", "ready"), (path, event)
            if event["phase"] == "failed":
                assert event["status_code"] < 500, (path, event)
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200


@pytest.mark.parametrize("route", ["build", "v2"])
@pytest.mark.parametrize("url", ["https://[::1", "https://example.org]/repo",
                                 "https://example.org:99999/repo",
                                 "https://example.org:port/repo"])
def test_unreadable_git_url_is_a_400(hostile_service, route, url):
    """URLs urlsplit cannot read (a bracketed host, a port out of range or not a number):
    a 400 with a message, never a 500 or a stream that ends without `failed`."""
    path = f"/{route}/git/{quote(url, safe='')}/main"
    status, body = raw_get(hostile_service, path.encode())
    if route == "build" and status == 200:
        last = json.loads([line for line in body.decode().splitlines()
                           if line.startswith("data:")][-1][5:])
        assert (last["phase"], last["status_code"]) == ("failed", 400), last
    else:
        assert status == 400, (status, body[:300])
        assert b"Not a repository URL" in body or b"message" in body, body[:300]



@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd"])
def test_repository_with_a_symlink_out_of_it_gets_an_answer(hostile_service, git_server,
                                                            target):
    """Symbolic links to absolute paths are common in real repositories (a data folder on
    the author's machine). The launch must end with `ready` or a clear `failed`; nothing
    outside the checkout may be read."""
    repo = git_server.create("dockerfile")
    (repo.work / "outside").symlink_to(target)
    repo.commit({}, message="a link out of the repository")
    events = follow(f"{hostile_service.url}build/gh/{repo.gh_spec}/main", timeout=300,
                    params={"build_only": "true"})
    assert_clear_answer(events)


# ---- urlpath, labpath, filepath: no way out of the session ----------------------------------

SESSION = "http://127.0.0.1:8000/user/abc123/"
ESCAPES = ["..", "../..", "//evil.example", "///evil.example", "https://evil.example",
           "HTTPS://evil.example", "/\\evil.example", "\\\\evil.example", "\\/evil.example",
           "%2e%2e/%2e%2e/hub/admin", ".%2e/.%2e/hub/admin", "..%2f..%2fhub%2fadmin",
           "%2F%2Fevil.example", "\t//evil.example", " //evil.example", "\n//evil.example",
           "javascript:alert(1)", "java\nscript:alert(1)", "data:text/html,hi",
           "lab/../../../hub/admin", "./../../hub/token", "@evil.example", ":@evil.example",
           "?token=stolen", "#//evil.example", "lab?token=stolen"]

SESSION_URL_SCRIPT = r"""
const [launchJs, session, casesJson] = process.argv.slice(-3);
const { sessionUrl } = await import(launchJs);
const out = [];
for (const [name, value] of JSON.parse(casesJson)) {
  out.push(sessionUrl({ url: session, token: "t0ken" }, new URLSearchParams([[name, value]])));
}
console.log(JSON.stringify(out));
"""


def session_urls(cases: list[tuple[str, str]]) -> list[str]:
    node = shutil.which("node")
    assert node, "node is not on PATH (Debian: apt-get install -y nodejs)"
    proc = subprocess.run([node, "--input-type=module", "-e", SESSION_URL_SCRIPT,
                           str(LAUNCH_JS), SESSION, json.dumps(cases)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_session_url_never_leaves_the_session():
    cases = [(name, value) for name in ("urlpath", "labpath", "filepath") for value in ESCAPES]
    for (name, value), url in zip(cases, session_urls(cases), strict=True):
        # what the browser is sent to (URL() has already resolved dots and slashes)
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:8000"), (name, value, url)
        assert url.startswith(SESSION), (name, value, url)
        assert parse_qs(parts.query).get("token") == ["t0ken"], (name, value, url)


def test_session_url_keeps_ordinary_paths():
    cases = [("labpath", "notebooks/intro.ipynb"), ("filepath", "data/a b.csv"),
             ("urlpath", "lab/tree/x.ipynb"), ("urlpath", "voila/render/app.ipynb")]
    assert session_urls(cases) == [
        f"{SESSION}doc/tree/notebooks/intro.ipynb?token=t0ken",
        f"{SESSION}tree/data/a%20b.csv?token=t0ken",
        f"{SESSION}lab/tree/x.ipynb?token=t0ken",
        f"{SESSION}voila/render/app.ipynb?token=t0ken",
    ]
