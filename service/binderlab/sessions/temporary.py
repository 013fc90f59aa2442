"""Removing the temporary users of anonymous launches in logged-in mode.

With c.BinderLab.authentication = 'none' jupyterhub-idle-culler deletes users along with
their culled servers (--cull-users): every hub user is a temporary one. In logged-in mode
the hub also holds people, whose identity (and, through it, their persistent volume) must
outlive a culled session, so the culler runs without --cull-users there
(jupyterhub_config.py), and the binder service removes its own temporary users (named with
c.HubLauncher.username_prefix) once they have no server: a temporary user's session cannot
be started again (its token belonged to the server), so nothing is lost.
"""

import asyncio
from datetime import UTC, datetime
from urllib.parse import quote

INTERVAL_SECONDS = 60
GRACE_SECONDS = 120  # a user created this recently may be about to get its server
PAGE = 200


def temporary_and_done(user: dict, prefix: str, starting: set[str], now: datetime) -> bool:
    """Whether ``user`` (the hub API's model) is a temporary user whose session is over."""
    name = user.get("name", "")
    if not name.startswith(prefix) or name in starting or user.get("admin"):
        return False
    if any(s.get("ready") or s.get("pending") for s in (user.get("servers") or {}).values()):
        return False
    created = user.get("created") or user.get("last_activity")
    try:
        age = (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    except (AttributeError, ValueError):
        return False
    return age >= GRACE_SECONDS


async def remove_finished_once(launcher, now: datetime | None = None) -> list[str]:
    """Delete the temporary users without a server; return their names."""
    now = now or datetime.now(UTC)
    removed, offset = [], 0
    while True:
        users = await launcher.api("GET", f"/users?state=inactive&limit={PAGE}&offset={offset}")
        if not isinstance(users, list) or not users:
            break
        for user in users:
            if temporary_and_done(user, launcher.username_prefix,
                                  getattr(launcher, "starting", set()), now):
                try:
                    await launcher.api("DELETE", f"/users/{quote(user['name'])}")
                    removed.append(user["name"])
                except Exception:  # stopping meanwhile: the next round removes it
                    pass
        if len(users) < PAGE:
            break
        offset += PAGE - len(removed)
    return removed


async def remove_finished_periodically(launcher, log) -> None:
    while True:
        try:
            removed = await remove_finished_once(launcher)
            if removed:
                log.info("Removed %d temporary users whose sessions ended", len(removed))
        except Exception as e:
            log.debug("Could not remove temporary users: %s", e)
        await asyncio.sleep(INTERVAL_SECONDS)
