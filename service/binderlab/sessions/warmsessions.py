"""What the warm pool keeps (``WarmSession``) and what it needs from the session side
(``PoolBackend``, whose docstrings are the contract; sessions/pooled.py implements it for
JupyterHub, the in-process tests with a fake)."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WarmSession:
    """One pooled session: a hub user of the pool's own prefix running ``image``."""

    username: str
    image: str
    token: str  # the server's launch token: shown to nobody until the session is claimed
    url: str
    started: float  # the pool's clock when it became warm
    image_id: str = ""  # the image's id when it started: a rebuilt image drains it
    claimed_by: dict = field(default_factory=dict)


class PoolBackend:
    """What the pool needs from the session side; every method may raise on failure.

    ``start(image)`` starts a pooled session (no content, no GPU, a fresh token) and
    returns it once its server answers and is ready for a claim (kernel pre-start done);
    ``claim(session, user_options)`` makes it the launch's: the commit's content goes in;
    ``stop(session)`` stops it and removes the pool's hub user; ``image_id(image)`` is the
    image's current id ('' when the image is gone, None when the backend cannot tell);
    ``touch(sessions)`` tells the hub the sessions are in use, so the idle culler leaves
    them alone; ``tidy()`` runs on every pass of the refill loop and ``close()`` at the
    pool's shutdown, for what a backend keeps besides its sessions (the mount slots of
    logged-in claims).
    """

    async def start(self, image: str) -> WarmSession:
        raise NotImplementedError

    async def claim(self, session: WarmSession, user_options: dict) -> None:
        raise NotImplementedError

    async def stop(self, session: WarmSession) -> None:
        raise NotImplementedError

    async def image_id(self, image: str) -> str | None:
        raise NotImplementedError

    async def touch(self, sessions: list[WarmSession]) -> None:
        pass

    async def tidy(self) -> None:
        pass

    async def close(self) -> None:
        pass


def host_memory() -> int:
    """Bytes of memory of this machine (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def load_claims(path: Path | None, part: str = "claimed") -> dict[str, str]:
    """The claimed pooled users kept in ``path``: {user: repo key} ("claimed") or {user: who
    claimed it} ("clients"); {} when there are none."""
    try:
        return dict(json.loads(path.read_text()).get(part) or {})
    except (AttributeError, OSError, ValueError, KeyError, TypeError):
        return {}


def save_claims(path: Path | None, claims: dict[str, str],
                clients: dict[str, str] | None = None) -> None:
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"claimed": claims, "clients": clients or {}}))
    tmp.replace(path)  # a crash mid-write leaves the previous file whole
