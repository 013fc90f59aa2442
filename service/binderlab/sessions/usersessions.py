"""A logged-in user's sessions, as their sessions page lists them (web/mysessions.py).

Two kinds, both the user's: their named servers (one per repository, sessions/launcher.py)
and the warm sessions they claimed (sessions/poolstorage.py). The hub's home page lists
only the first kind, and a claimed session is not the user's to stop through the hub (it
is shared with them, not owned), so the service lists and stops both.
"""

from dataclasses import asdict, dataclass
from urllib.parse import quote

from binderlab.contract import OPT_REF, OPT_REPO_KEY, OPT_TOKEN
from binderlab.errors import LaunchError


@dataclass
class UserSession:
    id: str  # what stops it: the named server's name, or the claimed pooled user's
    repo_key: str
    url: str
    commit: str  # the commit it was started (or claimed) at
    state: str  # "ready", or the hub's pending action ("spawn", "stop")
    started: str  # ISO 8601, the hub's
    last_activity: str
    warm: bool  # a warm session the user claimed

    def to_dict(self) -> dict:
        return asdict(self)


def _session(launcher, sid: str, model: dict, repo_key: str, warm: bool) -> UserSession:
    options = model.get("user_options") or {}
    return UserSession(
        id=sid, repo_key=repo_key or options.get(OPT_REPO_KEY, ""),
        url=launcher.session_url(model) if model.get("url") else "",
        commit=options.get(OPT_REF, ""),
        state="ready" if model.get("ready") else (model.get("pending") or "stopped"),
        started=model.get("started") or "", last_activity=model.get("last_activity") or "",
        warm=warm)


async def user_sessions(launcher, owner: str) -> list[UserSession]:
    """``owner``'s sessions on this host, the newest first."""
    user = await launcher.api("GET", f"/users/{quote(owner)}")
    found = [_session(launcher, name, model, "", False)
             for name, model in (user.get("servers") or {}).items()
             # binderlab's servers only: named, started with a launch's token
             if name and (model.get("user_options") or {}).get(OPT_TOKEN)]
    claimed = getattr(launcher, "claimed_sessions", None)
    if claimed is not None:
        found += [_session(launcher, pooled, model, key, True)
                  for pooled, key, model in await claimed(owner)]
    return sorted(found, key=lambda s: s.started, reverse=True)


async def stop_user_session(launcher, owner: str, sid: str) -> UserSession:
    """Stop ``owner``'s session ``sid``; their files stay (in their volume). Raises a 404
    LaunchError when they have no such session, someone else's included."""
    for session in await user_sessions(launcher, owner):
        if session.id != sid:
            continue
        if session.warm:  # the pooled hub user goes with its server, as the culler's does
            await launcher.stop(sid)
        else:
            await launcher.api("DELETE", f"/users/{quote(owner)}/servers/{quote(sid)}")
        return session
    raise LaunchError(f"You have no session {sid!r} on this host (it may have ended).", 404)
