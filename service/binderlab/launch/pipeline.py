"""One launch, from a spec to a running session, as a stream of BinderHub-style events.

resolve -> fetch -> key -> (build | cache hit) -> launch -> ready. The HTTP handler and the
CLI both drive this; neither knows how the steps work.
"""

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from binderlab.builders.cacheindex import CacheIndex
from binderlab.builders.repo2docker import (
    LABEL_COMMIT,
    LABEL_KEY,
    LABEL_KIND,
    LABEL_REPO,
    LABEL_UID,
    Builder,
)
from binderlab.errors import LaunchError, RepositoryError, outcome
from binderlab.fingerprint.buildpacks import Fingerprint, FingerprintWorker
from binderlab.gpus.allocator import LABEL_REPO_KEY, GPUAllocator
from binderlab.launch.launchlog import LaunchLog
from binderlab.launch.limits import LaunchLimits
from binderlab.platform import metrics
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import RepoProvider, ResolvedRepo, repo_key
from binderlab.sessions.launcher import Launcher
from binderlab.sessions.trackers import SessionTracker


@dataclass
class LaunchRequest:
    provider: RepoProvider
    raw_spec: str
    build_only: bool = False
    extra: dict = field(default_factory=dict)
    gpu: int | None = None  # GPUs asked for in the URL (?gpu=N); None: not asked
    client: str = ""  # the client's address, for per-user limits of anonymous launches
    from_page: bool = False  # carries a valid loading-page ticket (see limits.py)


@dataclass
class LaunchRecord:
    """What the launch log keeps of one launch (see launchlog.py for the schema)."""

    provider: str
    spec: str
    repo: str = ""
    ref: str = ""
    status: str = "failed"
    status_code: int = 200
    build: bool = False
    image_kind: str = ""
    gpus: int = 0


@dataclass
class ImagePlan:
    """What a commit needs: the image name, its cache key and how it was keyed."""

    image: str
    fingerprint: Fingerprint
    tree: str
    mirror: Path
    labels: dict[str, str]

    @property
    def kind(self) -> str:
        return self.fingerprint.kind


class Pipeline:
    def __init__(self, *, builder: Builder, launcher: Launcher | None, mirrors: RepoMirrors,
                 fingerprints: FingerprintWorker, index: CacheIndex, config_digest: str,
                 image_prefix: str, blocked_networks, public_url: str, work_dir: Path,
                 content_dir: Path, gpus: GPUAllocator | None = None,
                 limits: LaunchLimits | None = None, launch_log: LaunchLog | None = None,
                 providers: list[RepoProvider] = (), max_repo_bytes: int = 0,
                 sessions: SessionTracker | None = None):
        self.builder = builder
        self.launcher = launcher
        self.mirrors = mirrors
        self.fingerprints = fingerprints
        self.index = index
        self.config_digest = config_digest
        self.image_prefix = image_prefix
        self.blocked_networks = blocked_networks
        self.public_url = public_url
        self.work_dir = work_dir
        self.content_dir = content_dir
        self.gpus = gpus
        self.limits = limits
        self.launch_log = launch_log
        self.providers = list(providers)
        self.max_repo_bytes = max_repo_bytes
        self.sessions = sessions
        self._quota_lock = asyncio.Lock()
        self._starting: Counter[str] = Counter()

    async def resolve(self, request: LaunchRequest) -> ResolvedRepo:
        """Parse the spec, apply the host's limits, and resolve the ref to a commit."""
        spec = request.provider.parse(request.raw_spec)
        if self.limits is not None:
            key = repo_key(spec, self.providers)
            self.limits.check_spec(key)
            self.limits.check_rate(request.client, key, request.from_page)
        return await request.provider.resolve(spec, self.blocked_networks)

    def repo_key(self, resolved: ResolvedRepo) -> str:
        return repo_key(resolved.spec, self.providers)

    @asynccontextmanager
    async def session_slot(self, resolved: ResolvedRepo):
        """Hold a place under the session quotas while a session starts.

        Running sessions are this host's (image prefix), as the session tracker finds them;
        launches still starting count too, so concurrent launches cannot all see room for
        one.
        """
        if self.limits is None or not (self.limits.max_sessions
                                       or self.limits.max_sessions_per_repo):
            yield
            return
        key = self.repo_key(resolved)
        async with self._quota_lock:
            ours = [s for s in await self.sessions.sessions()
                    if s.image.startswith(self.image_prefix)]
            for_repo = sum(1 for s in ours if s.labels.get(LABEL_REPO_KEY) == key)
            self.limits.check_quota(len(ours) + sum(self._starting.values()),
                                    for_repo + self._starting[key], key)
            self._starting[key] += 1
        try:
            yield
        finally:
            self._starting[key] -= 1

    async def fetch(self, resolved: ResolvedRepo) -> Path:
        return await self.mirrors.fetch(resolved.spec.clone_url, resolved.commit,
                                        resolved.allowed_protocols, resolved.git_config)

    async def plan(self, resolved: ResolvedRepo) -> ImagePlan:
        """Fetch the commit and work out its image (fingerprints are cached per tree)."""
        mirror = await self.fetch(resolved)
        size = await self.mirrors.checkout_size(mirror, resolved.commit)
        if self.max_repo_bytes and size > self.max_repo_bytes:
            raise LaunchError(f"This repository's files take {size / 1e6:.0f} MB, more than "
                              f"the {self.max_repo_bytes / 1e6:.0f} MB this host accepts.", 413)
        tree = await self.mirrors.tree_hash(mirror, resolved.commit)
        known = self.index.fingerprint(tree, self.config_digest)
        if known is not None:
            fingerprint = Fingerprint(**known)
        else:
            with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
                checkout = Path(tmp) / "checkout"
                await self.mirrors.export(mirror, resolved.commit, checkout,
                                          outside_links="break")
                try:
                    fingerprint = await self.fingerprints.compute(checkout, tree)
                except Exception as e:
                    raise RepositoryError(f"repo2docker cannot read this repository: {e}",
                                          400) from None
            self.index.save_fingerprint(tree, self.config_digest, fingerprint.as_dict())
        image = f"{self.image_prefix}{fingerprint.kind}-{fingerprint.key}"
        labels = {
            LABEL_KEY: fingerprint.key,
            LABEL_KIND: fingerprint.kind,
            LABEL_REPO: resolved.spec.repo_url,
            LABEL_COMMIT: resolved.commit,
            LABEL_UID: str(getattr(self.builder, "user_id", 1000)),
        }
        return ImagePlan(image, fingerprint, tree, mirror, labels)

    async def build_events(self, resolved: ResolvedRepo) -> AsyncIterator[dict]:
        """Yield fetching/building events; the last one is "built" or "failed"."""
        yield {"phase": "fetching", "message": f"Fetching {resolved.spec.repo_url} "
               f"at {resolved.commit[:12]}\n"}
        plan = await self.plan(resolved)
        fp = plan.fingerprint
        if fp.kind == "env":
            yield {"phase": "fetching", "message": "Environment defined by "
                   f"{', '.join(fp.files) or 'defaults'} ({fp.buildpack}): key {fp.key[:12]}\n"}
        else:
            yield {"phase": "fetching",
                   "message": f"Image keyed by the repository's content: {fp.reason}\n"}
        if await self.builder.image_ready(plan.image, fp.key):
            metrics.CACHE.labels("hit").inc()
            yield {"phase": "built", "imageName": plan.image, "kind": fp.kind,
                   "message": f"Found built image {plan.image}\n"}
            return
        metrics.CACHE.labels("miss").inc()

        async def source(dest: Path):
            """The build context: only the environment files for an env-keyed image."""
            if fp.kind == "tree":
                await self.mirrors.export(plan.mirror, resolved.commit, dest)
                return
            with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
                checkout = Path(tmp) / "checkout"
                await self.mirrors.export(plan.mirror, resolved.commit, checkout)
                for name in fp.files:
                    (dest / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(checkout / name, dest / name, follow_symlinks=False)
                dest.mkdir(parents=True, exist_ok=True)

        started = plan.image not in self.builder.running  # or joined another launch's build
        build = self.builder.build(plan.image, plan.labels, source)
        async for event in build.follow():
            if event["phase"] == "built":
                event = {**event, "kind": fp.kind, "started_build": started}
            yield event

    async def content_archive(self, resolved: ResolvedRepo) -> None:
        """Write the commit's files for the content overlay (``<content_dir>/<commit>.tar``)."""
        target = self.content_dir / f"{resolved.commit}.tar"
        if target.exists():
            os.utime(target)
            return
        await self.mirrors.archive(await self.fetch(resolved), resolved.commit, target)

    async def events(self, request: LaunchRequest) -> AsyncIterator[dict]:
        """The whole launch as events; always ends with "ready" or "failed"."""
        started = time.monotonic()
        record = LaunchRecord(request.provider.prefix, request.raw_spec)
        try:
            async for event in self._events(request, record):
                yield event
        except LaunchError as e:
            record.status_code = e.status_code
            yield {"phase": "failed", "message": str(e) + "\n", "status_code": e.status_code}
        except Exception:
            # a defect, not the user's doing: say so, keep the details in the service log
            logging.getLogger("binderlab").exception("Launch of %s/%s crashed",
                                                     request.provider.prefix, request.raw_spec)
            record.status_code = 500
            yield {"phase": "failed", "status_code": 500,
                   "message": "Internal error in the binder service; the operator's log has "
                   "the details.\n"}
        finally:
            duration = time.monotonic() - started
            # failures counted apart by owner: "failed" (the request's or repository's
            # fault) and "error" (ours), so an operator alerts on errors alone
            label = outcome(record.status_code) if record.status == "failed" else record.status
            metrics.LAUNCHES.labels(label).inc()
            metrics.LAUNCH_SECONDS.labels(label).observe(duration)
            if self.launch_log is not None:
                self.launch_log.record(**asdict(record), duration=round(duration, 3))

    async def _events(self, request: LaunchRequest, record: "LaunchRecord"):
        yield {"phase": "fetching", "message": "Resolving the requested ref\n"}
        resolved = await self.resolve(request)
        record.repo, record.ref = resolved.spec.repo_url, resolved.commit
        gpu_count = 0 if request.build_only else await self.gpu_request(request, resolved)
        image = kind = None
        async for event in self.build_events(resolved):
            if event["phase"] == "failed":
                record.status_code = event.get("status_code", 500)
                yield event
                return
            record.build |= event.pop("started_build", False)
            image = event.get("imageName", image)
            kind = event.pop("kind", kind)
            yield event
        record.image_kind = kind or ""
        if request.build_only:
            record.status = "built"
            yield {"phase": "ready", "imageName": image,
                   "message": f"Image {image} is ready (build only)\n"}
            return
        if self.launcher is None:
            raise LaunchError("This host only builds images.", 400)
        user_options = {
            "repo_url": resolved.spec.repo_url,
            "ref": resolved.commit,
            "provider": resolved.spec.provider,
            "spec": resolved.spec.spec,
            "repo_key": self.repo_key(resolved),
            "client": request.client,
            **request.extra,
        }
        if kind == "env":
            # the image holds the environment; the commit's files go in at launch
            await self.content_archive(resolved)
            user_options["content"] = resolved.commit
        self.index.launched(image)
        async with self.session_slot(resolved):
            async for event in self.start_session(image, user_options, gpu_count):
                if event["phase"] == "ready":
                    record.status, record.gpus = "ready", len(event.get("gpus", []))
                    yield self.ready_event(event, request, resolved, image)
                    return
                yield event

    async def start_session(self, image: str, user_options: dict,
                            gpu_count: int) -> AsyncIterator[dict]:
        """Wait for GPUs if the launch needs them, then start the session."""
        ticket = None
        try:
            if gpu_count:
                async for event in self.gpus.acquire(gpu_count):
                    if event["phase"] != "gpus":
                        yield event
                        continue
                    ticket = event["ticket"]
                    user_options["gpus"] = event["gpus"]
                    yield {"phase": "launching",
                           "message": f"GPU {', '.join(event['gpus'])} reserved\n"}
            async for event in self.launcher.launch(image, user_options):
                if event["phase"] == "ready":
                    event.pop("username", None)
                    if ticket is not None:
                        # the container's label holds the devices from now on
                        await self.gpus.release(ticket)
                        ticket = None
                        event["gpus"] = user_options["gpus"]
                yield event
        finally:
            if ticket is not None:
                await self.gpus.release(ticket)

    async def gpu_request(self, request: LaunchRequest, resolved: ResolvedRepo) -> int:
        """How many GPUs this launch gets (URL, operator policy, the repository's own
        binderlab.yml); refuses at once what no wait would grant."""
        if self.gpus is None:
            if request.gpu:
                raise LaunchError("This host has no GPUs; launch without ?gpu=.", 400)
            return 0
        key = self.repo_key(resolved)
        from_repo = None
        if self.gpus.repo_opt_in and request.gpu is None:
            from_repo = await self.repo_gpu_request(resolved)
        count = self.gpus.requested(key, request.gpu, from_repo)
        if count:
            self.gpus.check(count, key, request.client)
        return count

    async def repo_gpu_request(self, resolved: ResolvedRepo) -> int | None:
        """`gpu: N` from binderlab.yml in .binder/, binder/ or the root (as repo2docker
        chooses its folder)."""
        mirror = await self.fetch(resolved)
        for folder in (".binder/", "binder/", ""):
            data = await self.mirrors.read_file(mirror, resolved.commit,
                                                f"{folder}binderlab.yml", limit=65536)
            if data is None:
                if folder and await self.mirrors.has_dir(mirror, resolved.commit, folder):
                    return None  # the binder folder hides the root, as for repo2docker
                continue
            try:
                doc = YAML(typ="safe", pure=True).load(data) or {}
                value = doc.get("gpu", 0) if isinstance(doc, dict) else 0
                return int(value) if not isinstance(value, bool) else int(value)
            except Exception:
                raise LaunchError(f"{folder}binderlab.yml is not valid: expected e.g. "
                                  "'gpu: 1'.", 400) from None
        return None

    def ready_event(self, event: dict, request: LaunchRequest, resolved: ResolvedRepo,
                    image: str) -> dict:
        spec = resolved.spec
        provider = spec.provider
        return {
            **event,
            "image": image,
            "repo_url": spec.repo_url,
            "binder_ref_url": request.provider.ref_url(spec, resolved.commit),
            "binder_launch_host": self.public_url,
            "binder_request": f"v2/{provider}/{spec.spec}",
            "binder_persistent_request": f"v2/{provider}/{resolved.persistent_spec}",
            "message": f"server running at {event['url']}\n",
        }


