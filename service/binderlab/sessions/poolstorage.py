"""A claim by a logged-in user on one box: the warm session becomes theirs, files attached.

What a non-pooled logged-in launch does in the spawner (spawners/persistent.py) happens
here at the claim, into the running container:

1. the user's Docker volume is found by the labels the spawner gave it (binderlab.user,
   binderlab.storage=user). A user with no volume yet (their very first launch) is not
   served from the pool: the spawner creates the volume with its configured name and
   options, and later launches can claim;
2. the commit is merged into their repository folder by the same short-lived merge
   container the spawner runs (the session's image, notebook UID, no network), so the rules,
   the report file and the launch-log lines are the spawner's own;
3. that folder is bind-mounted onto the warm container's slot (sessions/poolmounts.py), and
   the service checks inside the container that ``/persistent`` is now that folder;
4. kernels the pool pre-started are shut down (their working directory is the empty slot
   under the new mount), and the session is shared with the user through JupyterHub's
   sharing API (``access:servers!server=<pooled user>/``), so their hub login opens it too.

The session stays the pooled hub user's default server: JupyterHub cannot rename a server
or move it to another user. Who owns it is kept in two places the hub and the service
already keep across restarts: the hub's share, and the pool's claims file (repo key).
"""

from pathlib import Path
from urllib.parse import quote

from binderlab.contract import (
    LABEL_IMAGE_PREFIX,
    LABEL_STORAGE,
    LABEL_UID,
    LABEL_USER,
    OPT_REPO_KEY,
    OPT_UPSTREAM,
    STORAGE_USER,
    content_archive,
    server_name,
)
from binderlab.errors import LaunchError
from binderlab.sessions.poolmounts import PoolMounts


class NotClaimable(Exception):
    """This launch cannot be served from the pool (the reason says why); the launch
    starts a session of its own instead, as without a pool."""


class ClaimStorage:
    """The logged-in part of HubPoolBackend (see the module doc)."""

    def __init__(self, *, launcher, engine, content_dir: Path, mounts: PoolMounts,
                 image_prefix: str, log, merge_class, parent=None):
        self.launcher, self.engine, self.content_dir = launcher, engine, Path(content_dir)
        self.mounts, self.image_prefix, self.log, self.parent = mounts, image_prefix, log, \
            parent
        self._prepared = False
        # spawners/claimmerge.py's ClaimMerge: the spawner's own merge (app.py hands it
        # over; sessions/ do not import the hub's side)
        self.merge_class = merge_class

    async def prepare(self) -> None:
        if not self._prepared:
            await self.mounts.prepare()
            self._prepared = True

    async def close(self) -> None:
        if self._prepared and not self.mounts.attached():
            await self.mounts.close()
            self._prepared = False

    async def user_volume(self, owner: str) -> dict | None:
        """The owner's persistent volume (Docker's inspect answer), None if none exists."""
        found = await self.engine.call(self.engine.client.api.volumes, filters={
            "label": [f"{LABEL_USER}={owner}", f"{LABEL_STORAGE}={STORAGE_USER}",
                      # this installation's (an engine may hold another's, same user names)
                      f"{LABEL_IMAGE_PREFIX}={self.image_prefix}"]})
        volumes = found.get("Volumes") or []
        if len(volumes) != 1:
            return None
        return volumes[0]

    async def why_not(self, user_options: dict, owner: str) -> str:
        """Why this launch cannot claim ('' when it can): checked before the claim, so a
        launch the pool cannot serve leaves the warm session in the pool."""
        commit = user_options.get(OPT_UPSTREAM)
        if not commit or not user_options.get(OPT_REPO_KEY):
            return "no commit to merge"
        if not content_archive(self.content_dir, commit).is_file():
            return "the commit's files are not in the content store"
        if await self.user_volume(owner) is None:
            return f"{owner} has no persistent volume yet (their first launch creates it)"
        return ""

    async def claim(self, session, user_options: dict, owner: str) -> list[str]:
        """Make ``session`` ``owner``'s with their files; the launch-log lines of the merge.
        Raises on failure (the caller then stops the session: nothing of it is the user's
        yet, and their files are as the merge left them)."""
        commit = user_options[OPT_UPSTREAM]
        repo_key = user_options[OPT_REPO_KEY]
        volume = await self.user_volume(owner)
        if volume is None:
            raise NotClaimable(f"{owner} has no persistent volume")
        info = await self.engine.call(self.engine.client.api.inspect_image, session.image)
        uid = int(((info.get("Config") or {}).get("Labels") or {}).get(LABEL_UID, "1000"))
        container = await self.container(session.username)
        folder = server_name(repo_key)
        merge = self.merge_class(engine=self.engine, image=session.image, owner=owner,
                                 folder=folder, image_prefix=self.image_prefix, log=self.log,
                                 parent=self.parent)
        messages = await merge.merge(volume["Name"], content_archive(self.content_dir, commit),
                                     commit, uid)
        source = Path(volume["Mountpoint"]) / folder
        await self.mounts.attach(session.username, source)
        try:
            if not await self.visible_in(container, merge.volume_mount_path, source):
                raise NotClaimable("the slot's mount did not reach the container (is the "
                                   "service in the Docker engine's mount namespace?)")
            await self.stop_kernels(session)
            await self.launcher.api("POST", f"/shares/{quote(session.username)}/",
                                    {"user": owner})
        except BaseException:
            await self.mounts.detach(session.username)
            raise
        return messages

    async def container(self, username: str):
        containers = await self.engine.call(
            self.engine.client.containers.list,
            filters={"label": f"{LABEL_USER}={username}", "status": "running"})
        if len(containers) != 1:
            raise LaunchError(f"The pooled session {username} is not running.", 500)
        return containers[0]

    async def visible_in(self, container, path: str, source: Path) -> bool:
        """Whether ``path`` in the container is ``source`` (same device and inode)."""
        stat = source.stat()
        result = await self.engine.call(container.exec_run, ["stat", "-c", "%d:%i", path],
                                        user="0")
        return result.exit_code == 0 and \
            result.output.decode().strip() == f"{stat.st_dev}:{stat.st_ino}"

    async def stop_kernels(self, session) -> None:
        """Shut down kernels started before the claim: their working directory is the
        empty slot the user's folder now covers, so their files would not be the user's."""
        import json

        from tornado.httpclient import HTTPRequest

        headers = {"Authorization": f"token {session.token}"}
        response = await self.launcher.http.fetch(HTTPRequest(
            session.url + "api/kernels", headers=headers, request_timeout=30))
        for kernel in json.loads(response.body or b"[]"):
            await self.launcher.http.fetch(HTTPRequest(
                session.url + f"api/kernels/{kernel['id']}", method="DELETE",
                headers=headers, request_timeout=30))

    async def claimed(self, owner: str, claims: dict[str, str]) -> list[tuple[str, str, dict]]:
        """``owner``'s claimed warm sessions: (pooled user, repo key, its hub server model),
        found through the hub's shares with them and the pool's claims ({pooled user: repo
        key}); a share whose claim the pool forgot (the session ended) is not theirs."""
        try:
            shared = await self.launcher.api("GET", f"/users/{quote(owner)}/shared")
        except Exception:
            return []
        found = []
        for item in shared.get("items", []) if isinstance(shared, dict) else shared:
            server = item.get("server") or {}
            pooled = (server.get("user") or {}).get("name", "")
            if pooled not in claims:
                continue
            user = await self.launcher.api("GET", f"/users/{quote(pooled)}")
            model = (user.get("servers") or {}).get("")
            if model:
                found.append((pooled, claims[pooled], model))
        return found

    async def running(self, owner: str, repo_key: str, claims: dict[str, str]) -> dict | None:
        """``owner``'s running claimed session of ``repo_key`` (its ready event)."""
        for _pooled, key, model in await self.claimed(owner, claims):
            event = self.launcher.running_event(model) if key == repo_key else None
            if event is not None and event.get("token"):
                return event
        return None

    async def tidy(self, live: set[str], existing: set[str] | None = None) -> None:
        """Unmount the slots of pooled sessions that ended."""
        for username in await self.mounts.reconcile(live, existing):
            self.log.info("Warm pool: %s ended; its files are back in the user's volume only",
                          username)

    async def pooled_users(self, prefix: str) -> tuple[set[str], set[str]]:
        """Pooled users whose container runs, and those with any container at all."""
        containers = await self.engine.call(self.engine.client.api.containers, all=True,
                                            filters={"label": LABEL_USER})
        users = [((c.get("Labels") or {}).get(LABEL_USER, ""), c.get("State"))
                 for c in containers]
        users = [(u, state) for u, state in users if u.startswith(prefix)]
        return {u for u, state in users if state == "running"}, {u for u, _ in users}

