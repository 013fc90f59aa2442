"""The state disk: what a repository may write there, and clean-up when it is full.

A repository costs the state disk three things: its git mirror (``git/``), the content
archive of each launched commit (``content/<commit>.tar``) and a temporary checkout while
it is fingerprinted. The same disk holds the hub database and the cache index, so:

- a commit's file count and size are read from its tree (``git ls-tree -r -l``) before a
  single file is exported, and refused (413) over ``max_repo_files`` or the size limit; a
  mirror created only for a refused commit is removed again;
- free space is checked before anything is written (507 under ``min_free_mb``);
- archives and mirrors together stay under ``budget_gb``: over it, the least recently used
  are deleted, never one that a launch in progress holds (``Lease``).
"""

import asyncio
import os
import shutil
from collections import Counter
from pathlib import Path

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from binderlab.errors import LaunchError
from binderlab.platform import metrics


def _entry_bytes(path: Path) -> int:
    """Disk bytes of a file or a directory tree (allocated blocks, so empty files count)."""
    try:
        if not path.is_dir():
            return path.lstat().st_blocks * 512
        total = 0
        for root, _, files in os.walk(path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
        return total
    except OSError:
        return 0


class Lease:
    """Paths one launch uses; the budget does not delete them until it is released."""

    def __init__(self, budget: "RepoDiskBudget"):
        self._budget = budget
        self._paths: list[str] = []

    def hold(self, *paths: Path) -> None:
        for path in paths:
            self._paths.append(str(path))
            self._budget._held[str(path)] += 1

    def release(self) -> None:
        for path in self._paths:
            self._budget._held[path] -= 1
            if self._budget._held[path] <= 0:
                del self._budget._held[path]
        self._paths.clear()


class RepoDiskBudget(LoggingConfigurable):
    """Limits on what repositories write to the state disk (see the module docstring)."""

    budget_gb = Float(
        20,
        help="""Disk space (GB) git mirrors and content archives may use together
        (default 20); 0 means no limit. Over it, the least recently used are deleted, never
        one a launch in progress uses; a later launch fetches them again.""",
    ).tag(config=True)

    max_repo_files = Integer(
        100_000,
        help="""Most files (and links) one commit may hold (default 100000); 0: no limit.
        Counted from the git tree before anything is written; more gets a 413.""",
    ).tag(config=True)

    min_free_mb = Integer(
        1024,
        help="""Free space (MB) the state disk keeps (default 1024): a fetch, checkout or
        content archive that would leave less is refused with a 507, so the hub database
        and the cache index on the same disk can still be written.""",
    ).tag(config=True)

    def __init__(self, mirrors_dir: Path, content_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.mirrors_dir = Path(mirrors_dir)
        self.content_dir = Path(content_dir)
        self._held: Counter[str] = Counter()
        self._cleaning = asyncio.Lock()
        self.deleted = 0  # entries deleted by the budget so far (for the log and tests)

    def lease(self) -> Lease:
        return Lease(self)

    def in_use_by_others(self, path: Path) -> bool:
        """Whether launches other than the caller's (which holds ``path`` once) use it."""
        return self._held.get(str(path), 0) > 1

    def check_tree(self, files: int, size: int, max_bytes: int) -> None:
        """Refuse a commit by what its tree says it holds (before anything is exported)."""
        if self.max_repo_files and files > self.max_repo_files:
            metrics.DISK_REFUSALS.labels("files").inc()
            raise LaunchError(f"This repository has {files} files, more than the "
                              f"{self.max_repo_files} this host accepts.", 413)
        if max_bytes and size > max_bytes:
            metrics.DISK_REFUSALS.labels("size").inc()
            raise LaunchError(f"This repository's files take {size / 1e6:.0f} MB, more than "
                              f"the {max_bytes / 1e6:.0f} MB this host accepts.", 413)

    def check_free(self, directory: Path, need: int = 0) -> None:
        """Refuse a write of about ``need`` bytes that would leave under ``min_free_mb``."""
        directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(directory).free
        if free - need < self.min_free_mb * 1e6:
            metrics.DISK_REFUSALS.labels("free_space").inc()
            self.log.warning("State disk low: %.0f MB free, a launch needs %.0f MB more "
                             "(min_free_mb %d)", free / 1e6, need / 1e6, self.min_free_mb)
            raise LaunchError("This server is low on disk space; the operator has been told "
                              "(see /health). Try again later.", 507)

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every mirror and archive."""
        found = []
        for folder, pattern in ((self.mirrors_dir, "*.git"), (self.content_dir, "*.tar")):
            if not folder.is_dir():
                continue
            for path in folder.glob(pattern):
                try:
                    used = path.stat().st_mtime
                except OSError:
                    continue
                found.append((used, _entry_bytes(path), path))
        return found

    async def enforce(self) -> int:
        """Delete least recently used mirrors and archives until under budget; returns the
        bytes freed. Runs off the event loop (it walks the mirrors)."""
        if not self.budget_gb:
            return 0
        async with self._cleaning:
            return await asyncio.get_running_loop().run_in_executor(None, self._enforce)

    def _enforce(self) -> int:
        entries = sorted(self.entries(), key=lambda e: e[0])
        total = sum(size for _, size, _ in entries)
        metrics.REPO_DISK_BYTES.set(total)
        freed = 0
        for _, size, path in entries:
            if total - freed <= self.budget_gb * 1e9:
                break
            if str(path) in self._held:
                continue
            self.log.info("Repository disk budget: deleting %s (%.1f MB, least recently "
                          "used)", path.name, size / 1e6)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            freed += size
            self.deleted += 1
        metrics.REPO_DISK_BYTES.set(total - freed)
        if total - freed > self.budget_gb * 1e9:
            self.log.warning("Repository disk budget exceeded (%.1f GB) by entries in use",
                             (total - freed) / 1e9)
        return freed
