"""Run git safely on user-supplied URLs and refs.

Every user value goes after ``--`` so git can never read it as an option
(CVE-2021-39159: a ref like ``--upload-pack=<cmd>`` ran a command on BinderHub hosts).
``GIT_ALLOW_PROTOCOL`` makes git itself refuse any transport the operator did not allow,
including ``ext::`` and ``file://``, for redirects and submodules too.
"""

import asyncio
import os
import re

from .errors import LaunchError

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def git_env(allowed_protocols: list[str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k == "GIT_SSL_CAINFO"
    }
    env.update(
        GIT_ALLOW_PROTOCOL=":".join(allowed_protocols),
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_ASKPASS="/bin/false",
        GIT_SSH_COMMAND="/bin/false",
    )
    return env


async def run_git(*args: str, env: dict[str, str], timeout: float, cwd: str | None = None) -> str:
    """Run ``git args...``; return stdout, raise GitError with stderr on failure."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        # Redirects are not followed: a public host could send us to a private one (SSRF).
        "-c",
        "http.followRedirects=false",
        "-c",
        "protocol.file.allow=never",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} took longer than {timeout:g} s") from None
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise GitError(err.decode(errors="replace").strip() or f"git {args[0]} failed")
    return out.decode(errors="replace")


class GitError(LaunchError):
    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message, status_code)


def check_ref(ref: str) -> None:
    """Refuse refs git would misread or reject, before any git command sees them."""
    if not ref:
        raise LaunchError("The ref is empty.", 400)
    if ref.startswith("-"):
        raise LaunchError(f"Invalid ref {ref!r}: a ref cannot start with '-'.", 400)
    if any(ord(c) < 32 or c in " ~^:?*[\\" for c in ref) or ".." in ref or ref.endswith(".lock"):
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
    for name in (
        ref,
        f"refs/heads/{ref}",
        f"refs/tags/{ref}^{{}}",
        f"refs/tags/{ref}",
    ):
        if name in refs:
            return refs[name]
    return None
