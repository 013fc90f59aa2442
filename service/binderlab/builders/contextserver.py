"""The build-context server: how build pods get the context the service prepared.

The service serves each build's context (environment files only for an env-keyed image,
the whole commit for a tree-keyed one) over HTTP from this small server of its own, at an
unguessable URL that lives as long as the build. Build pods fetch the context from here and
clone nothing themselves, so the SSRF guard and the fingerprint's view of the repository stay
in the service. (Session pods are another matter: their content-overlay init container runs
a shallow `git fetch` of the commit, see spawners/kubernetes.py.)
"""

import asyncio
import secrets
import tarfile
from pathlib import Path

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


class _ContextHandler(tornado.web.RequestHandler):
    def initialize(self, contexts: dict[str, Path]):
        self.contexts = contexts

    async def get(self, token: str):
        path = self.contexts.get(token)
        if path is None or not path.exists():
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "application/gzip")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                self.write(chunk)
                await self.flush()

    def log_exception(self, typ, value, tb):  # a 404 for a stale token is not news
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)


class ContextServer:
    """Serve build contexts to build pods, each at an unguessable URL, while it builds."""

    def __init__(self, ip: str, port: int):
        self.ip = ip
        self.port = port
        self.contexts: dict[str, Path] = {}
        self.server = None

    def start(self) -> None:
        if self.server is not None:
            return
        app = tornado.web.Application(
            [(r"/context/([A-Za-z0-9_-]+)\.tar\.gz", _ContextHandler,
              {"contexts": self.contexts})], log_function=lambda handler: None)
        sockets = bind_sockets(self.port, self.ip)
        self.port = sockets[0].getsockname()[1]  # the one the OS picked for port 0
        self.server = HTTPServer(app)
        self.server.add_sockets(sockets)

    async def add(self, context: Path, archive: Path) -> str:
        """Pack ``context`` into ``archive`` and return the token it is served under."""
        await asyncio.get_running_loop().run_in_executor(None, _pack, context, archive)
        token = secrets.token_urlsafe(32)
        self.contexts[token] = archive
        return token

    def remove(self, token: str) -> None:
        archive = self.contexts.pop(token, None)
        if archive is not None:
            archive.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _pack(context: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(context.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(context)), recursive=False)
