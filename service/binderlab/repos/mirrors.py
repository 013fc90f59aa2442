"""Local copies of the repositories being launched.

One bare mirror per clone URL under ``<state_dir>/git/``; a launch fetches exactly the
resolved commit into it (shallow where the server allows), then reads the tree hash and
exports the files from there. Nothing from a repository is ever executed here.
"""

import asyncio
import hashlib
import os
import secrets
import shutil
import tarfile
from pathlib import Path

from binderlab.errors import LaunchError
from binderlab.repos import gitcmd

BROKEN_LINK_TARGET = "/nonexistent/binderlab-link-outside-the-repository"
LOW_DISK_BYTES = 64 << 20


class RepoMirrors:
    def __init__(self, root: Path, timeout: float):
        self.root = root
        # local operations need no transport at all
        self.env = gitcmd.git_env([])
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}

    def _path(self, clone_url: str) -> Path:
        return self.root / (hashlib.sha256(clone_url.encode()).hexdigest()[:24] + ".git")

    def path_for(self, clone_url: str) -> Path:
        """Where the mirror of ``clone_url`` lives (archive providers import into it)."""
        return self._path(clone_url)

    async def _git(self, path: Path, *args: str, env: dict | None = None,
                   config: tuple[str, ...] = ()) -> str:
        return await gitcmd.run_git(
            f"--git-dir={path}", *args, env=env or self.env, timeout=self.timeout,
            config=config,
        )

    async def fetch(self, clone_url: str, commit: str, allowed_protocols: list[str],
                    config: tuple[str, ...] = (), reachable_only: bool = False) -> Path:
        """Make sure ``commit`` is in the mirror of ``clone_url``; return the mirror's path.

        Only ``allowed_protocols`` may be used to reach ``clone_url`` (GIT_ALLOW_PROTOCOL).
        ``reachable_only``: the commit must be in the history of a branch or tag the
        repository advertises (see ``check_reachable``); LaunchError(404) otherwise.
        """
        if reachable_only:
            await self.check_reachable(clone_url, commit, allowed_protocols, config)
        env = gitcmd.git_env(allowed_protocols)
        path = self._path(clone_url)
        lock = self._locks.setdefault(str(path), asyncio.Lock())
        async with lock:
            await self._init(path)
            if await self.has_commit(path, commit):
                return path
            try:
                try:
                    await self._git(path, "fetch", "-q", "--no-tags", "--depth=1", "--",
                                    clone_url, commit, env=env, config=config)
                except gitcmd.GitError as e:
                    if "shallow" not in str(e):
                        raise
                    # dumb HTTP servers cannot do shallow fetches
                    await self._git(path, "fetch", "-q", "--no-tags", "--", clone_url,
                                    commit, env=env, config=config)
            except gitcmd.GitError as e:
                self._drop_partial_objects(path)
                if shutil.disk_usage(self.root).free < LOW_DISK_BYTES:
                    raise LaunchError("This server is out of disk space; the operator has "
                                      "been told (see /health). Try again later.", 507) \
                        from None
                raise LaunchError(f"Could not fetch commit {commit}: {e}", 404) from None
            if not await self.has_commit(path, commit):
                raise LaunchError(f"Commit {commit} is not in {clone_url}.", 404)
        return path

    async def _init(self, path: Path) -> None:
        """Create the bare mirror at ``path`` unless it exists (under the mirror's lock)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            await gitcmd.run_git("init", "--bare", "-q", "--", str(path), env=self.env,
                                 timeout=self.timeout)

    async def check_reachable(self, clone_url: str, commit: str,
                              allowed_protocols: list[str], config: tuple[str, ...]) -> None:
        """Refuse a commit that no branch or tag of ``clone_url`` contains.

        GitHub (and GitLab) serve every commit of every fork, and pull-request heads, through
        the parent's URL: ``gh/allowed-org/repo/<sha of a fork commit>`` would run a fork's
        code under an allowed name and its GPU policy. So the branches and tags (only those:
        refs/pull/* are forks' commits) are fetched with their history into the mirror under
        refs/binderlab/, pruned so a deleted branch stops counting, and the commit must be
        an ancestor of one of them.
        """
        path = self._path(clone_url)
        lock = self._locks.setdefault(str(path), asyncio.Lock())
        async with lock:
            await self._init(path)
            if await self._contained(path, commit):
                return
            try:
                await self._git(path, "fetch", "-q", "--prune", "--no-tags", "--", clone_url,
                                "+refs/heads/*:refs/binderlab/heads/*",
                                "+refs/tags/*:refs/binderlab/tags/*",
                                env=gitcmd.git_env(allowed_protocols), config=config)
            except gitcmd.GitError as e:
                self._drop_partial_objects(path)
                raise LaunchError(f"Could not fetch the branches of {clone_url}: {e}", 404) \
                    from None
            if not await self._contained(path, commit):
                raise LaunchError(
                    f"Commit {commit} is not on any branch or tag of {clone_url}. Hosts serve "
                    "commits of forks and pull requests through the parent repository's URL; "
                    "this server launches a commit only under the repository it belongs to: "
                    "launch it from the fork.", 404)

    async def _contained(self, path: Path, commit: str) -> bool:
        try:
            out = await self._git(path, "for-each-ref", "--count=1", f"--contains={commit}",
                                  "--format=%(refname)", "refs/binderlab/")
        except gitcmd.GitError:  # the commit is not here at all
            return False
        return bool(out.strip())

    @staticmethod
    def _drop_partial_objects(path: Path) -> None:
        """A failed fetch can leave half-written objects behind (dumb HTTP's *.temp,
        tmp_* packs); they would break every later fetch of the repository."""
        for pattern in ("objects/**/*.temp", "objects/**/tmp_*", "objects/pack/tmp_*"):
            for leftover in path.glob(pattern):
                leftover.unlink(missing_ok=True)

    async def has_commit(self, path: Path, commit: str) -> bool:
        try:
            await self._git(path, "cat-file", "-e", f"{commit}^{{commit}}")
            return True
        except gitcmd.GitError:
            return False

    async def read_file(self, path: Path, commit: str, name: str, limit: int) -> bytes | None:
        """A file of ``commit`` (None if absent or over ``limit`` bytes)."""
        try:
            size = int(await self._git(path, "cat-file", "-s", f"{commit}:{name}"))
        except (gitcmd.GitError, ValueError):
            return None
        if size > limit:
            return None
        return (await self._git(path, "cat-file", "blob", f"{commit}:{name}")).encode()

    async def has_dir(self, path: Path, commit: str, name: str) -> bool:
        try:
            kind = await self._git(path, "cat-file", "-t", f"{commit}:{name.rstrip('/')}")
        except gitcmd.GitError:
            return False
        return kind.strip() == "tree"

    async def tree_hash(self, path: Path, commit: str) -> str:
        return (await self._git(path, "rev-parse", f"{commit}^{{tree}}")).strip()

    async def archive(self, path: Path, commit: str, target: Path) -> None:
        """Write the files of ``commit`` as an uncompressed tar (``git archive``) to
        ``target``, streamed: a large repository never sits in the service's memory."""
        # one partial file per writer: two launches of one commit may write it at once
        partial = target.with_name(f"{target.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        with open(partial, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                "git", f"--git-dir={path}", "archive", "--format=tar", commit,
                stdout=out, stderr=asyncio.subprocess.PIPE, env=self.env,
                start_new_session=True,
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
            except TimeoutError:
                await gitcmd.kill_group(proc)
                partial.unlink(missing_ok=True)
                raise LaunchError(f"Reading the repository's files took longer than "
                                  f"{self.timeout:g} s.", 504) from None
            except asyncio.CancelledError:
                await gitcmd.kill_group(proc)
                partial.unlink(missing_ok=True)
                raise
        if proc.returncode:
            partial.unlink(missing_ok=True)
            raise LaunchError(f"git archive failed: {err.decode(errors='replace')}", 500)
        partial.replace(target)  # atomic: readers never see half an archive

    async def export(self, path: Path, commit: str, dest: Path,
                     outside_links: str = "keep") -> None:
        """Write the files of ``commit`` into ``dest`` (a new directory).

        Symbolic links that point outside the repository (common: a data folder on the
        author's machine) are kept as links, as repo2docker's build context keeps them
        (never followed). ``outside_links="break"`` re-points them at a path that does not
        exist, for checkouts this service itself reads (the fingerprint), so nothing
        outside the checkout can ever be read through them.
        """
        dest.mkdir(parents=True, exist_ok=True)
        tar_path = dest.parent / f".{dest.name}.tar"
        await self.archive(path, commit, tar_path)

        def extract():
            try:
                with tarfile.open(tar_path) as tar:
                    # "tar" filter: no absolute or escaping member paths, no writes through
                    # links; links themselves may point anywhere
                    tar.extractall(dest, filter="tar")
            finally:
                tar_path.unlink(missing_ok=True)
            if outside_links == "break":
                root = dest.resolve()
                for link in [p for p in dest.rglob("*") if p.is_symlink()]:
                    try:
                        target = (link.parent / os.readlink(link)).resolve()
                    except (RuntimeError, OSError):
                        # a loop (`ln -s loop loop`) leads nowhere: it cannot be followed,
                        # so it is broken like a link that leaves the repository
                        target = None
                    if target is None or (target != root and root not in target.parents):
                        link.unlink()
                        link.symlink_to(BROKEN_LINK_TARGET)

        try:
            await asyncio.get_running_loop().run_in_executor(None, extract)
        except tarfile.TarError as e:
            raise LaunchError(f"The repository's files cannot be unpacked: {e}", 400) \
                from None
        os.chmod(dest, 0o755)

    async def checkout_size(self, path: Path, commit: str) -> int:
        """Bytes the files of ``commit`` take once checked out (from git's tree listing)."""
        return (await self.checkout_stats(path, commit))[1]

    async def checkout_stats(self, path: Path, commit: str) -> tuple[int, int]:
        """(entries, bytes) of the files of ``commit`` once checked out, from git's tree
        listing alone: nothing is written to learn it."""
        out = await self._git(path, "ls-tree", "-r", "-l", "-z", "--full-tree", commit)
        count = total = 0
        for entry in out.split("\0"):
            meta = entry.split("\t", 1)[0].split()
            if len(meta) < 4:
                continue
            count += 1
            total += int(meta[3]) if meta[3].isdigit() else 0
        return count, total
