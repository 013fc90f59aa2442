"""Persistent work of logged-in users on one box: a Docker named volume per hub user.

Layout (the README's "Where your files live"): the volume is mounted at
``volume_mount_path`` (``/persistent``), outside the image's home, so nothing the image put
in $HOME at build time (postBuild results, dotfiles, the image's own copy of the repository)
is hidden. Each repository the user launches has one folder in it, named like their named
server for it (``/persistent/gh-owner-repo-1a2b3c4d/``), and the session's server starts
in that folder. ``/persistent/.binderlab/merge/<folder>.json`` records the upstream files of
the last merge (spawners/contentmerge.py decides "the user changed it" against it).

At each start, before the session's container is created, the launched commit's files are
merged into the folder by a short-lived container of the session's own image: the notebook
UID, no network, no capabilities, bounded memory, processes and time, removed afterwards.
A merge that fails or times out fails the launch, and the user's files stay as they were
(every write of the merge is a rename of a finished file).
"""

import asyncio
import json
import tarfile
from pathlib import Path

import docker.errors
from tornado import web
from traitlets import Bool, Dict, Float, Unicode, default
from traitlets.config import Configurable

from binderlab.contract import (
    LABEL_IMAGE_PREFIX,
    LABEL_STORAGE,
    LABEL_USER,
    STORAGE_USER,
    HubSettings,
    content_archive,
)
from binderlab.spawners import contentmerge

MERGE_SCRIPT = Path(contentmerge.__file__).read_text()
UPSTREAM_DIR = "binderlab-upstream"  # the commit's files in the merge container's /tmp
LABEL_MERGE = "binderlab.merge"  # on a merge container: the user whose files it merges


class UserVolumeMixin(Configurable):
    """The Docker spawner's part for persistent volumes and the merge (see module doc)."""

    persistent_storage = Bool(
        help="""Give logged-in users' sessions (their named servers) a persistent volume.

        Default: on when the binder service runs in logged-in mode
        (c.BinderLab.authentication 'required' or 'optional', passed to the hub as
        BINDERLAB_AUTHENTICATION). Anonymous sessions (temporary users' default servers)
        never get one.""",
    ).tag(config=True)

    volume_name_template = Unicode(
        "binderlab-user-{username}",
        help="""Name of a user's Docker volume. {username} is DockerSpawner's escaped user
        name (always a valid volume name); {raw_username} the hub name. Default
        'binderlab-user-{username}'. Changing it gives every user a new, empty volume (the
        old ones stay: `binderlab volumes list`).""",
    ).tag(config=True)

    volume_mount_path = Unicode(
        "/persistent",
        help="""Where the volume is mounted in sessions (default '/persistent'); a folder
        per repository in it. Choose a path that images do not use, so nothing of the image
        is hidden.""",
    ).tag(config=True)

    volume_labels = Dict(
        help="Extra labels on the volumes binderlab creates (binderlab.user, "
        "binderlab.storage and binderlab.image-prefix are always set).",
    ).tag(config=True)

    volume_driver = Unicode(
        "local", help="Docker volume driver of users' volumes (default 'local')."
    ).tag(config=True)

    volume_driver_opts = Dict(
        help="""Options of the volume driver (docker volume create --opt), e.g. a size
        where the driver enforces one. Default none: the local driver's plain folder on the
        engine's disk, unbounded.""",
    ).tag(config=True)

    merge_timeout = Float(
        120,
        help="""Seconds the merge of a commit into a user's files may take (default 120);
        longer, the launch fails with a message and the files stay as they were.""",
    ).tag(config=True)

    merge_mem_limit = Unicode(
        "512m", help="Memory limit of the merge container (Docker units, default '512m')."
    ).tag(config=True)

    @default("persistent_storage")
    def _default_persistent_storage(self):
        return HubSettings.from_env().authentication != "none"

    @property
    def has_volume(self) -> bool:
        # named servers are logged-in users' (one per repository); an anonymous launch is
        # a temporary user's default server and stays ephemeral
        return bool(self.persistent_storage and self.name)

    @property
    def volume_name(self) -> str:
        return self.volume_name_template.format(**self.template_namespace())

    @property
    def work_dir(self) -> str:
        return f"{self.volume_mount_path.rstrip('/')}/{self.name}"

    def storage_progress(self, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._storage_messages = [*getattr(self, "_storage_messages", []), message]

    async def progress(self):
        """JupyterHub's progress events: the merge's messages reach the loading page."""
        sent = 0
        while True:
            messages = getattr(self, "_storage_messages", [])
            for message in messages[sent:]:
                yield {"progress": 40, "message": message}
            sent = len(messages)
            if not self._spawn_pending:
                return
            await asyncio.sleep(0.1)

    async def ensure_volume(self) -> str:
        name = self.volume_name
        try:
            await self.docker("inspect_volume", name)
        except docker.errors.NotFound:
            labels = {**self.volume_labels, LABEL_USER: self.user.name,
                      LABEL_STORAGE: STORAGE_USER, LABEL_IMAGE_PREFIX: self.image_prefix}
            await self.docker("create_volume", name=name, driver=self.volume_driver,
                              driver_opts=self.volume_driver_opts or None, labels=labels)
            self.storage_progress(f"Created your persistent volume {name}")
        return name

    async def prepare_storage(self, commit: str | None, uid: int) -> None:
        """Create the user's volume, merge the commit into their folder, and mount it."""
        self._storage_messages = []
        if not commit or not self.content_dir:
            raise web.HTTPError(400, "A session with persistent storage needs the "
                                "repository's content (user_options.content).")
        archive = content_archive(self.content_dir, commit)
        if not archive.is_file():
            # e.g. a stopped server started again from the hub's home page long after its
            # launch: the service has cleaned the archive up (c.RepoDiskBudget)
            raise web.HTTPError(404, f"The content of commit {commit} is not available any "
                                "more: launch the repository again from its link.")
        volume = await self.ensure_volume()
        result = await self.run_merge(volume, archive, commit, uid)
        for line in merge_messages(result, self.work_dir):
            self.storage_progress(line)
        self.volumes = {**self.volumes, volume: {"bind": self.volume_mount_path,
                                                 "mode": "rw"}}
        self.extra_create_kwargs = {**self.extra_create_kwargs, "working_dir": self.work_dir}

    async def run_merge(self, volume: str, archive: Path, commit: str, uid: int) -> dict:
        code, output = await self.run_helper(volume, uid, entrypoint=[
            "python3", "-c", MERGE_SCRIPT], command=[
            "--upstream", f"/tmp/{UPSTREAM_DIR}", "--volume", self.volume_mount_path,
            "--folder", self.name, "--commit", commit], archive=archive)
        if code == contentmerge.EXIT_NOT_WRITABLE:
            # a new volume's root belongs to root: hand it to the notebook user, once
            await self.run_helper(volume, uid, user="0", cap_add=["CHOWN"],
                                  entrypoint=["chown"],
                                  command=[f"{uid}:{uid}", self.volume_mount_path])
            code, output = await self.run_helper(volume, uid, entrypoint=[
                "python3", "-c", MERGE_SCRIPT], command=[
                "--upstream", f"/tmp/{UPSTREAM_DIR}", "--volume", self.volume_mount_path,
                "--folder", self.name, "--commit", commit], archive=archive)
        for line in reversed(output.splitlines()):
            if code == 0 and line.startswith('{"result"'):
                return json.loads(line)["result"]
        self.log.error("Merge into %s failed (exit %s): %s", volume, code, output[-2000:])
        raise web.HTTPError(500, "Could not merge the repository into your files (exit "
                            f"{code}); your files are unchanged. {last_line(output)}")

    async def run_helper(self, volume: str, uid: int, *, entrypoint: list[str],
                         command: list[str], user: str = "", cap_add=(),
                         archive: Path | None = None) -> tuple[int, str]:
        """Run a short-lived container of the session image with the volume; its exit code
        and output. It is removed whatever happens (a timeout kills it)."""
        host_config = self.client.create_host_config(
            binds={volume: {"bind": self.volume_mount_path, "mode": "rw"}},
            network_mode="none", cap_drop=["ALL"], cap_add=list(cap_add) or None,
            security_opt=["no-new-privileges"], mem_limit=self.merge_mem_limit,
            pids_limit=256, auto_remove=False)
        obj = await self.docker(
            "create_container", self.image, entrypoint=entrypoint, command=command,
            user=user or f"{uid}:{uid}", working_dir="/tmp", host_config=host_config,
            environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
            # not binderlab.user: the session trackers would count it as a session
            name=f"{self.object_name}-merge", labels={LABEL_MERGE: self.user.name})
        cid = obj["Id"]
        try:
            if archive is not None:
                data = await asyncio.get_running_loop().run_in_executor(
                    None, prefixed_tar, archive, uid, UPSTREAM_DIR)
                with data:
                    await self.docker("put_archive", cid, "/tmp", data)
            try:
                await self.docker("start", cid)
            except docker.errors.APIError as e:  # e.g. no python3 in a Dockerfile's image
                raise web.HTTPError(500, "Could not run the merge of the repository into "
                                    f"your files in this image ({e.explanation}); your "
                                    "files are unchanged.") from None
            try:
                async with asyncio.timeout(self.merge_timeout):
                    while (await self.docker("inspect_container", cid))["State"]["Running"]:
                        await asyncio.sleep(0.1)
            except TimeoutError:
                raise web.HTTPError(504, f"Merging the repository into your files took "
                                    f"over {self.merge_timeout:.0f} s; stopped, your files "
                                    "are as the merge left them (it is safe to launch "
                                    "again).") from None
            state = (await self.docker("inspect_container", cid))["State"]
            logs = await self.docker("logs", cid, stdout=True, stderr=True)
            return state["ExitCode"], logs.decode(errors="replace")
        finally:
            try:
                await self.docker("remove_container", cid, force=True)
            except docker.errors.NotFound:
                pass


def merge_messages(result: dict, work_dir: str) -> list[str]:
    """What the launch log says of a merge (the loading page shows these lines)."""
    counts = ", ".join(f"{len(result[k])} {k}" for k in ("added", "updated", "restored",
                                                         "removed", "conflicts")
                       if result.get(k))
    lines = [f"Your files are in {work_dir} (merged the repository: {counts or 'no changes'})"]
    for c in result.get("conflicts", []):
        lines.append(f"Conflict: you changed {c['path']} and so did the repository; yours is "
                     f"kept, the repository's version is {c['upstream']}")
    for b in result.get("blocked", []):
        lines.append(f"Not updated: {b['path']} (something of yours is in the way)")
    if result.get("conflicts") or result.get("blocked"):
        lines.append(f"See {contentmerge.REPORT_NAME} in your folder.")
    return lines


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


def prefixed_tar(path: Path, uid: int, prefix: str):
    """The tar at ``path`` under ``prefix/``, owned by ``uid`` (git archive writes root), as
    a file positioned at its start (spilled to disk when large)."""
    import tempfile
    out = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    with tarfile.open(path) as src, tarfile.open(fileobj=out, mode="w") as dst:
        top = tarfile.TarInfo(prefix)
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o755, uid, uid
        dst.addfile(top)
        for member in src:
            if member.name in ("pax_global_header",) or member.type == tarfile.XGLTYPE:
                continue
            member.name = f"{prefix}/{member.name}"
            if member.islnk():
                member.linkname = f"{prefix}/{member.linkname}"
            member.uid = member.gid = uid
            member.uname = member.gname = ""
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    out.seek(0)
    return out

