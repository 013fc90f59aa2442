"""Host names that are not what they look like (issue 12).

The guard must check the name git will connect to, and git must connect to the address
that was checked. The end-to-end tests resolve names through a /etc/hosts of their own
(tests/harness/namedhosts.py) and serve repositories on two loopback addresses: 127.0.0.2
plays an allowed public host, 127.0.0.1 an internal service that must never see a request.
"""

import socket
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from binderlab.errors import LaunchError
from binderlab.launch.limits import matches
from binderlab.repos import gitcmd, netguard
from binderlab.repos.providers import (
    GitHubRepoProvider,
    GitLabRepoProvider,
    GitRepoProvider,
    repo_key,
)
from tests.harness import namedhosts
from tests.harness.gitserver import GIT_ENV

ZONE = "binderlab.test"


# ---- one spelling per host: what bans, allow lists and the guard match on ---------------

@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r",
        "https://github.com:443/o/r",
        "https://github.com./o/r",
        "https://GitHub.COM/o/r",
        "HTTPS://github.com.:443/o/r.git",
        "https://ｇｉｔｈｕｂ．ｃｏｍ/o/r",
        "https://github。com/o/r",
    ],
)
def test_spellings_of_a_banned_host_get_the_banned_key(url):
    providers = [GitHubRepoProvider(), GitLabRepoProvider(), GitRepoProvider()]
    spec = providers[2].parse(quote(url, safe="") + "/main")
    assert spec.clone_url.startswith("https://github.com/o/r")
    assert repo_key(spec, providers) == "gh/o/r"
    assert matches(repo_key(spec, providers), ["gh/o/*"])


def test_a_non_default_port_is_kept_and_is_another_repository():
    git = GitRepoProvider()
    spec = git.parse(quote("https://github.com:8443/o/r", safe="") + "/main")
    assert spec.clone_url == "https://github.com:8443/o/r"
    assert repo_key(spec, [GitHubRepoProvider(), git]).startswith("git/")


def test_provider_host_spelled_oddly_still_matches():
    gh = GitHubRepoProvider(host="https://GitHub.com.:443")
    git = GitRepoProvider()
    spec = git.parse(quote("https://github.com/o/r", safe="") + "/main")
    assert repo_key(spec, [gh, git]) == "gh/o/r"
    assert gh.parse("o/r/main").clone_url == "https://github.com/o/r"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("https://%67ithub.com/o/r", 400),
        ("https://git%2Ehub.com/o/r", 400),
        ("https://bad!host.example/o/r", 400),
        ("https://a..b/o/r", 400),
        ("https://１２７.０.０.１/o/r", None),  # allowed by parse, refused by the guard
    ],
)
def test_host_spellings_parse(url, status):
    git = GitRepoProvider()
    if status is None:
        assert git.parse(quote(url, safe="") + "/main").clone_url == "https://127.0.0.1/o/r"
        return
    with pytest.raises(LaunchError) as info:
        git.parse(quote(url, safe="") + "/main")
    assert info.value.status_code == status


async def test_the_pinned_name_is_the_ascii_name_git_uses(monkeypatch):
    seen = []

    class Loop:
        async def getaddrinfo(self, host, port, **kwargs):
            seen.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("140.82.112.3", port))]

    monkeypatch.setattr(netguard.asyncio, "get_running_loop", lambda: Loop())
    # no git at all here (the fake address is a public one): the SHA is taken as given
    git = GitRepoProvider(allow_unadvertised_commits=True)
    spec = git.parse(quote("https://straße.example/r.git", safe="") + "/" + "a" * 40)
    resolved = await git.resolve(spec, netguard.parse_networks(["127.0.0.0/8"]))
    assert seen == ["xn--strae-oqa.example"]
    assert spec.clone_url == "https://xn--strae-oqa.example/r.git"
    assert resolved.git_config == gitcmd.pin_config("xn--strae-oqa.example", 443,
                                                    "140.82.112.3")


# ---- the attack, end to end: real resolver, real git, real sockets ----------------------

class _Counting(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        self.server.requests.append(self.path)


def _serve(address: str, port: int, root: Path) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer((address, port), partial(_Counting, directory=str(root)))
    httpd.requests = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def _bare_repo(root: Path, text: str) -> str:
    work, bare = root.parent / f"work-{root.name}", root / "r.git"
    work.mkdir(parents=True)
    run = partial(subprocess.run, env=GIT_ENV, check=True, capture_output=True, text=True)
    run(["git", "init", "-q", "-b", "main", str(work)])
    (work / "README.md").write_text(text)
    run(["git", "add", "-A"], cwd=work)
    run(["git", "commit", "-q", "-m", text], cwd=work)
    run(["git", "clone", "-q", "--bare", str(work), str(bare)])
    run(["git", "update-server-info"], cwd=bare)
    return run(["git", "rev-parse", "HEAD"], cwd=work).stdout.strip()


@pytest.fixture
def two_hosts(tmp_path):
    """The same port on 127.0.0.2 (allowed, public stand-in) and 127.0.0.1 (internal)."""
    for _ in range(20):
        allowed = _serve("127.0.0.2", 0, tmp_path / "allowed")
        port = allowed.server_address[1]
        try:
            internal = _serve("127.0.0.1", port, tmp_path / "internal")
            break
        except OSError:
            allowed.shutdown()
            allowed.server_close()
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")
    (tmp_path / "allowed").mkdir(exist_ok=True)
    (tmp_path / "internal").mkdir(exist_ok=True)
    commits = {"allowed": _bare_repo(tmp_path / "allowed", "public"),
               "internal": _bare_repo(tmp_path / "internal", "internal secret")}
    yield port, allowed, internal, commits
    for httpd in (allowed, internal):
        httpd.shutdown()
        httpd.server_close()


# runs in the namespace: parse, guard, pin and fetch exactly as a launch does
LAUNCH = r"""
import asyncio, json, sys
from pathlib import Path
from urllib.parse import quote
from binderlab.errors import LaunchError
from binderlab.repos import netguard
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import GitRepoProvider

args = json.load(sys.stdin)

async def launch(url, rebind_to):
    git = GitRepoProvider(allowed_protocols=["http"])
    try:
        spec = git.parse(quote(url, safe="") + "/main")
        resolved = await git.resolve(spec, netguard.parse_networks(["127.0.0.1/32"]))
        if rebind_to:  # DNS answers differently once the guard has looked (rebinding)
            hosts = Path(args["hosts"])
            hosts.write_text(hosts.read_text() + rebind_to)
        mirrors = RepoMirrors(Path(args["mirrors"]), timeout=30)
        await mirrors.fetch(spec.clone_url, resolved.commit, ["http"], resolved.git_config)
        return {"commit": resolved.commit, "clone_url": spec.clone_url}
    except LaunchError as e:
        return {"status": e.status_code, "message": str(e)}

async def main():
    return {url: await launch(url, rebind) for url, rebind in args["launches"]}

print(json.dumps(asyncio.run(main())))
"""

pytestmark_ns = pytest.mark.skipif(not namedhosts.available(),
                                   reason="needs root for a mount namespace")


@pytestmark_ns
def test_idna_host_names_reach_only_the_checked_address(tmp_path, two_hosts):
    port, allowed, internal, commits = two_hosts
    hosts = tmp_path / "hosts"
    # what an attacker controls in DNS: the IDNA 2003 and IDNA 2008 forms of one name
    # point at different addresses
    hosts.write_text(
        "127.0.0.1 localhost\n"
        f"127.0.0.2 strasse.{ZONE}\n"
        f"127.0.0.1 xn--strae-oqa.{ZONE}\n"
        f"127.0.0.2 xn--bcher-kva.{ZONE}\n"
        f"127.0.0.2 rebind.{ZONE}\n"
    )
    rebind = f"127.0.0.1 xn--bcher-kva.{ZONE}\n"
    launches = [
        (f"http://straße.{ZONE}:{port}/r.git", None),
        (f"http://ＳＴＲＡßＥ.{ZONE}:{port}/r.git", None),
        (f"http://%78n--strae-oqa.{ZONE}:{port}/r.git", None),
        (f"http://１２７.０.０.１:{port}/r.git", None),
        (f"http://2130706433:{port}/r.git", None),
        (f"http://strasse.{ZONE}:{port}/r.git", None),
        # checked at 127.0.0.2, then the name moves to 127.0.0.1: git must stay pinned
        (f"http://bücher.{ZONE}:{port}/r.git", rebind),
    ]
    out = namedhosts.run_with_hosts(hosts, LAUNCH, {
        "hosts": str(hosts), "mirrors": str(tmp_path / "mirrors"), "launches": launches})
    got = {url: out[url] for url, _ in launches}
    idn, full_width, percent, wide_ip, number, plain, pinned = (got[u] for u, _ in launches)
    assert idn["status"] == 403 and "127.0.0.1" in idn["message"], idn
    assert full_width["status"] == 403 and "127.0.0.1" in full_width["message"], full_width
    assert percent["status"] == 400 and "ercent" in percent["message"], percent
    assert wide_ip["status"] == 403, wide_ip
    assert number["status"] == 403, number
    assert plain["commit"] == commits["allowed"], plain
    assert pinned["commit"] == commits["allowed"], pinned
    assert pinned["clone_url"] == f"http://xn--bcher-kva.{ZONE}:{port}/r.git"
    # the internal service never saw a single request, whatever the spelling
    assert internal.requests == []
    assert allowed.requests, "the allowed host was never contacted: the test proves nothing"
