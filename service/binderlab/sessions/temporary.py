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

from traitlets import Float
from traitlets.config import LoggingConfigurable

PAGE = 200


def temporary_and_done(user: dict, prefix: str | tuple[str, ...], starting: set[str], now: datetime,
                       grace: float) -> bool:
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
    return age >= grace


class TemporaryUserReaper(LoggingConfigurable):
    """Deletes the hub's temporary users that have no server (logged-in mode only)."""

    interval = Float(
        60, help="Seconds between two looks for finished temporary users (default 60)."
    ).tag(config=True)

    grace = Float(
        120,
        help="""Seconds a temporary user is kept at least after it was created (default
        120): one that was just created may be about to get its server.""",
    ).tag(config=True)

    def __init__(self, launcher, extra_prefixes: tuple[str, ...] = (), **kwargs):
        super().__init__(**kwargs)
        self.launcher = launcher
        # the warm pool's users too: claimed ones stay after the culler stops their server
        self.extra_prefixes = tuple(extra_prefixes)

    async def remove_finished_once(self, now: datetime | None = None) -> list[str]:
        """Delete the temporary users without a server; return their names."""
        now = now or datetime.now(UTC)
        launcher = self.launcher
        removed, offset = [], 0
        while True:
            users = await launcher.api(
                "GET", f"/users?state=inactive&limit={PAGE}&offset={offset}")
            if not isinstance(users, list) or not users:
                break
            for user in users:
                if temporary_and_done(user, (launcher.username_prefix, *self.extra_prefixes),
                                      getattr(launcher, "starting", set()), now, self.grace):
                    try:
                        await launcher.api("DELETE", f"/users/{quote(user['name'])}")
                        removed.append(user["name"])
                    except Exception:  # stopping meanwhile: the next round removes it
                        pass
            if len(users) < PAGE:
                break
            offset += PAGE
        return removed

    async def run(self) -> None:
        while True:
            try:
                removed = await self.remove_finished_once()
                if removed:
                    self.log.info("Removed %d temporary users whose sessions ended: %s",
                                  len(removed), ", ".join(removed))
            except Exception as e:
                self.log.debug("Could not remove temporary users: %s", e)
            await asyncio.sleep(self.interval)
