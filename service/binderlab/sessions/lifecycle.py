"""What happens to a session after the hub started it: counted while it runs, its container
removed once it stopped, even when the hub could not remove it.

Sessions are created without Docker's auto-remove (see jupyterhub_config.py), so the hub's
DockerSpawner removes them; while the engine restarts it cannot, and the service does it
instead: right after a stop (``stopped``, retried for a minute) and, as a backstop, by the
reaper that removes session containers stopped or never started for two minutes. On
Kubernetes, KubeSpawner deletes pods itself and only the count runs.
"""

import asyncio
import time

from binderlab.contract import LABEL_USER
from binderlab.platform import metrics
from binderlab.sessions.pool import host_user_sessions
from binderlab.sessions.reaping import should_reap
from binderlab.sessions.trackers import SessionTracker

STOP_RETRIES = 30  # attempts to remove a stopped session's containers, ...
STOP_RETRY_SECONDS = 2  # ... this far apart (a minute in all)
REAP_AFTER_SECONDS = 120  # a session container stopped (or never started) this long is removed
REAP_INTERVAL_SECONDS = 30
COUNT_INTERVAL_SECONDS = 10


class SessionLifecycle:
    """The session tracker with the clean-up of what stopped sessions leave behind."""

    def __init__(self, tracker: SessionTracker, engine, image_prefix: str, log):
        self.tracker = tracker
        self.engine = engine  # a DockerEngine, or None (Kubernetes, or no local engine)
        self.image_prefix = image_prefix
        self.log = log
        self._tasks: set[asyncio.Task] = set()
        self.starting: set[str] = set()  # users being started now (the launcher fills it)
        # how long a never-started ("created") container may wait for its start: the
        # launcher raises it to its own start timeout
        self.created_grace: float = REAP_AFTER_SECONDS
        self.pool = None  # the WarmPool: its warm sessions are not counted as sessions

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        """Start the session count and (with a local engine) the reaper."""
        self._spawn(self.count_sessions())
        if self.engine is not None:
            self._spawn(self.reap_containers())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stopped(self, username: str) -> None:
        """The hub stopped ``username``'s session: remove its containers if the hub could
        not (the engine was restarting, say). Retries in the background for a minute."""
        if self.engine is not None:
            self._spawn(self._remove_containers_of(username))

    async def _remove_containers_of(self, username: str) -> None:
        for _ in range(STOP_RETRIES):
            try:
                containers = await self.engine.call(
                    self.engine.client.containers.list, all=True, ignore_removed=True,
                    filters={"label": f"{LABEL_USER}={username}"})
                for c in containers:
                    await self.engine.call(c.remove, force=True)
                return
            except Exception:
                await asyncio.sleep(STOP_RETRY_SECONDS)

    async def reap_once(self, now: float | None = None) -> list[str]:
        """Remove this host's session containers that stopped or never started
        REAP_AFTER_SECONDS ago; return their names."""
        now = time.time() if now is None else now
        containers = await self.engine.call(
            self.engine.client.containers.list, all=True, ignore_removed=True,
            filters={"label": LABEL_USER, "status": ["exited", "dead", "created"]})
        removed = []
        for c in containers:
            if should_reap(c.attrs, now, self.image_prefix, self.starting,
                           stopped_grace=REAP_AFTER_SECONDS,
                           created_grace=self.created_grace):
                self.log.info("Removing stopped session container %s", c.name)
                await self.engine.call(c.remove, force=True)
                removed.append(c.name)
        return removed

    async def reap_containers(self) -> None:
        while True:
            try:
                await self.reap_once()
            except Exception as e:
                self.log.debug("Could not reap containers: %s", e)
            await asyncio.sleep(REAP_INTERVAL_SECONDS)

    async def count_sessions(self) -> None:
        """Keep the sessions-running gauge current (this host's sessions: image prefix)."""
        while True:
            try:
                metrics.SESSIONS.set(len(await host_user_sessions(
                    self.tracker, self.image_prefix, self.pool)))
            except Exception as e:
                self.log.debug("Could not count sessions: %s", e)
            await asyncio.sleep(COUNT_INTERVAL_SECONDS)
