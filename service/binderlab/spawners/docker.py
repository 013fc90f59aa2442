"""The Docker spawner for binderlab sessions (loaded by the hub, see jupyterhub_config.py).

It runs only images that binderlab built (checked against their labels), and puts the
requested commit's files into containers of environment-keyed images before they start.
"""

import asyncio
import os

import docker.errors
import docker.types
from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Float, Unicode, default

from binderlab.contract import (
    KIND_ENV,
    LABEL_KIND,
    LABEL_UID,
    HubSettings,
    built_by_binderlab,
    content_archive,
)
from binderlab.platform.content import image_env, owned_tar, repo_dir_of
from binderlab.platform.registry import split_image
from binderlab.spawners.mixin import BinderLabSessionMixin
from binderlab.spawners.persistent import UserVolumeMixin


class BinderLabSpawner(UserVolumeMixin, BinderLabSessionMixin, DockerSpawner):
    """DockerSpawner for binderlab sessions: binderlab's images only, content overlay."""

    content_dir = Unicode(
        help="""Where the binder service leaves each commit's files (<commit>.tar) for the
        content overlay of environment-keyed images. `binderlab up` sets it.""",
    ).tag(config=True)

    server_poll_interval = Float(
        0.05, help="Seconds between checks that a starting session answers (default 0.05)."
    ).tag(config=True)

    @default("content_dir")
    def _default_content_dir(self):
        return HubSettings.from_env().content_dir

    async def check_allowed(self, image):
        """Refuse any image that binderlab did not build (the hub API is reachable by users):
        the name has binderlab's prefix and ends with the key its label records."""
        try:
            info = await self.docker("inspect_image", image)
        except docker.errors.ImageNotFound:
            # images in binderlab's registry namespace are pulled (multi-host setups); a
            # prefix without a registry host (e.g. 'binderlab/') means local images only
            try:
                split_image(image)
            except ValueError:
                raise web.HTTPError(404, f"Image {image} does not exist.") from None
            try:
                await self.pull_image(image)
                info = await self.docker("inspect_image", image)
            except docker.errors.APIError:
                raise web.HTTPError(404, f"Image {image} does not exist.") from None
        labels = (info.get("Config") or {}).get("Labels") or {}
        if not built_by_binderlab(image, self.image_prefix, labels):
            raise web.HTTPError(403, f"Image {image!r} was not built by binderlab.")
        return image

    async def create_object(self):
        """Create the container; for an environment-keyed image, copy the requested commit's
        files into the repository directory (as the notebook user) before it starts."""
        # self.image is the session's image from here on (DockerSpawner applied user_options)
        self.extra_create_kwargs = {**self.extra_create_kwargs,
                                    "user": await self.notebook_user()}
        info = await self.docker("inspect_image", self.image)
        config = info.get("Config") or {}
        labels = config.get("Labels") or {}
        if self.has_volume:  # a logged-in user's: their volume, the commit merged into it
            await self.prepare_storage(self.check_user_options().upstream,
                                       int(labels.get(LABEL_UID, "1000")))
        elif self.check_user_options().pooled:
            self.attach_pool_slot()  # a logged-in claim mounts the user's folder there
        obj = await super().create_object()
        # a warm-pool session gets its content when a launch claims it (sessions/pooled.py)
        if labels.get(LABEL_KIND) == KIND_ENV and not self.check_user_options().pooled:
            try:
                await self.overlay_content(obj["Id"], config, labels)
            except Exception:
                await self.docker("remove_container", obj["Id"], force=True)
                raise
        return obj

    def attach_pool_slot(self) -> None:
        """A warm session of a logged-in pool (the service set BINDERLAB_POOL_MOUNTS):
        its own empty slot bound at the volume path with propagation rslave, the server
        started there, so the user's folder mounted onto the slot at a claim becomes the
        server's root while it runs (sessions/poolmounts.py)."""
        root = HubSettings.from_env().pool_mounts
        if not root or not self.persistent_storage:
            return
        slot = os.path.join(root, self.user.name)  # pool users are [a-z0-9-]: a safe name
        os.makedirs(slot, mode=0o755, exist_ok=True)
        self.volumes = {**self.volumes, slot: {"bind": self.volume_mount_path,
                                               "mode": "rw,rslave"}}
        self.extra_create_kwargs = {**self.extra_create_kwargs,
                                    "working_dir": self.volume_mount_path}

    async def overlay_content(self, container_id: str, config: dict, labels: dict) -> None:
        commit = self.check_user_options().content
        if not commit or not self.content_dir:
            raise web.HTTPError(400, "This image needs the repository content (a commit).")
        archive = content_archive(self.content_dir, commit)
        if not archive.is_file():
            raise web.HTTPError(404, f"The content of commit {commit} is not available.")
        env = image_env(config)
        repo_dir = repo_dir_of(config)
        uid = int(labels.get(LABEL_UID, "1000"))
        # repo2docker made the start script executable at build time; in an env-keyed image
        # the commit's own script comes with the content, so it is made executable here
        start = env.get("R2D_ENTRYPOINT", "")
        prefix = repo_dir.rstrip("/") + "/"
        start = start[len(prefix):] if start.startswith(prefix) else ""
        data = await asyncio.get_running_loop().run_in_executor(
            None, owned_tar, archive, uid, start)
        with data:
            self.log.info("Copying %s (%d kB) into %s:%s", archive.name,
                          archive.stat().st_size // 1024, container_id[:12], repo_dir)
            ok = await self.docker("put_archive", container_id, repo_dir, data)
        if not ok:
            raise web.HTTPError(500, "Could not copy the repository content into the session.")

    async def start(self):
        """Check binderlab's user_options (image, launch token), then start the container."""
        options = self.check_user_options()
        gpus = options.gpus
        self._session_gpu_ids = list(gpus)
        self.extra_create_kwargs = {**self.extra_create_kwargs,
                                    "labels": options.session_labels(self.user.name)}
        if gpus:
            # the NVIDIA Container Toolkit gives the container exactly these devices
            self.extra_host_config = {**self.extra_host_config, "device_requests": [
                docker.types.DeviceRequest(driver="nvidia", device_ids=gpus,
                                           capabilities=[["gpu"]])]}
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

    async def notebook_user(self) -> str:
        """``uid:gid`` the session runs as: the notebook user binderlab built the image for
        (its label), whatever the image's own USER says. A repository's Dockerfile may end
        with `USER root`; the README promises non-root sessions, and a root session could
        undo what the spawner set up (the content's owner, files outside the home)."""
        info = await self.docker("inspect_image", self.image)
        labels = (info.get("Config") or {}).get("Labels") or {}
        uid = labels.get(LABEL_UID, "1000")
        if not uid.isdigit() or int(uid) == 0:
            raise web.HTTPError(403, f"Image {self.image!r} names no non-root notebook user.")
        return f"{uid}:{uid}"  # repo2docker gives NB_USER a group of the same id

    def get_env(self):
        env = self.session_env(super().get_env())
        # The NVIDIA runtime hands a container the devices its environment names; an image
        # may say ENV NVIDIA_VISIBLE_DEVICES=all, and on a host whose default runtime is
        # nvidia every session would get every GPU. The container's own value wins over the
        # image's: a GPU session names exactly its devices, a CPU session none ("void":
        # the runtime then adds nothing, as for runc).
        gpus = getattr(self, "_session_gpu_ids", [])
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpus) if gpus else "void"
        return env

    async def get_command(self):
        if not self.anonymous:
            return await super().get_command()
        return self.anonymous_command()
