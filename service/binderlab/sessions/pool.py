"""The warm pool: started, never-used sessions waiting for a launch of their image.

A launch of a pooled image claims one (``claim``): the session becomes the launcher's, the
commit's content goes in, and the ``ready`` event carries the pooled server's own launch
token, which nobody saw before (the pool made it and kept it). The pool then starts a
replacement in the background.

What to keep warm is a sum of *sources* per image (``set_target``): pinned images (config),
the recent launch rate (the pool's own source "rate"), and any caller's source (a course's
``course:<id>``). The sum is capped by a memory budget: each warm session is counted at
``session_memory`` bytes, and when the targets ask for more than the budget holds, images
get their share in order of their target, the largest first.

Here: the accounting and the refill loop. Starting, claiming and stopping sessions is the
backend's (sessions/pooled.py for the hub; a fake in the in-process tests).
"""

import asyncio
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from traitlets import Dict, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from binderlab.contract import LABEL_CLIENT, LABEL_REPO_KEY, LABEL_USER, OPT_CLIENT, OPT_REPO_KEY
from binderlab.platform import metrics
from binderlab.sessions.warmsessions import (
    PoolBackend,
    WarmSession,
    host_memory,
    load_claims,
    save_claims,
)

RATE_SOURCE = "rate"
PINNED_SOURCE = "pinned"


class WarmPool(LoggingConfigurable):
    """Keeps started, never-used sessions for the images launched most."""

    username_prefix = Unicode(
        "binderpool-",
        help="""Prefix of the hub users that hold pooled sessions (default 'binderpool-').
        It must differ from the launcher's username_prefix: session quotas and the
        sessions-running metric leave out users of this prefix that are still warm.""",
    ).tag(config=True)

    memory_budget = Integer(
        help="""Bytes of memory all warm sessions together may use (each counted at
        session_memory). Default: a quarter of this machine's memory. 0: no warm sessions.""",
    ).tag(config=True)

    @default("memory_budget")
    def _default_memory_budget(self):
        return host_memory() // 4

    session_memory = Integer(
        256 << 20,
        help="""Bytes one warm session is counted at against memory_budget (default 256 MiB:
        an idle JupyterLab with a kernel started once uses about 150 MiB here). Set it to
        the sessions' memory limit when they have one.""",
    ).tag(config=True)

    pinned = Dict(
        key_trait=Unicode(), value_trait=Integer(),
        help="""Warm sessions to keep per image, whatever the launch rate: {image name:
        count}, e.g. {"binderlab/env-3f2a...": 4} (`binderlab build` prints the name).
        Default: none.""",
    ).tag(config=True)

    rate_window = Float(
        900,
        help="""Seconds of recent launches the "rate" source looks at (default 900). An image
        launched n times in that window is kept at min(n, rate_max_per_image) warm
        sessions; 0 turns the rate source off.""",
    ).tag(config=True)

    rate_max_per_image = Integer(
        2,
        help="""Most warm sessions the launch rate alone keeps for one image (default 2);
        courses and pinned images ask for more themselves.""",
    ).tag(config=True)

    max_age = Float(
        1800,
        help="""Seconds a warm session may wait for a claim before it is replaced by a fresh
        one (default 1800). Keep it below the idle culler's --max-age (jupyterhub_config.py,
        BINDERLAB_MAX_AGE, default 21600 s).""",
    ).tag(config=True)

    max_starting = Integer(
        4,
        help="""Pooled sessions started at once (default 4): refills queue behind user
        launches on a small host instead of competing with them for its cores.""",
    ).tag(config=True)

    refill_delay = Float(
        2,
        help="""Seconds after a claim before the pool starts its replacement (default 2):
        the claimed session's first kernel then has the cores to itself. 0: at once.""",
    ).tag(config=True)

    refill_interval = Float(
        5, help="Seconds between checks of the pool against its targets (default 5)."
    ).tag(config=True)

    touch_interval = Float(
        300,
        help="""Seconds between the pool's reports of its warm sessions as active to the
        hub (default 300), so jupyterhub-idle-culler never culls a session waiting for a
        claim. Keep it below the culler's --timeout.""",
    ).tag(config=True)

    retry_after = Float(
        60,
        help="""Seconds an image whose pooled session failed to start waits before the pool
        tries again (default 60): a broken image must not loop.""",
    ).tag(config=True)

    def __init__(self, *, backend: PoolBackend, clock: Callable[[], float] = time.monotonic,
                 state_file: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.backend = backend
        # the claimed pooled users, kept across restarts: `binderlab up` keeps users'
        # sessions running by default, and a restarted service must still count them
        self.state_file = state_file
        self.clock = clock
        self.targets: dict[str, dict[str, int]] = defaultdict(dict)  # image -> source -> n
        self.warm: dict[str, list[WarmSession]] = defaultdict(list)
        self.starting: dict[str, int] = defaultdict(int)
        self.claimed: dict[str, int] = defaultdict(int)  # claims since start, per image
        self.claimed_users: dict[str, str] = load_claims(state_file)  # pooled user -> its repo key
        # pooled user -> who claimed it (its launch's client: a user or an address), kept
        # with the claims so per-person caps count it after a restart too
        self.claimed_clients: dict[str, str] = load_claims(state_file, "clients")
        self.launches: dict[str, deque] = defaultdict(deque)  # image -> launch times
        self.failed_at: dict[str, float] = {}
        self.hold_until = -math.inf  # no pooled session starts before this (after a claim)
        # (owner, repo key) -> [lock, launches holding or waiting for it] (owner_turn)
        self._turns: dict[tuple[str, str], list] = {}
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._closing = False
        for image, count in self.pinned.items():
            self.set_target(PINNED_SOURCE, image, count)

    # ---- the interface other parts code against --------------------------------------

    def set_target(self, source: str, image: str, count: int) -> None:
        """Keep `count` started, never-used sessions of `image` for `source`
        ("pinned", "rate", "course:<id>", ...); count 0 drops the source. The pool keeps,
        per image, the sum over sources, capped by the memory budget."""
        if count < 0:
            raise ValueError(f"a pool target cannot be negative ({count})")
        if count:
            self.targets[image][source] = count
        else:
            self.targets.get(image, {}).pop(source, None)
            if image in self.targets and not self.targets[image]:
                del self.targets[image]
        self.wake()

    def status(self) -> dict:
        """{image: {"target": n, "warm": n, "starting": n, "claimed": n}}"""
        capped = self.capped_targets()
        images = set(self.targets) | {i for i, s in self.warm.items() if s} | \
            {i for i, n in self.starting.items() if n} | set(self.claimed)
        return {image: {"target": capped.get(image, 0), "warm": len(self.warm.get(image, [])),
                        "starting": self.starting.get(image, 0),
                        "claimed": self.claimed.get(image, 0)} for image in sorted(images)}

    # ---- accounting ------------------------------------------------------------------

    def wanted(self, image: str) -> int:
        return sum(self.targets.get(image, {}).values())

    def capacity(self) -> int:
        """Warm sessions the memory budget holds."""
        if self.session_memory <= 0:
            return 0
        return max(self.memory_budget // self.session_memory, 0)

    def capped_targets(self) -> dict[str, int]:
        """Per image, what the pool keeps: the targets' sums within the memory budget,
        the images with the largest targets served first (ties by name, stable)."""
        room = self.capacity()
        capped = {}
        for image in sorted(self.targets, key=lambda i: (-self.wanted(i), i)):
            capped[image] = min(self.wanted(image), room)
            room -= capped[image]
        return capped

    def holds(self, username: str) -> bool:
        """Whether ``username`` is a pooled session that nobody claimed: not a user's
        session (quotas and the sessions-running metric leave it out)."""
        return username.startswith(self.username_prefix) and \
            username not in self.claimed_users

    def user_sessions(self, sessions: list) -> list:
        """``sessions`` (trackers.Session) without the warm ones; a claimed pooled session
        counts under the repository it was claimed for (its container was labelled when
        it started, with no repository)."""
        kept = []
        live = {s.labels.get(LABEL_USER, "") for s in sessions}
        ended = [u for u in self.claimed_users if u not in live]
        for user in ended:  # stopped or culled since: forgotten
            del self.claimed_users[user]
            self.claimed_clients.pop(user, None)
        if ended:
            save_claims(self.state_file, self.claimed_users, self.claimed_clients)
        for s in sessions:
            user = s.labels.get(LABEL_USER, "")
            if self.holds(user):
                continue
            if user in self.claimed_users and not s.labels.get(LABEL_REPO_KEY):
                s.labels = {**s.labels, LABEL_REPO_KEY: self.claimed_users[user]}
            if self.claimed_clients.get(user) and not s.labels.get(LABEL_CLIENT):
                # whose it is (a logged-in user, an address): per-person caps count it
                s.labels = {**s.labels, LABEL_CLIENT: self.claimed_clients[user]}
            kept.append(s)
        return kept

    def record_launch(self, image: str) -> None:
        """A launch of ``image``: the rate source's input."""
        if self.rate_window <= 0:
            return
        now = self.clock()
        times = self.launches[image]
        times.append(now)
        self._update_rate(image, now)

    def _update_rate(self, image: str, now: float) -> None:
        times = self.launches[image]
        while times and times[0] < now - self.rate_window:
            times.popleft()
        self.set_target(RATE_SOURCE, image, min(len(times), self.rate_max_per_image))
        if not times:
            del self.launches[image]

    @asynccontextmanager
    async def owner_turn(self, owner: str, repo_key: str):
        """One launch at a time per logged-in user and repository: two tabs of one student
        must not claim two warm sessions that merge into and mount the same folder; the
        second waits, then finds the first one's session running."""
        key = (owner, repo_key)
        turn = self._turns.setdefault(key, [asyncio.Lock(), 0])
        turn[1] += 1
        try:
            async with turn[0]:
                yield
        finally:
            turn[1] -= 1
            if not turn[1]:
                del self._turns[key]

    def claim(self, image: str, user_options: dict | None = None) -> WarmSession | None:
        """Take a warm session of ``image`` (None when there is none). Synchronous: two
        launches in one event loop can never take the same session."""
        sessions = self.warm.get(image)
        if not sessions:
            metrics.POOL_CLAIMS.labels("miss").inc()
            return None
        session = sessions.pop(0)  # the oldest first: it is nearest to its max age
        session.claimed_by = dict(user_options or {})
        self.claimed[image] += 1
        self.claimed_users[session.username] = (user_options or {}).get(OPT_REPO_KEY, "")
        self.claimed_clients[session.username] = (user_options or {}).get(OPT_CLIENT, "")
        save_claims(self.state_file, self.claimed_users, self.claimed_clients)
        metrics.POOL_CLAIMS.labels("hit").inc()
        self._gauge()
        # the refill waits refill_delay: the claimed session's first kernel (thebe asks for
        # it right after ready) must not compete with a new server's start for the cores
        self.hold_until = max(self.hold_until, self.clock() + self.refill_delay)
        if self.refill_delay <= 0:
            self.wake()
        else:
            try:
                asyncio.get_running_loop().call_later(self.refill_delay, self.wake)
            except RuntimeError:  # no loop (a synchronous caller): the next pass refills
                pass
        return session

    def released(self, username: str) -> None:
        """A claimed session ended (stopped by its user, culled): forget it."""
        self.claimed_users.pop(username, None)
        self.claimed_clients.pop(username, None)
        save_claims(self.state_file, self.claimed_users, self.claimed_clients)

    # ---- the refill loop -------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._spawn(self.run())
        if self.touch_interval > 0:
            self._spawn(self.touch_periodically())

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                self.log.exception("Warm pool: reconcile failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.refill_interval)
            except TimeoutError:
                pass

    async def reconcile(self) -> None:
        """One pass: expire the rate, recycle old sessions, drain stale images, stop what
        is over target, start what is missing (at most max_starting at once)."""
        now = self.clock()
        await self.backend.tidy()  # e.g. the mount slots of ended claimed sessions
        for image in list(self.launches):
            self._update_rate(image, now)
        capped = self.capped_targets()
        for image in list(self.warm):
            sessions = self.warm[image]
            old = [s for s in sessions if now - s.started >= self.max_age]
            current = await self.backend.image_id(image) if sessions else None
            stale = [s for s in sessions if s not in old and current is not None
                     and s.image_id != current]
            extra = max(len(sessions) - len(old) - len(stale) - capped.get(image, 0), 0)
            rest = [s for s in sessions if s not in old and s not in stale]
            surplus = rest[len(rest) - extra:] if extra else []  # the youngest go
            for s in old + stale + surplus:
                sessions.remove(s)
                self._spawn(self._stop(s, "max age" if s in old else
                                       "image rebuilt or removed" if s in stale else
                                       "over target"))
            if not sessions:
                del self.warm[image]
        in_flight = sum(self.starting.values())
        if now < self.hold_until:
            capped = {}  # a claim just happened: its refill waits
        for image, target in capped.items():
            if now < self.failed_at.get(image, -math.inf) + self.retry_after:
                continue
            missing = target - len(self.warm.get(image, [])) - self.starting.get(image, 0)
            if missing > 0 and await self.backend.image_id(image) == "":
                continue  # evicted or not built yet: the target waits for the image
            while missing > 0 and in_flight < self.max_starting:
                self.starting[image] += 1
                in_flight += 1
                missing -= 1
                self._spawn(self._start(image))
        self._gauge()

    async def _start(self, image: str) -> None:
        try:
            session = await self.backend.start(image)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.failed_at[image] = self.clock()
            metrics.POOL_FAILURES.inc()
            self.log.warning("Warm pool: could not start a session of %s: %r", image, e)
            return
        finally:
            self.starting[image] -= 1
            if not self.starting[image]:
                del self.starting[image]
            self.wake()
        session.started = self.clock()
        if self._closing:
            await self._stop(session, "shutting down")
            return
        self.warm[image].append(session)
        self._gauge()

    async def _stop(self, session: WarmSession, why: str) -> None:
        self.log.info("Warm pool: stopping %s (%s): %s", session.username, session.image, why)
        try:
            await self.backend.stop(session)
        except Exception as e:
            self.log.warning("Warm pool: could not stop %s: %s", session.username, e)

    async def drain(self, image: str) -> int:
        """Stop every warm session of ``image`` (it is being evicted or was rebuilt) and
        wait for them to stop; the targets stay, so a rebuilt image fills again."""
        sessions = self.warm.pop(image, [])
        await asyncio.gather(*(self._stop(s, "image drained") for s in sessions))
        self._gauge()
        return len(sessions)

    async def touch_periodically(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.touch_interval)
            warm = [s for sessions in self.warm.values() for s in sessions]
            if warm:
                try:
                    await self.backend.touch(warm)
                except Exception as e:
                    self.log.warning("Warm pool: could not report activity: %s", e)

    def _gauge(self) -> None:
        metrics.POOL_WARM.set(sum(len(s) for s in self.warm.values()))
        metrics.POOL_STARTING.set(sum(self.starting.values()))

    async def close(self) -> None:
        """Stop the loop and every warm and starting session; nothing is left behind."""
        self._closing = True
        for task in list(self._tasks):
            if task.get_coro().__name__ in ("run", "touch_periodically"):
                task.cancel()
        # starting sessions finish their start and stop themselves (_start sees _closing)
        sessions = [s for group in self.warm.values() for s in group]
        self.warm.clear()
        await asyncio.gather(*(self._stop(s, "shutting down") for s in sessions))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.close()  # e.g. the mount slots (sessions/poolmounts.py)
        self._gauge()


async def host_user_sessions(tracker, image_prefix: str, pool: WarmPool | None) -> list:
    """This host's sessions (its image prefix) that are users': the pool's warm sessions
    left out, a claimed one counted under its repository and whoever claimed it. What the
    session quotas and the sessions-running gauge count."""
    ours = [s for s in await tracker.sessions() if s.image.startswith(image_prefix)]
    return pool.user_sessions(ours) if pool is not None else ours
