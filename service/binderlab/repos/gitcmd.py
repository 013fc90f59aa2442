"""Run git safely on user-supplied URLs and refs.

Every user value goes after ``--`` so git can never read it as an option
(CVE-2021-39159: a ref like ``--upload-pack=<cmd>`` ran a command on BinderHub hosts).
``GIT_ALLOW_PROTOCOL`` makes git itself refuse any transport the operator did not allow,
including ``ext::`` and ``file://``, for redirects and submodules too.
"""

import asyncio
import os

from binderlab.contract import COMMIT_RE
from binderlab.errors import LaunchError
from binderlab.platform import process

SHA_RE = COMMIT_RE  # a full commit: one definition, in the contract


NEVER_ALLOWED = {"file", "ext"}


def git_env(allowed_protocols: list[str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k == "GIT_SSL_CAINFO"
    }
    # GIT_ALLOW_PROTOCOL overrides protocol.file.allow: file and ext stay out whatever the
    # configuration says
    protocols = [p for p in allowed_protocols if p.lower() not in NEVER_ALLOWED]
    env.update(
        GIT_ALLOW_PROTOCOL=":".join(protocols),
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_ASKPASS="/bin/false",
        GIT_SSH_COMMAND="/bin/false",
    )
    return env


async def run_git(*args: str, env: dict[str, str], timeout: float, cwd: str | None = None,
                  config: tuple[str, ...] = ()) -> str:
    """Run ``git args...``; return stdout, raise GitError with stderr on failure.

    ``config``: extra ``name=value`` settings (-c), e.g. a pinned address.
    """
    proc = await asyncio.create_subprocess_exec(
        "git",
        # Redirects are not followed: a public host could send us to a private one (SSRF).
        "-c",
        "http.followRedirects=false",
        "-c",
        "protocol.file.allow=never",
        *(arg for setting in config for arg in ("-c", setting)),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        # git runs helpers (git-remote-http) that hold its pipes open: a timeout must stop
        # the whole group, or waiting for the pipes blocks until the server hangs up
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await kill_group(proc)
        raise GitError(f"git {args[0]} took longer than {timeout:g} s", 504) from None
    except asyncio.CancelledError:
        await kill_group(proc)
        raise
    if proc.returncode != 0:
        raise GitError(err.decode(errors="replace").strip() or f"git {args[0]} failed")
    return out.decode(errors="replace")


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    process.kill_group(proc)
    await proc.wait()


class GitError(LaunchError):
    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message, status_code)


def check_ref(ref: str) -> None:
    """Refuse refs git would misread or reject, before any git command sees them.

    The rules of `git check-ref-format`, plus: no leading '-' (CVE-2021-39159).
    """
    if not ref:
        raise LaunchError("The ref is empty.", 400)
    if ref.startswith("-"):
        raise LaunchError(f"Invalid ref {ref!r}: a ref cannot start with '-'.", 400)
    parts = ref.split("/")
    if (
        any(ord(c) < 32 or ord(c) == 127 or c in " ~^:?*[\\" for c in ref)
        or ".." in ref
        or "@{" in ref
        or ref == "@"
        or ref.endswith((".", "/", ".lock"))
        or ref.startswith("/")
        or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)
    ):
        raise LaunchError(f"Invalid ref {ref!r}: not a valid git branch, tag or commit.", 400)


def pick_ref(ls_remote_output: str, ref: str) -> str | None:
    """Choose the commit for ``ref`` from ``git ls-remote`` output.

    Branches win over tags (as for ``git checkout``); an annotated tag resolves to the
    commit it points at (the ``^{}`` line).
    """
    refs = {}
    for line in ls_remote_output.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        # an annotated tag's own line names the tag object; its "^{}" line the commit
        for candidate in (f"{name}^{{}}", name):
            if candidate in refs:
                return refs[candidate]
    return None


def pin_config(host: str, port: int, address: str | None) -> tuple[str, ...]:
    """git settings that make it connect to ``address`` for ``host:port`` (no new lookup)."""
    if not address:
        return ()
    if ":" in address:
        address = f"[{address}]"
    return (f"http.curloptResolve={host}:{port}:{address}",)
