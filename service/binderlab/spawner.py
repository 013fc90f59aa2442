"""The JupyterHub spawner for binderlab sessions (loaded by the hub, see jupyterhub_config.py).

It runs only images that binderlab built, and in anonymous mode starts the image's own
Jupyter server with the launch token instead of hub authentication (temporary users cannot
log in to the hub; see PROTOCOL.md, "How the session checks that token").
"""

import asyncio
import io
import os
import re
import tarfile
from pathlib import Path

import docker.errors
from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Float, List, Unicode, default

from .builder import LABEL_KEY, LABEL_KIND, LABEL_UID

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class BinderLabSpawner(DockerSpawner):
    image_prefix = Unicode(
        "binderlab/",
        help="Only images whose name starts with this prefix (and that carry binderlab's "
        "labels) can be started. Must match c.BinderLab.image_prefix.",
    ).tag(config=True)

    anonymous = Bool(
        True,
        help="""Anonymous mode (default): run the image's Jupyter server with the launch token
        from user_options instead of jupyterhub-singleuser and hub login.""",
    ).tag(config=True)

    allow_origin = Unicode(
        "*",
        help="""Origins allowed to call the session's Jupyter API from a browser (CORS).

        '*' (default) lets course pages on any site run cells with thebe; set a single
        origin to restrict it.""",
    ).tag(config=True)

    content_dir = Unicode(
        help="""Where the binder service leaves each commit's files (<commit>.tar) for the
        content overlay of environment-keyed images. `binderlab up` sets it.""",
    ).tag(config=True)

    server_poll_interval = Float(
        0.05, help="Seconds between checks that a starting session answers (default 0.05)."
    ).tag(config=True)

    @default("content_dir")
    def _default_content_dir(self):
        return os.environ.get("BINDERLAB_CONTENT_DIR", "")

    server_command = List(
        Unicode(),
        default_value=["jupyter", "lab"],
        help="Command starting the session's Jupyter server in anonymous mode; binderlab "
        "adds --ip, --port, --ServerApp.base_url and the CORS options.",
    ).tag(config=True)

    async def check_allowed(self, image):
        """Refuse any image that binderlab did not build (the hub API is reachable by users)."""
        if not isinstance(image, str) or not image.startswith(self.image_prefix):
            raise web.HTTPError(403, f"Image {image!r} was not built by binderlab.")
        try:
            info = await self.docker("inspect_image", image)
        except docker.errors.ImageNotFound:
            raise web.HTTPError(404, f"Image {image} does not exist.") from None
        labels = (info.get("Config") or {}).get("Labels") or {}
        key = labels.get(LABEL_KEY, "")
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        if not key or not repository.endswith(key):
            raise web.HTTPError(403, f"Image {image!r} was not built by binderlab.")
        return image

    async def create_object(self):
        """Create the container; for an environment-keyed image, copy the requested commit's
        files into the repository directory (as the notebook user) before it starts."""
        obj = await super().create_object()
        info = await self.docker("inspect_image", self.image)
        config = info.get("Config") or {}
        labels = config.get("Labels") or {}
        if labels.get(LABEL_KIND) == "env":
            try:
                await self.overlay_content(obj["Id"], config, labels)
            except Exception:
                await self.docker("remove_container", obj["Id"], force=True)
                raise
        return obj

    async def overlay_content(self, container_id: str, config: dict, labels: dict) -> None:
        commit = str(self.user_options.get("content", ""))
        if not re.fullmatch(r"[0-9a-f]{40}", commit) or not self.content_dir:
            raise web.HTTPError(400, "This image needs the repository content (a commit).")
        archive = Path(self.content_dir) / f"{commit}.tar"
        if not archive.is_file():
            raise web.HTTPError(404, f"The content of commit {commit} is not available.")
        env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
        repo_dir = env.get("REPO_DIR") or config.get("WorkingDir") or "/home/jovyan"
        uid = int(labels.get(LABEL_UID, "1000"))
        data = await asyncio.get_running_loop().run_in_executor(
            None, owned_tar, archive, uid)
        self.log.info("Copying %s (%d kB) into %s:%s", archive.name, len(data) // 1024,
                      container_id[:12], repo_dir)
        ok = await self.docker("put_archive", container_id, repo_dir, data)
        if not ok:
            raise web.HTTPError(500, "Could not copy the repository content into the session.")

    async def start(self):
        """Check binderlab's user_options (image, launch token), then start the container."""
        if not self.user_options.get("image"):
            raise web.HTTPError(400, "binderlab sessions need an image in user_options.")
        if self.anonymous and not TOKEN_RE.match(str(self.user_options.get("token", ""))):
            raise web.HTTPError(400, "A launch token is required (16-128 URL-safe characters).")
        ip, port = await super().start()
        await self.wait_for_server(ip, port)
        return ip, port

    async def wait_for_server(self, ip: str, port: int) -> None:
        """Return as soon as the session's server answers HTTP.

        JupyterHub checks a new server with a growing random back-off (up to seconds),
        which made launches wait ~1 s on average after Jupyter was up (bench/launch.py).
        Polling every 50 ms here means the hub's first check succeeds.
        """
        url = f"http://{ip}:{port}{self.server.base_url}api"
        client = AsyncHTTPClient()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        next_container_check = loop.time() + 1
        while loop.time() < deadline:
            try:
                await client.fetch(url, request_timeout=2, raise_error=False)
                return
            except OSError:
                pass
            if loop.time() > next_container_check:
                if await self.poll() is not None:
                    return  # the container exited: let the hub report it
                next_container_check = loop.time() + 1
            await asyncio.sleep(self.server_poll_interval)

    def get_env(self):
        env = super().get_env()
        if self.anonymous:
            # The session's own server checks the launch token; the container gets no hub
            # credentials at all (its code is whatever the repository holds).
            env = {k: v for k, v in env.items()
                   if not k.startswith(("JUPYTERHUB_", "JPY_"))}
            env["JUPYTER_TOKEN"] = self.user_options["token"]
        env["BINDER_REPO_URL"] = self.user_options.get("repo_url", "")
        env["BINDER_REF"] = self.user_options.get("ref", "")
        return env

    async def get_command(self):
        if not self.anonymous:
            return await super().get_command()
        return [
            *self.server_command,
            "--ip=0.0.0.0",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            "--ServerApp.default_url=/lab",
            f"--ServerApp.allow_origin={self.allow_origin}",
            "--ServerApp.allow_credentials=False",
            "--ServerApp.trust_xheaders=True",
        ]


def owned_tar(path: Path, uid: int) -> bytes:
    """The tar at ``path`` with every entry owned by ``uid`` (git archive writes root)."""
    out = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            member.uid = member.gid = uid
            member.uname = member.gname = ""
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    return out.getvalue()
