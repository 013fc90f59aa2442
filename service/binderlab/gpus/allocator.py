"""GPUs: what the host has (inventories) and who holds which device (the allocator).

The allocator hands out whole devices (or MIG instances, which inventories list as devices
of their own) first come, first served, and queues requests when all are busy. What is in
use is derived from the session containers' ``binderlab.gpus`` labels, never only held in
memory: a stopped, culled or dead container frees its devices at the next reconcile, and a
restarted service finds the sessions still running. In-flight launches hold a reservation
until their container exists.
"""

import asyncio
import itertools
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from traitlets import Bool, Dict, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.contract import LABEL_CLIENT, LABEL_GPUS, LABEL_REPO_KEY, LABEL_USER
from binderlab.errors import LaunchError
from binderlab.launch.limits import matches
from binderlab.platform import metrics
from binderlab.platform.rfc3339 import timestamp


@dataclass(frozen=True)
class GPUDevice:
    id: str  # what Docker's device_requests takes: an index, a GPU UUID or a MIG UUID
    name: str


class GPUInventory(LoggingConfigurable):
    """The devices sessions can get. ``list_devices()`` is called once, at start-up."""

    def list_devices(self) -> list[GPUDevice]:
        raise NotImplementedError


class StaticGPUInventory(GPUInventory):
    devices = List(
        Unicode(),
        help="""Device IDs as Docker's device_requests take them (indexes "0", "1", GPU or MIG
        UUIDs). For tests, and for hosts where discovery is not wanted.""",
    ).tag(config=True)

    def list_devices(self) -> list[GPUDevice]:
        return [GPUDevice(d, f"GPU {d}") for d in self.devices]


class NvidiaSmiGPUInventory(GPUInventory):
    """GPUs from `nvidia-smi -L`; a GPU in MIG mode is listed as its MIG instances."""

    command = List(Unicode(), default_value=["nvidia-smi", "-L"],
                   help="The command listing GPUs (default: nvidia-smi -L).").tag(config=True)

    def list_devices(self) -> list[GPUDevice]:
        if not shutil.which(self.command[0]):
            self.log.info("%s not found: no GPUs", self.command[0])
            return []
        out = subprocess.run(self.command, capture_output=True, text=True, timeout=30)
        if out.returncode:
            self.log.warning("%s failed: %s", " ".join(self.command), out.stderr.strip())
            return []
        return parse_nvidia_smi_list(out.stdout)


class NVMLGPUInventory(GPUInventory):
    """GPUs from NVML (the nvidia-ml-py package); MIG instances listed on their own."""

    def list_devices(self) -> list[GPUDevice]:
        try:
            import pynvml
        except ImportError:
            raise RuntimeError("The NVML inventory needs nvidia-ml-py: pip install "
                               "nvidia-ml-py") from None
        pynvml.nvmlInit()
        try:
            devices = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = _text(pynvml.nvmlDeviceGetName(handle))
                migs = []
                try:
                    current, _ = pynvml.nvmlDeviceGetMigMode(handle)
                except pynvml.NVMLError:
                    current = 0
                if current:
                    for m in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                        try:
                            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, m)
                        except pynvml.NVMLError:
                            continue
                        migs.append(GPUDevice(_text(pynvml.nvmlDeviceGetUUID(mig)),
                                              f"{name} MIG {m}"))
                devices.extend(migs or [GPUDevice(str(i), name)])
            return devices
        finally:
            pynvml.nvmlShutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_nvidia_smi_list(text: str) -> list[GPUDevice]:
    """Parse `nvidia-smi -L`:
    GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c...)
      MIG 1g.5gb      Device  0: (UUID: MIG-7a...)
    """
    devices: list[GPUDevice] = []
    current: tuple[str, str] | None = None
    migs: list[GPUDevice] = []

    def flush():
        if current:
            devices.extend(migs or [GPUDevice(current[0], current[1])])

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("GPU "):
            flush()
            index, _, rest = stripped[4:].partition(":")
            current, migs = (index.strip(), rest.split("(UUID:")[0].strip()), []
        elif stripped.startswith("MIG ") and "(UUID:" in stripped and current:
            uuid = stripped.split("(UUID:")[1].strip(" )")
            profile = stripped[4:].split()[0]
            migs.append(GPUDevice(uuid, f"{current[1]} MIG {profile}"))
    flush()
    return devices


class GPUAllocator(LoggingConfigurable):
    max_gpus_per_session = Integer(
        1, help="Most GPUs one session may have (default 1).").tag(config=True)
    max_gpus_per_user = Integer(
        1, help="""Most GPUs one user holds at once, over all their sessions (default 1).
        Anonymous launches count per client address.""").tag(config=True)
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
    gpu_idle_timeout = Float(
        1200, help="Seconds a GPU session may be idle before it is stopped (default 20 "
        "min; GPUs are scarce); 0: no limit.").tag(config=True)

    def __init__(self, *, devices: list[GPUDevice], tracker, **kwargs):
        super().__init__(**kwargs)
        self.devices = devices
        self.tracker = tracker  # sessions.SessionTracker
        self.held: dict[str, dict] = {}  # device -> labels of the container holding it
        self.reserved: dict[int, list[str]] = {}  # ticket -> devices of in-flight launches
        self.queue: list[int] = []
        self._tickets = itertools.count(1)
        self._changed = asyncio.Condition()
        self.sessions: list[dict] = []  # GPU session containers, for time limits
        self._stopping: set[str] = set()
        metrics.GPUS_TOTAL.set(len(devices))

    # ---- policy -------------------------------------------------------------------------

    def requested(self, repo_key: str, query: int | None, repo_file: int | None) -> int:
        if query is not None:
            return query
        for pattern, count in self.spec_gpus.items():
            if matches(repo_key, [pattern]):
                return count
        if self.repo_opt_in and repo_file:
            return repo_file
        return 0

    def check(self, count: int, repo_key: str, client: str) -> None:
        """Refuse a request that no amount of waiting would grant."""
        if count < 0:
            raise LaunchError("The GPU count must be 0 or more.", 400)
        if not self.devices:
            raise LaunchError("This host has no GPUs; launch without ?gpu=.", 400)
        if count > min(self.max_gpus_per_session, len(self.devices)):
            raise LaunchError(f"A session may have at most "
                              f"{min(self.max_gpus_per_session, len(self.devices))} GPU(s) "
                              f"here; {count} were requested.", 400)
        if self.allowed_repos and not matches(repo_key, self.allowed_repos):
            raise LaunchError(f"GPU sessions are not enabled for {repo_key} on this host. "
                              "Launch without ?gpu= for a CPU session.", 403)
        by_client = sum(1 for h in self.held.values() if h.get(LABEL_CLIENT) == client)
        if self.max_gpus_per_user and by_client + count > self.max_gpus_per_user:
            raise LaunchError(f"You already hold {by_client} GPU(s); the limit per user is "
                              f"{self.max_gpus_per_user}. Stop a GPU session first.", 429)
        by_repo = sum(1 for h in self.held.values() if h.get(LABEL_REPO_KEY) == repo_key)
        if self.max_gpus_per_repo and by_repo + count > self.max_gpus_per_repo:
            raise LaunchError(f"Sessions of {repo_key} hold {by_repo} GPU(s); the limit per "
                              f"repository is {self.max_gpus_per_repo}.", 429)

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
            self._changed.notify_all()
        self._update_metrics()

    def busy(self) -> set[str]:
        return set(self.held) | {d for ds in self.reserved.values() for d in ds}

    def free(self) -> list[str]:
        busy = self.busy()
        return [d.id for d in self.devices if d.id not in busy]

    def _update_metrics(self):
        metrics.GPUS_IN_USE.set(len(self.busy()))
        metrics.GPU_QUEUE.set(len(self.queue))

    async def acquire(self, count: int) -> AsyncIterator[dict]:
        """Wait for ``count`` devices, first come first served.

        Yields ``waiting`` events when the queue position changes; the last event is
        ``{"phase": "gpus", "ticket": t, "gpus": [...]}``. Cancelling (the client left)
        leaves the queue. The caller must ``release(ticket)`` once the session's container
        holds the devices, or the launch failed.
        """
        ticket = next(self._tickets)
        self.queue.append(ticket)
        self._update_metrics()
        last_position = None
        try:
            while True:
                async with self._changed:
                    position = self.queue.index(ticket)
                    free = self.free()
                    if position == 0 and len(free) >= count:
                        self.reserved[ticket] = free[:count]
                        self.queue.remove(ticket)
                        self._changed.notify_all()
                        break
                    if position != last_position:
                        last_position = position
                        event = {"phase": "waiting", "queue_position": position + 1,
                                 "message": f"All GPUs are busy: you are number "
                                 f"{position + 1} in the queue\n"}
                    else:
                        event = None
                    if event is None:
                        try:
                            await asyncio.wait_for(self._changed.wait(),
                                                   self.reconcile_interval)
                        except TimeoutError:
                            pass
                if event is not None:
                    yield event
        finally:
            if ticket in self.queue:
                self.queue.remove(ticket)
                async with self._changed:
                    self._changed.notify_all()
            self._update_metrics()
        yield {"phase": "gpus", "ticket": ticket, "gpus": self.reserved[ticket]}

    async def release(self, ticket: int) -> None:
        """Drop a launch's reservation (its container's label holds the devices now)."""
        await self.reconcile()
        async with self._changed:
            self.reserved.pop(ticket, None)
            self._changed.notify_all()
        self._update_metrics()

    async def run(self, launcher) -> None:
        """Reconcile periodically; stop GPU sessions past their time limits (checked every
        ``limits_interval`` seconds, through the launcher: stop, last_activity)."""
        next_limits = 0.0
        while True:
            try:
                await self.reconcile()
                if time.monotonic() >= next_limits:
                    next_limits = time.monotonic() + self.limits_interval
                    await self.enforce_limits(launcher)
            except Exception:
                self.log.exception("GPU reconcile failed")
            await asyncio.sleep(self.reconcile_interval)

    async def enforce_limits(self, launcher) -> None:
        now = time.time()
        for session in list(self.sessions):
            user = session.labels.get(LABEL_USER)
            if not user or user in self._stopping:
                continue
            started = session.started
            if self.gpu_max_age and started and now - started > self.gpu_max_age:
                self.log.info("Stopping the GPU session of %s: running for more than %.0f s",
                              user, self.gpu_max_age)
                self._stop(launcher, user)
                continue
            if self.gpu_idle_timeout:
                last = timestamp(await launcher.last_activity(user) or "")
                if last and started and now - max(last, started) > self.gpu_idle_timeout:
                    self.log.info("Stopping the GPU session of %s: idle for more than %.0f s",
                                  user, self.gpu_idle_timeout)
                    self._stop(launcher, user)

    def _stop(self, launcher, user: str) -> None:
        """Stop a session in the background (reconciling goes on meanwhile), once."""
        if user in self._stopping:
            return
        self._stopping.add(user)
        task = asyncio.ensure_future(launcher.stop(user))
        task.add_done_callback(lambda _: self._stopping.discard(user))

    def status(self) -> dict:
        return {"total": len(self.devices), "in_use": len(self.busy()),
                "queue": len(self.queue), "devices": [d.id for d in self.devices]}
