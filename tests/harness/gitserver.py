"""A git host on 127.0.0.1 for tests and benchmarks: "dumb HTTP" over a static file server.

Repositories are published as bare repositories under <root>/<owner>/<name>, so the
service's `gh` provider (host = this server) clones them as <host>/<owner>/<name>.
"""

import os
import shutil
import subprocess
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPOS_DIR = Path(__file__).resolve().parent.parent / "repos"
DEFAULT_BASE = "binderlab-test/base:latest"  # what tests/repos/*/Dockerfile start FROM
GIT_ENV = {
    "GIT_AUTHOR_NAME": "binderlab tests", "GIT_AUTHOR_EMAIL": "tests@binderlab.invalid",
    "GIT_COMMITTER_NAME": "binderlab tests", "GIT_COMMITTER_EMAIL": "tests@binderlab.invalid",
    "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp",
}


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class TestRepo:
    """A work tree whose commits are published to the test git server."""

    def __init__(self, server: "GitServer", owner: str, name: str):
        self.server, self.owner, self.name = server, owner, name
        self.work = server.root.parent / "work" / owner / name
        self.bare = server.root / owner / name

    @property
    def url(self) -> str:
        return f"{self.server.url}/{self.owner}/{self.name}"

    @property
    def gh_spec(self) -> str:
        return f"{self.owner}/{self.name}"

    def commit(self, files: dict[str, str | None], message: str = "change",
               branch: str = "main") -> str:
        """Write (or delete, for None) files, commit, publish; return the commit SHA."""
        git("checkout", "-q", "-B", branch, cwd=self.work)
        for path, content in files.items():
            target = self.work / path
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "--force", str(self.bare), f"{branch}:{branch}", cwd=self.work)
        git("update-server-info", cwd=self.bare)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str) -> None:
        git("tag", "-f", name, cwd=self.work)
        git("push", "-q", "--force", str(self.bare), f"refs/tags/{name}", cwd=self.work)
        git("update-server-info", cwd=self.bare)


class GitServer:
    def __init__(self, root: Path):
        self.root = root / "srv"
        self.root.mkdir(parents=True, exist_ok=True)
        handler = partial(_Quiet, directory=str(self.root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def create(self, case: str, owner: str = "test", name: str | None = None,
               unique: bool = True) -> TestRepo:
        """Publish tests/repos/<case> as a new repository.

        ``unique`` adds a file with a random value, so the tree (and image) is new: a test
        then sees a real first build even when the engine keeps images from earlier runs.
        """
        repo = TestRepo(self, owner, name or f"{case}-{uuid.uuid4().hex[:8]}")
        shutil.copytree(REPOS_DIR / case, repo.work)
        base = os.environ.get("BINDERLAB_TEST_BASE_IMAGE", DEFAULT_BASE)
        dockerfile = repo.work / "Dockerfile"
        if base != DEFAULT_BASE and dockerfile.is_file():  # the harness's other base image
            dockerfile.write_text(dockerfile.read_text().replace(f"FROM {DEFAULT_BASE}",
                                                                 f"FROM {base}"))
        if unique:
            (repo.work / ".binderlab-test-id").write_text(uuid.uuid4().hex)
        git("init", "-q", "-b", "main", cwd=repo.work)
        repo.bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", str(repo.bare), cwd=repo.work.parent)
        repo.commit({}, message=f"{case}: initial")
        return repo

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
