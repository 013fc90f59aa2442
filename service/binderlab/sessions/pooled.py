"""The warm pool's hub side: pooled sessions are hub users started through the hub's API,
exactly as a launch starts one, and a launch claims one instead of starting its own.

- start: a hub user of the pool's prefix, its server started with ``pooled: true`` (the
  spawner then copies no content in), no GPUs, a fresh launch token; once the server
  answers, one kernel is started and stopped in it (``prestart_kernel``) so the first
  kernel a user asks for finds ipykernel's imports in the page cache. No kernel is left
  running: nothing of one user's state can reach the next.
- claim: the commit's files go into the running container (Docker's put_archive works on
  running containers; owned by the notebook user, as the spawner's overlay does), or on
  Kubernetes into the running pod by an exec of tar (sessions/podcontent.py). A
  tree-keyed image holds its commit already: nothing to copy, on Docker or Kubernetes.
- a logged-in claim (one box, authentication "required"): the user's folder of their
  volume is mounted into the running container (sessions/poolstorage.py, poolmounts.py).
- touch: the pool reports its warm users as active (``POST /users/<name>/activity``, the
  scope ``users:activity`` that ``admin:users`` holds), so jupyterhub-idle-culler never culls
  a session that waits for a claim; a claimed one is culled like any other.
"""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

import docker.errors
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect
from traitlets import Bool, Float
from traitlets.config import LoggingConfigurable

from binderlab.contract import (
    KIND_ENV,
    LABEL_KIND,
    LABEL_UID,
    LABEL_USER,
    OPT_CONTENT,
    OPT_GPUS,
    OPT_IMAGE,
    OPT_POOLED,
    OPT_REPO_KEY,
    OPT_TOKEN,
    content_archive,
)
from binderlab.errors import LaunchError
from binderlab.platform.content import image_env, owned_tar, repo_dir_of
from binderlab.sessions.pool import PoolBackend, WarmPool, WarmSession
from binderlab.sessions.poolmounts import PoolMounts, pool_mounts_root


class HubPoolBackend(PoolBackend, LoggingConfigurable):
    """Pooled sessions through JupyterHub (any spawner) with the overlay on Docker."""

    prestart_kernel = Bool(
        True,
        help="""Start and stop one kernel in each pooled server before it counts as warm
        (default on): the user's first kernel then starts from a warm file cache. The
        kernel is shut down before any claim, so no state passes between users.""",
    ).tag(config=True)

    handover_kernel = Bool(
        True,
        help="""Keep the pre-started kernel running as a session at the path thebe 0.9
        asks for (path '', name 'thebe.ipynb') instead of shutting it down (default on):
        Jupyter answers thebe's first session request with it, a kernel that has answered
        kernel_info already (bench/pool.py: click to first output 0.80x). The kernel is
        fresh (only kernel_info was asked of it, no code ran) and the server is one user's
        once claimed. It holds ~50 MB per warm session; other clients start their own.
        Not with logged-in claims (authentication 'required'): there the kernel is shut
        down before the session counts as warm, since a claim could not keep it.""",
    ).tag(config=True)

    kernel_timeout = Float(
        60, help="Seconds the pre-started kernel may take to become idle (default 60)."
    ).tag(config=True)

    def __init__(self, *, launcher, engine, content_dir, username_prefix: str,
                 storage=None, pod_tracker=None, **kwargs):
        super().__init__(**kwargs)
        self.launcher = launcher  # a HubLauncher: its API client, spawn and stop
        self.engine = engine  # a DockerEngine, None on Kubernetes
        self.content_dir = content_dir
        self.username_prefix = username_prefix
        # logged-in claims (sessions/poolstorage.py), None when they are off
        self.storage = storage
        self.pod_tracker = pod_tracker  # Kubernetes: finds the pooled pods (trackers.py)

    async def why_not_owned(self, user_options: dict, owner: str) -> str:
        """Why a warm session cannot become ``owner``'s for this launch ('' if it can)."""
        if self.storage is None:
            return "logged-in claims are off (one box, authentication 'required' only)"
        return await self.storage.why_not(user_options, owner)

    async def claim_owned(self, session: WarmSession, user_options: dict,
                          owner: str) -> list[str]:
        """Make ``session`` the logged-in ``owner``'s, their files attached; the launch-log
        lines of the merge (sessions/poolstorage.py)."""
        return await self.storage.claim(session, user_options, owner)

    async def close(self) -> None:
        """The service stops: unmount the slots of sessions that ended (claimed sessions
        that keep running across the restart keep their files mounted)."""
        if self.storage is not None:
            await self.tidy()
            await self.storage.close()

    async def tidy(self) -> None:
        """Unmount the slots of claimed sessions that ended (the pool's reconcile)."""
        if self.storage is not None:
            await self.storage.tidy(*await self.storage.pooled_users(self.username_prefix))

    async def start(self, image: str) -> WarmSession:
        launcher = self.launcher
        if self.storage is not None:  # the slots' shared mount, before any slot is bound
            await self.storage.prepare()
        if await self.runs_start_script(image):
            # repo2docker's `start` runs when the container starts, from the commit's own
            # files: a server started before the claim would have skipped it
            raise LaunchError(f"{image} runs a start script at start-up: not pooled.", 400)
        username = self.username_prefix + secrets.token_hex(8)
        token = secrets.token_urlsafe(24)
        options = {OPT_IMAGE: image, OPT_TOKEN: token, OPT_POOLED: True}
        launcher.starting.add(username)  # the reaper leaves the created container alone
        try:
            await launcher.api("POST", f"/users/{quote(username)}")
            try:
                async with asyncio.timeout(launcher.start_timeout):
                    async for _ in launcher.spawn(username, options):
                        pass
                user = await launcher.api("GET", f"/users/{quote(username)}")
                server = (user.get("servers") or {}).get("", {})
                if not server.get("ready"):
                    raise LaunchError("The pooled session stopped while it was starting.")
                session = WarmSession(username, image, token, launcher.session_url(server),
                                      0.0, await self.image_id(image))
                await self.touch([session])  # the culler must not take it while it warms
                if self.prestart_kernel:
                    await self.warm_kernel(session)
            except BaseException:
                await launcher.stop(username)
                raise
        finally:
            launcher.starting.discard(username)
        return session

    async def warm_kernel(self, session: WarmSession) -> None:
        """Start one kernel, wait for its answer to kernel_info (a kernel only reports
        itself idle once a client asks it something), shut it down."""
        headers = {"Authorization": f"token {session.token}"}

        async def call(method, path, body=None):
            response = await self.launcher.http.fetch(HTTPRequest(
                session.url + path, method=method, headers=headers, body=body,
                request_timeout=self.kernel_timeout))
            return json.loads(response.body) if response.body else {}

        kernel = await call("POST", "api/kernels", "{}")
        handed_over = False
        try:
            async with asyncio.timeout(self.kernel_timeout):
                await kernel_info(session.url.replace("http", "ws", 1) +
                                  f"api/kernels/{kernel['id']}/channels", headers)
            # Jupyter returns an existing session for its path. Not in a pool of logged-in
            # claims: a claim shuts pre-started kernels down (their directory is the slot
            # the user's folder then covers), and waiting for that shutdown was ~0.25 s of
            # a ~0.9 s claim (bench/pool_loggedin.py); here it happens before the claim
            if self.handover_kernel and self.storage is None:
                await call("POST", "api/sessions", json.dumps(
                    {"path": "", "name": "thebe.ipynb", "type": "notebook",
                     "kernel": {"id": kernel["id"]}}))
                handed_over = True
        finally:
            if not handed_over:
                await call("DELETE", f"api/kernels/{kernel['id']}")

    async def claim(self, session: WarmSession, user_options: dict) -> None:
        commit = user_options.get(OPT_CONTENT)
        if not commit:  # a tree-keyed image: the commit's files are in the image
            return
        archive = content_archive(self.content_dir, commit)
        if not archive.is_file():
            raise LaunchError(f"The content of commit {commit} is not available.", 404)
        if self.engine is None:  # Kubernetes: exec tar in the running pod
            await self.claim_pod(session, archive)
            return
        containers = await self.engine.call(
            self.engine.client.containers.list,
            filters={"label": f"{LABEL_USER}={session.username}", "status": "running"})
        if len(containers) != 1:
            raise LaunchError(f"The pooled session {session.username} is not running.", 500)
        info = await self.engine.call(self.engine.client.api.inspect_image, session.image)
        config = info.get("Config") or {}
        labels = config.get("Labels") or {}
        if labels.get(LABEL_KIND) != KIND_ENV:
            return
        uid = int(labels.get(LABEL_UID, "1000"))
        data = await self.engine.call(owned_tar, archive, uid)
        with data:
            ok = await self.engine.call(containers[0].put_archive, repo_dir_of(config), data)
        if not ok:
            raise LaunchError("Could not copy the repository content into the session.", 500)

    async def claim_pod(self, session: WarmSession, archive) -> None:
        """The overlay into the pooled user's running pod (sessions/podcontent.py)."""
        from binderlab.sessions.podcontent import copy_into_pod, session_pod

        tracker = self.pod_tracker
        if tracker is None or not hasattr(tracker, "namespace"):
            raise LaunchError("Claiming a pooled session of an environment-keyed image needs "
                              "the Docker engine or the Kubernetes session tracker.", 500)
        core = await tracker.api()
        pod = await session_pod(core, tracker.namespace, session.username,
                                tracker.label_selector)
        await copy_into_pod(core, tracker.namespace, pod, archive)

    async def runs_start_script(self, image: str) -> bool:
        """Whether ``image`` names a start script (repo2docker's R2D_ENTRYPOINT)."""
        if self.engine is None:
            return False
        try:
            info = await self.engine.call(self.engine.client.api.inspect_image, image)
        except docker.errors.NotFound:
            return False
        return bool(image_env(info.get("Config") or {}).get("R2D_ENTRYPOINT"))

    async def stop(self, session: WarmSession) -> None:
        await self.launcher.stop(session.username)

    async def image_id(self, image: str) -> str | None:
        if self.engine is None:  # the cluster's registry: not looked up
            return None
        try:
            return (await self.engine.call(self.engine.client.api.inspect_image, image))["Id"]
        except docker.errors.NotFound:
            return ""

    async def touch(self, sessions: list[WarmSession]) -> None:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        for s in sessions:
            await self.launcher.api("POST", f"/users/{quote(s.username)}/activity",
                                    {"last_activity": now,
                                     "servers": {"": {"last_activity": now}}})


async def kernel_info(url: str, headers: dict) -> None:
    """Ask the kernel behind ``url`` (Jupyter's channels websocket) for kernel_info and
    wait for the reply: the kernel has then imported what it needs to run a cell."""
    msg_id = secrets.token_hex(16)
    ws = await websocket_connect(HTTPRequest(url, headers=headers))
    try:
        await ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "",
                       "session": secrets.token_hex(16), "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell"}))
        while True:
            message = await ws.read_message()
            if message is None:
                raise LaunchError("The kernel's connection closed before it answered.")
            if isinstance(message, str) and json.loads(message).get(
                    "parent_header", {}).get("msg_id") == msg_id and json.loads(
                    message).get("msg_type") == "kernel_info_reply":
                return
    finally:
        ws.close()


async def launch_or_claim(pool: WarmPool | None, launcher, image: str, user_options: dict,
                          owner: str = "") -> AsyncIterator[dict]:
    """A launch's session: a claimed warm one when the pool has one, else the launcher's.

    Not pooled: GPU launches (a warm session holds no GPU). A logged-in launch claims
    only where the backend can attach the user's files to a running session
    (``claim_owned``: one box, c.BinderLab.authentication = "required"); when it cannot
    (no such backend, the user's first launch, ...), the warm session goes back to the
    pool untouched and the launch starts the user's named server as before.
    """
    owned = {"owner": owner} if owner else {}
    if pool is None:
        async for event in launcher.launch(image, user_options, **owned):
            yield event
        return
    owned_claims = getattr(pool.backend, "storage", None) is not None
    if not owner or user_options.get(OPT_GPUS) or not owned_claims:  # no claim of theirs
        async for event in _claim_or_launch(pool, launcher, image, user_options, owner):
            yield event
        return
    async with pool.owner_turn(owner, user_options.get(OPT_REPO_KEY, "")):
        # a launch of the same user and repository that held the turn may have started
        # (or claimed) their session meanwhile: return to it, as the pipeline does
        running = getattr(launcher, "running", None)
        found = await running(owner, user_options.get(OPT_REPO_KEY, "")) if running else None
        if found is not None:
            yield {"phase": "launching", "message": "Returning to your running session\n"}
            yield {"phase": "ready", "url": found["url"], "token": found["token"]}
            return
        async for event in _claim_or_launch(pool, launcher, image, user_options, owner):
            yield event


async def _claim_or_launch(pool: WarmPool, launcher, image: str, user_options: dict,
                           owner: str = "") -> AsyncIterator[dict]:
    owned = {"owner": owner} if owner else {}
    session = None
    # only launches a pool can serve count towards its launch rate
    servable = not user_options.get(OPT_GPUS) and (
        not owner or getattr(pool.backend, "storage", None) is not None)
    if servable:
        pool.record_launch(image)
        why_not = await pool.backend.why_not_owned(user_options, owner) if owner else ""
        if why_not:  # e.g. their first launch: it creates their volume
            pool.log.info("Warm pool: not claiming for %s: %s", owner, why_not)
        else:
            session = pool.claim(image, user_options)
    if session is not None and owner:
        try:
            messages = await pool.backend.claim_owned(session, user_options, owner)
        except Exception as e:
            pool.log.warning("Warm pool: claim of %s for %s failed (%s); starting a session",
                             session.username, owner, e)
            pool.released(session.username)
            await pool.backend.stop(session)
        else:
            yield {"phase": "launching", "message": "Claimed a warm session\n"}
            for message in messages:
                yield {"phase": "launching", "message": message + "\n"}
            yield {"phase": "ready", "url": session.url, "token": session.token}
            return
        session = None
    if session is not None:
        try:
            await pool.backend.claim(session, user_options)
        except Exception as e:
            pool.log.warning("Warm pool: claim of %s failed (%s); starting a session",
                             session.username, e)
            pool.released(session.username)
            await pool.backend.stop(session)
        else:
            yield {"phase": "launching", "message": "Claimed a warm session\n"}
            yield {"phase": "ready", "url": session.url, "token": session.token}
            return
    async for event in launcher.launch(image, user_options, **owned):
        yield event


def make_pool(app, merge_class=None) -> WarmPool:
    """The app's pool (c.BinderLab.warm_pool = True) with the hub backend; ``merge_class``
    (spawners/claimmerge.py) runs the merge of logged-in claims."""
    pool = WarmPool(parent=app, log=app.log, backend=PoolBackend(),
                    state_file=app.state_path / "pool-claims.json")
    if pool.username_prefix == getattr(app.launcher, "username_prefix", None):
        raise ValueError("c.WarmPool.username_prefix must differ from "
                         "c.HubLauncher.username_prefix.")
    from binderlab.sessions.launcher import HubLauncher

    if not isinstance(app.launcher, HubLauncher):  # e.g. the in-process tier's: its own
        return pool
    storage = None
    root = pool_mounts_root(app)
    if root is not None and app.engine is not None and merge_class is not None:
        from binderlab.sessions.poolstorage import ClaimStorage

        storage = ClaimStorage(launcher=app.launcher, engine=app.engine,
                               content_dir=app.state_path / "content",
                               mounts=PoolMounts(root), image_prefix=app.image_prefix,
                               log=app.log, merge_class=merge_class, parent=app)
        app.launcher.claimed_running = lambda owner, repo_key: storage.running(
            owner, repo_key, pool.claimed_users)
        app.launcher.claimed_sessions = lambda owner: storage.claimed(owner,
                                                                      pool.claimed_users)
    pool.backend = HubPoolBackend(parent=app, log=app.log, launcher=app.launcher,
                                  engine=app.engine, content_dir=app.state_path / "content",
                                  username_prefix=pool.username_prefix, storage=storage,
                                  pod_tracker=app.sessions if app.engine is None else None)
    return pool
