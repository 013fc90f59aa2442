"""GPUs: what the host has (inventories) and who holds which device (the allocator).

The allocator hands out whole devices (or MIG instances, which inventories list as devices
of their own) first come, first served, and queues requests when all are busy. What is in
use is derived from the session containers' ``binderlab.gpus`` labels, never only held in
memory: a stopped, culled or dead container frees its devices at the next reconcile, and a
restarted service finds the sessions still running. In-flight launches hold a reservation
until their container exists.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from traitlets import Bool, Dict, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.contract import LABEL_CLIENT, LABEL_GPUS, LABEL_REPO_KEY, LABEL_USER, matches
from binderlab.errors import LaunchError
from binderlab.gpus.budgets import GPUBudgets
from binderlab.gpus.inventories import (  # noqa: F401 (the app and tests import them here)
    GPUDevice,
    GPUInventory,
    NvidiaSmiGPUInventory,
    NVMLGPUInventory,
    StaticGPUInventory,
    parse_nvidia_smi_list,
)
from binderlab.gpus.reservations import Claim, ReservationBook
from binderlab.platform import metrics
from binderlab.platform.rfc3339 import timestamp


@dataclass(frozen=True)
class Queued:
    """A launch waits for GPUs; ``position`` 1 is next."""

    position: int


@dataclass(frozen=True)
class Reservation:
    """Devices set aside for one launch until its container holds them."""

    ticket: str
    devices: list[str]


def launch_gpus(allocator: "GPUAllocator | None", repo_key: str, asked: int | None,
                repo_file: int | None, client: str) -> int:
    """How many GPUs a launch gets (the one call the pipeline makes before acquiring).

    A host without GPUs has no allocator: asking it for one is refused, a repository's
    own wish (binderlab.yml) is ignored there, its sessions run on the CPU."""
    if allocator is None:
        if asked:
            raise LaunchError("This host has no GPUs; launch without ?gpu=.", 400)
        return 0
    return allocator.decide(repo_key, asked, repo_file, client)


class GPUAllocator(LoggingConfigurable):
    max_gpus_per_session = Integer(
        1, help="Most GPUs one session may have (default 1).").tag(config=True)
    max_gpus_per_user = Integer(
        1, help="""Most GPUs one user holds at once, over all their sessions (default 1).
        Anonymous launches count per client address.""").tag(config=True)
    max_queued_per_user = Integer(
        1, help="""Most launches one logged-in user may have waiting in the GPU queue at
        once (default 1), so one person's requests cannot push the people behind them back;
        more are refused (429) until the waiting one got its GPU. 0: no limit. Anonymous
        launches are bounded by max_gpus_per_user per address, as before.""",
    ).tag(config=True)
    max_gpus_per_repo = Integer(
        0, help="Most GPUs the sessions of one repository hold at once; 0 (default): no cap."
    ).tag(config=True)
    allowed_repos = List(
        Unicode(),
        help="""Repositories that may have GPU sessions, as patterns on
        '<provider>/<repo>' (fnmatch, e.g. 'gh/physics-dept/*'). Empty (default): any.""",
    ).tag(config=True)
    spec_gpus = Dict(
        value_trait=Integer(),
        help="""Operator policy: GPUs for launches whose '<provider>/<repo>' matches a
        pattern, e.g. {'gh/ml-course/*': 1}. A `?gpu=` request overrides it.""",
    ).tag(config=True)
    repo_opt_in = Bool(
        True, help="""Honour a repository's own request in binder/binderlab.yml (or
        .binder/, or the root): `gpu: 1`.""").tag(config=True)
    limits_interval = Float(
        60, help="Seconds between checks of GPU sessions' time limits (default 60)."
    ).tag(config=True)
    reconcile_interval = Float(
        2, help="Seconds between checks of which sessions hold GPUs (default 2)."
    ).tag(config=True)
    gpu_max_age = Float(
        4 * 3600, help="Seconds a GPU session may run before it is stopped (default 4 h); "
        "0: no limit. CPU sessions follow the hub's idle culler instead.").tag(config=True)
    recovered_reservation_timeout = Float(
        600, help="""Seconds a GPU reservation found on disk after a restart is kept for the
        launch's session container to appear (default 600; a little over the hub's start
        timeout). Until then its devices go to nobody else.""").tag(config=True)
    gpu_idle_timeout = Float(
        1200, help="Seconds a GPU session may be idle before it is stopped (default 20 "
        "min; GPUs are scarce); 0: no limit.").tag(config=True)

    def __init__(self, *, devices: list[GPUDevice], tracker, state_file: Path | None = None,
                 budget_file: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        # GPU-time budgets per person (gpus/budgets.py): charged on every reconcile
        self.budgets = GPUBudgets(parent=self, log=self.log, state_file=budget_file)
        self.exhausted: set[str] = set()  # people holding GPUs with no budget left
        self.devices = devices
        self.tracker = tracker  # sessions.SessionTracker
        self.held: dict[str, dict] = {}  # device -> labels of the container holding it
        self.book = ReservationBook(state_file, self.recovered_reservation_timeout)
        self.queue: list[str] = []  # tickets waiting, first come first served
        self._changed = asyncio.Condition()
        self.sessions: list = []  # GPU sessions (sessions.Session), for time limits
        self._stopping: set[tuple] = set()  # (user, repo key) of sessions being stopped
        metrics.GPUS_TOTAL.set(len(devices))

    # ---- policy: how many GPUs a launch gets, and whether it may have them ---------------

    def requested(self, repo_key: str, asked: int | None, repo_file: int | None) -> int:
        """The URL's ``?gpu=`` first, then the operator's spec_gpus, then the repository's
        own binderlab.yml (when repo_opt_in)."""
        if asked is not None:
            return asked
        for pattern, count in self.spec_gpus.items():
            if matches(repo_key, [pattern]):
                return count
        if self.repo_opt_in and repo_file:
            return repo_file
        return 0

    def decide(self, repo_key: str, asked: int | None, repo_file: int | None,
               client: str) -> int:
        """The GPUs this launch gets; refuses at once what no wait would grant."""
        count = self.requested(repo_key, asked, repo_file)
        if count:
            self.check(count, repo_key, client)
        return count

    def check(self, count: int, repo_key: str, client: str) -> None:
        """Refuse a request that no amount of waiting would grant. The shares count held
        devices, reservations and queued requests alike, so concurrent launches of one
        client cannot all pass (``acquire`` re-checks under the lock)."""
        if count < 0:
            raise LaunchError("The GPU count must be 0 or more.", 400)
        most = min(self.max_gpus_per_session, len(self.devices))
        if count > most:
            raise LaunchError(f"A session may have at most {most} GPU(s) here; {count} were "
                              "requested.", 400)
        if self.allowed_repos and not matches(repo_key, self.allowed_repos):
            raise LaunchError(f"GPU sessions are not enabled for {repo_key} on this host. "
                              "Launch without ?gpu= for a CPU session.", 403)
        by_client = self._share(LABEL_CLIENT, "client", client)
        if self.max_gpus_per_user and by_client + count > self.max_gpus_per_user:
            raise LaunchError(f"You already hold or wait for {by_client} GPU(s); the limit "
                              f"per user is {self.max_gpus_per_user}. Stop a GPU session "
                              "first.", 429)
        if (self.max_queued_per_user and self.budgets.person(client)
                and self._queued(client) >= self.max_queued_per_user):
            raise LaunchError(f"You already wait in the GPU queue with {self._queued(client)} "
                              f"launch(es), the most one person may ({self.max_queued_per_user}"
                              "); wait for it, or close its page, before launching another.",
                              429)
        by_repo = self._share(LABEL_REPO_KEY, "repo_key", repo_key)
        if self.max_gpus_per_repo and by_repo + count > self.max_gpus_per_repo:
            raise LaunchError(f"Sessions of {repo_key} hold {by_repo} GPU(s); the limit per "
                              f"repository is {self.max_gpus_per_repo}.", 429)
        if count:  # before any build or wait: a used-up budget renews at a known time
            self.budgets.check(client)

    def budget_event(self, client: str, devices: int) -> dict | None:
        """The ready event's gpu_budget for a GPU session of ``client`` that just started
        with ``devices``; None when no budget applies."""
        left = self.budgets.left(client)
        if left is None:
            return None
        # the rest runs out at the rate of every device the person holds now
        holding = sum(1 for labels in self.held.values() if labels.get(LABEL_CLIENT) == client)
        return left.as_event(self.budgets.clock(), max(devices, holding))

    def _queued(self, client: str) -> int:
        """Launches of ``client`` waiting in the queue (claims without devices yet)."""
        return sum(1 for c in self.book.claims.values() if c.client == client and not c.devices)

    def _share(self, label: str, attr: str, value: str) -> int:
        """GPUs held, reserved or waited for under one client or repository (a device both
        held and still reserved, in the moment between container and release, once)."""
        devices = {d for d, labels in self.held.items() if labels.get(label) == value}
        queued = 0
        for claim in self.book.claims.values():
            if getattr(claim, attr) != value:
                continue
            if claim.devices:
                devices.update(claim.devices)
            else:
                queued += claim.count
        return len(devices) + queued

    # ---- state --------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Read which devices the session containers hold; wake the queue if some freed."""
        held, sessions = {}, []
        for session in await self.tracker.sessions():
            if not session.labels.get(LABEL_GPUS):
                continue
            sessions.append(session)
            for device in filter(None, session.labels[LABEL_GPUS].split(",")):
                held[device] = session.labels
        async with self._changed:
            self.held, self.sessions = held, sessions
            self.book.drop_recovered(set(held))
            self._changed.notify_all()
            # who holds which device, from containers and reservations alike: a budget is
            # charged from the reservation on, until neither holds the device
            owners = {d: labels.get(LABEL_CLIENT, "") for d, labels in held.items()}
            owners.update({d: c.client for c in self.book.claims.values() for d in c.devices})
            self.exhausted = self.budgets.charge(owners)
        self._update_metrics()

    @property
    def reserved(self) -> dict[str, list[str]]:
        return self.book.reserved()

    def busy(self) -> set[str]:
        return set(self.held) | {d for ds in self.reserved.values() for d in ds}

    def free(self) -> list[str]:
        busy = self.busy()
        return [d.id for d in self.devices if d.id not in busy]

    def _update_metrics(self):
        metrics.GPUS_IN_USE.set(len(self.busy()))
        metrics.GPU_QUEUE.set(len(self.queue))

    async def acquire(self, count: int, repo_key: str,
                      client: str) -> AsyncIterator["Queued | Reservation"]:
        """Wait for ``count`` devices, first come first served.

        Yields ``Queued(position)`` when the queue position changes, and last a
        ``Reservation``. The shares are checked again under the lock as the request joins
        the queue (LaunchError 429 over a cap). Cancelling (the client left) leaves the
        queue. The caller must ``release(ticket)`` once the session's container holds the
        devices, or the launch failed.
        """
        ticket = self.book.new_ticket()
        async with self._changed:
            self.check(count, repo_key, client)
            self.book.claims[ticket] = Claim(client, repo_key, count)
            self.queue.append(ticket)
        self._update_metrics()
        last_position = None
        try:
            while True:
                async with self._changed:
                    position = self.queue.index(ticket)
                    free = self.free()
                    if position == 0 and len(free) >= count:
                        self.book.claims[ticket].devices = free[:count]
                        self.book.save()
                        self.queue.remove(ticket)
                        self._changed.notify_all()
                        break
                    news = position != last_position
                    last_position = position
                    if not news:
                        try:
                            await asyncio.wait_for(self._changed.wait(),
                                                   self.reconcile_interval)
                        except TimeoutError:
                            pass
                if news:
                    yield Queued(position + 1)
        except BaseException:
            async with self._changed:
                self.book.claims.pop(ticket, None)
                self._changed.notify_all()
            raise
        finally:
            if ticket in self.queue:
                self.queue.remove(ticket)
                async with self._changed:
                    self._changed.notify_all()
            self._update_metrics()
        yield Reservation(ticket, list(self.book.claims[ticket].devices))

    async def release(self, ticket: str) -> None:
        """Drop a launch's reservation (its container's label holds the devices now, or the
        launch failed)."""
        await self.reconcile()
        async with self._changed:
            if self.book.claims.pop(ticket, None) is not None:
                self.book.save()
            self._changed.notify_all()
        self._update_metrics()

    async def run(self, launcher) -> None:
        """Reconcile periodically; stop GPU sessions past their time limits (checked every
        ``limits_interval`` seconds, through the launcher: stop, last_activity)."""
        next_limits = 0.0
        while True:
            try:
                await self.reconcile()
                self.enforce_budgets(launcher)
                if time.monotonic() >= next_limits:
                    next_limits = time.monotonic() + self.limits_interval
                    await self.enforce_limits(launcher)
            except Exception:
                self.log.exception("GPU reconcile failed")
            await asyncio.sleep(self.reconcile_interval)

    def enforce_budgets(self, launcher) -> None:
        """Stop the GPU sessions of people whose GPU time is used up (at the reconcile
        after it ran out; the ready event told them when that would be)."""
        for session in self.sessions:
            client = session.labels.get(LABEL_CLIENT, "")
            key = (session.labels.get(LABEL_USER), session.labels.get(LABEL_REPO_KEY))
            if client in self.exhausted and key[0] and key not in self._stopping:
                self.log.info("Stopping the GPU session of %s (%s): GPU budget used up",
                              client, session.labels.get(LABEL_REPO_KEY, ""))
                self._stop(launcher, session.labels)

    async def enforce_limits(self, launcher) -> None:
        now = time.time()
        # a session whose launch still holds its reservation is starting, not running: its
        # time counts once it is ready (a slow start must not end it before the user has it)
        starting = {d for c in self.book.claims.values() if not c.recovered for d in c.devices}
        for session in list(self.sessions):
            user = session.labels.get(LABEL_USER)
            if not user or (user, session.labels.get(LABEL_REPO_KEY)) in self._stopping:
                continue
            if starting & set(session.labels.get(LABEL_GPUS, "").split(",")):
                continue
            started = session.started
            if self.gpu_max_age and started and now - started > self.gpu_max_age:
                self.log.info("Stopping the GPU session of %s: running for more than %.0f s",
                              user, self.gpu_max_age)
                self._stop(launcher, session.labels)
                continue
            if self.gpu_idle_timeout:
                last = timestamp(await launcher.last_activity(user) or "")
                if last and started and now - max(last, started) > self.gpu_idle_timeout:
                    self.log.info("Stopping the GPU session of %s: idle for more than %.0f s",
                                  user, self.gpu_idle_timeout)
                    self._stop(launcher, session.labels)

    def _stop(self, launcher, labels: dict) -> None:
        """Stop a session in the background (reconciling goes on meanwhile), once. The
        launcher stops that session only (a logged-in user's other servers stay)."""
        key = (labels.get(LABEL_USER), labels.get(LABEL_REPO_KEY))
        if key in self._stopping:
            return
        self._stopping.add(key)
        task = asyncio.ensure_future(launcher.stop_session(labels))
        task.add_done_callback(lambda _: self._stopping.discard(key))

    def status(self) -> dict:
        return {"total": len(self.devices), "in_use": len(self.busy()),
                "queue": len(self.queue), "devices": [d.id for d in self.devices]}
