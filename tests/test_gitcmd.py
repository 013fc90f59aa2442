"""gitcmd: ref checks, picking a commit from `git ls-remote` output, and the git
environment that keeps user values from being run (CVE-2021-39159). Real git, no network."""

import asyncio
import socket
import subprocess

import pytest

from binderlab.errors import LaunchError
from binderlab.repos import gitcmd

SHA_A = "a" * 40
SHA_B = "b" * 40


# the ref rules themselves: the shared table in tests/git_ref_cases.json
# (tests/test_git_ref_cases.py), which the web form's tests run too


LS_REMOTE = "\n".join(
    [
        f"{'1' * 40}\tHEAD",
        f"{'2' * 40}\trefs/heads/main",
        f"{'3' * 40}\trefs/heads/feature/main",
        f"{'4' * 40}\trefs/heads/both",
        f"{'5' * 40}\trefs/tags/both",
        f"{'6' * 40}\trefs/tags/annotated",
        f"{'7' * 40}\trefs/tags/annotated^{{}}",
        f"{'8' * 40}\trefs/tags/light",
        f"{'9' * 40}\trefs/tags/sub/main",
    ]
)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("HEAD", "1" * 40),
        ("main", "2" * 40),
        ("feature/main", "3" * 40),
        ("both", "4" * 40),  # a branch wins over a tag of the same name, as for checkout
        ("annotated", "7" * 40),  # the peeled commit, not the tag object
        ("light", "8" * 40),
        ("refs/heads/main", "2" * 40),
        ("refs/tags/light", "8" * 40),
        ("missing", None),
        ("eature/main", None),  # ls-remote matches by tail; pick_ref must be exact
        pytest.param(
            "refs/tags/annotated",
            "7" * 40,
        ),
    ],
)
def test_pick_ref(ref, expected):
    assert gitcmd.pick_ref(LS_REMOTE, ref) == expected


def test_pick_ref_only_tail_matches_are_not_picked():
    # `git ls-remote URL main` also lists refs/heads/feature/main and refs/tags/sub/main
    out = f"{SHA_A}\trefs/heads/feature/main\n{SHA_B}\trefs/tags/sub/main\n"
    assert gitcmd.pick_ref(out, "main") is None


def test_pick_ref_empty_output():
    assert gitcmd.pick_ref("", "main") is None
    assert gitcmd.pick_ref("", "HEAD") is None


@pytest.mark.parametrize(
    ("protocols", "expected"),
    [(["https"], "https"), (["https", "http"], "https:http"), ([], "")],
)
def test_git_env_allow_protocol(protocols, expected):
    env = gitcmd.git_env(protocols)
    assert env["GIT_ALLOW_PROTOCOL"] == expected


def test_git_env_never_prompts_and_drops_inherited_git_variables(monkeypatch):
    monkeypatch.setenv("GIT_DIR", "/somewhere/else")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.sshcommand'='touch /tmp/pwned'")
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ext:file")
    monkeypatch.setenv("GIT_SSL_CAINFO", "/etc/ssl/ca.pem")
    monkeypatch.setenv("BINDERLAB_UNRELATED", "kept")
    env = gitcmd.git_env(["https"])
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_ASKPASS"] == "/bin/false"
    assert env["GIT_SSH_COMMAND"] == "/bin/false"
    assert env["GIT_ALLOW_PROTOCOL"] == "https"
    assert "GIT_DIR" not in env
    assert "GIT_CONFIG_PARAMETERS" not in env
    assert env["GIT_SSL_CAINFO"] == "/etc/ssl/ca.pem"
    assert env["BINDERLAB_UNRELATED"] == "kept"


def test_git_env_never_allows_file_or_ext():
    assert gitcmd.git_env(["https", "file", "ext"])["GIT_ALLOW_PROTOCOL"] == "https"


def _ext_url(marker) -> str:
    # ext:: splits its command on spaces; '% ' is a literal space
    return f"ext::sh -c touch% {marker}"


async def test_run_git_refuses_ext_transport(tmp_path):
    marker = tmp_path / "MARKER"
    with pytest.raises(gitcmd.GitError) as info:
        await gitcmd.run_git(
            "ls-remote", "--", _ext_url(marker), "HEAD",
            env=gitcmd.git_env(["https"]), timeout=10,
        )
    assert "not allowed" in str(info.value)
    assert not marker.exists()


async def test_run_git_ext_control_does_run_when_allowed(tmp_path):
    """Control for the test above: the same URL does run its command once ext is allowed."""
    marker = tmp_path / "MARKER"
    env = gitcmd.git_env(["https"]) | {"GIT_ALLOW_PROTOCOL": "ext"}
    with pytest.raises(gitcmd.GitError):
        await gitcmd.run_git("ls-remote", "--", _ext_url(marker), "HEAD", env=env, timeout=10)
    assert marker.exists()


@pytest.fixture(scope="module")
def local_bare_repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "plain-path"])
async def test_run_git_refuses_local_repositories(local_bare_repo, as_url):
    target = f"file://{local_bare_repo}" if as_url else str(local_bare_repo)
    with pytest.raises(gitcmd.GitError) as info:
        await gitcmd.run_git(
            "ls-remote", "--", target, env=gitcmd.git_env(["https"]), timeout=10
        )
    assert "not allowed" in str(info.value)


async def test_run_git_option_after_double_dash_is_not_an_option(tmp_path):
    marker = tmp_path / "MARKER"
    with pytest.raises(gitcmd.GitError):
        await gitcmd.run_git(
            "ls-remote", "--", f"--upload-pack=touch {marker}", "HEAD",
            env=gitcmd.git_env(["https"]), timeout=10,
        )
    assert not marker.exists()


async def test_run_git_failure_is_a_launch_error_with_stderr():
    with pytest.raises(gitcmd.GitError) as info:
        await gitcmd.run_git("no-such-subcommand", env=gitcmd.git_env([]), timeout=10)
    assert isinstance(info.value, LaunchError)
    assert info.value.status_code == 400
    assert "no-such-subcommand" in str(info.value)


async def test_run_git_returns_stdout():
    out = await gitcmd.run_git("--version", env=gitcmd.git_env([]), timeout=10)
    assert out.startswith("git version ")


async def test_run_git_timeout_kills_git():
    # A listening socket that never answers: git connects, sends its request and waits.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/repo"
        call = gitcmd.run_git("ls-remote", "--", url, env=gitcmd.git_env(["http"]), timeout=0.5)
        # the outer limit keeps a hang from stalling the suite (it fails as TimeoutError)
        with pytest.raises(gitcmd.GitError) as info:
            await asyncio.wait_for(call, 2)
    assert "took longer than 0.5 s" in str(info.value)


async def test_pinned_address_is_used_instead_of_a_new_lookup(tmp_path):
    """DNS rebinding: git must connect to the address that was checked. A name that does
    not resolve at all still reaches the local server when its address is pinned."""
    from tests.harness.gitserver import GitServer

    server = GitServer(tmp_path)
    try:
        repo = server.create("dockerfile")
        port = int(server.url.rsplit(":", 1)[1])
        url = repo.url.replace("127.0.0.1", "pinned.invalid")
        env = gitcmd.git_env(["http"])
        with pytest.raises(gitcmd.GitError):
            await gitcmd.run_git("ls-remote", "--", url, env=env, timeout=20)
        out = await gitcmd.run_git("ls-remote", "--", url, env=env, timeout=20,
                                   config=gitcmd.pin_config("pinned.invalid", port,
                                                            "127.0.0.1"))
        assert "refs/heads/main" in out
    finally:
        server.close()
