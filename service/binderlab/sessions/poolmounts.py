"""Mount slots: how a running pooled container gains a logged-in user's files on one box.

A running container cannot gain a mount through Docker's API, but the kernel's mount
propagation can give it one. binderlab owns a host folder (``root``), bind-mounted on
itself and made a *shared* mount. Each warm session of a logged-in pool is created with a
bind mount of its own empty slot ``root/<pooled user>`` at the sessions' volume path
(``/persistent``), propagation ``rslave``: a mount made later on the host at that slot
appears inside the container, while nothing the container mounts comes back.

At a claim, the user's repository folder in their Docker volume (its ``Mountpoint`` on the
host, plus the folder) is bind-mounted onto the slot: the session's ``/persistent`` is then
that folder, the server's root directory, exactly what a non-pooled session's root shows.
When the session ends, the slot is unmounted and removed.

The mounts are made in the binder service's own mount namespace, so the service must share
the Docker engine's (true for `binderlab up` and a systemd unit; not for a service started
under `unshare -m`): ``visible_in`` checks a claim's mount inside the container before the
session is handed over, and a claim whose mount is not visible falls back to a normal
launch.
"""

import asyncio
import os
import re
import shutil
from pathlib import Path

SLOT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # pooled hub user names (pool prefix + hex)


def pool_mounts_root(app) -> Path | None:
    """Where the slots live, None when logged-in claims are off: they need the warm pool
    and c.BinderLab.authentication = "required" (the pool's sessions then start at the
    volume path, which an anonymous claim could not use)."""
    if not getattr(app, "warm_pool", False) or getattr(app, "authentication", "") != "required":
        return None
    return Path(app.state_path) / "pool-mounts"


class MountError(RuntimeError):
    """A mount or unmount failed (its message is mount's own)."""


def unescape_mountinfo(field: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points(mountinfo: str) -> dict[str, str]:
    """{mount point: its optional fields ('shared:N', 'master:N', ...)} from mountinfo text;
    the last mount on a point wins (it is the one paths resolve through)."""
    points = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields:
            continue
        optional = fields[6:fields.index("-")]
        points[unescape_mountinfo(fields[4])] = " ".join(optional)
    return points


async def _run(command: str, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        command, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode:
        raise MountError(f"{command} {' '.join(args)}: {err.decode(errors='replace').strip()}")


async def run_mount(*args: str) -> None:
    await _run("mount", *args)


async def run_umount(*args: str) -> None:
    await _run("umount", *args)


class PoolMounts:
    """The slots under ``root`` (see the module doc). Needs root (CAP_SYS_ADMIN)."""

    def __init__(self, root: Path, mountinfo: Path = Path("/proc/self/mountinfo")):
        self.root = Path(root)
        self.mountinfo = mountinfo

    def points(self) -> dict[str, str]:
        return mount_points(self.mountinfo.read_text())

    async def prepare(self) -> None:
        """Make ``root`` a shared mount (idempotent): bind it on itself once, then mark it
        shared (Docker refuses an ``rslave`` bind whose source is on a private mount)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        root = str(self.root.resolve())
        points = self.points()
        if root not in points:
            await run_mount("--bind", root, root)
            points = self.points()
        if "shared:" not in points.get(root, ""):
            await run_mount("--make-shared", root)

    def slot(self, username: str) -> Path:
        """The slot of a pooled user, created empty (the bind source of its container)."""
        if not SLOT_RE.match(username):
            raise ValueError(f"not a pooled user name: {username!r}")
        path = self.root.resolve() / username
        path.mkdir(mode=0o755, exist_ok=True)
        return path

    def attached(self) -> set[str]:
        """Pooled users whose slot holds a user's folder now."""
        root = str(self.root.resolve()) + "/"
        return {p[len(root):] for p in self.points() if p.startswith(root)
                and "/" not in p[len(root):]}

    async def attach(self, username: str, folder: Path) -> None:
        """Bind ``folder`` (a user's repository folder in their volume) onto the slot."""
        slot = self.slot(username)
        if username in self.attached():
            raise MountError(f"{username}'s slot already holds a folder")
        await run_mount("--bind", str(folder), str(slot))

    async def detach(self, username: str) -> None:
        """Unmount the slot (lazily: the container may still be stopping) and remove it.
        The user's files stay in their volume; only the slot's mount goes."""
        slot = self.root.resolve() / username
        if not SLOT_RE.match(username) or not slot.parent.samefile(self.root):
            return
        while username in self.attached():
            await run_umount("-l", str(slot))

    async def reconcile(self, live: set[str], existing: set[str] | None = None) -> list[str]:
        """Detach the slots of pooled users that no longer run (stopped, culled, or left
        from before a restart); the ones detached. Empty slots go once no container of
        their user exists (``existing``: created, running or exited), never while one is
        being created: Docker checks a bind's source when the container starts."""
        gone = sorted(self.attached() - live)
        for username in gone:
            await self.detach(username)
        keep = live | (existing if existing is not None else live)
        if self.root.is_dir():  # empty slots of warm sessions that ended
            for entry in self.root.iterdir():
                if entry.name not in keep and entry.is_dir() and not entry.is_mount():
                    try:
                        entry.rmdir()
                    except OSError:
                        pass
        return gone

    async def close(self) -> None:
        """Unmount everything under root, then root itself (the service's stop)."""
        for username in sorted(self.attached()):
            await self.detach(username)
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            if entry.is_dir() and not entry.is_mount():
                try:
                    entry.rmdir()  # empty once unmounted: never a recursive removal
                except OSError:
                    pass
        root = str(self.root.resolve())
        if root in self.points():
            await run_umount("-l", root)
        if self.root.is_dir() and not any(self.root.iterdir()):
            shutil.rmtree(self.root, ignore_errors=True)
