"""One launch, from a spec to a running session, as a stream of BinderHub-style events.

resolve -> fetch (one mirror fetch: tree, size, binderlab.yml) -> GPU decision -> key ->
(build | cache hit) -> GPUs -> launch -> ready. The HTTP handler and the CLI both drive
this; neither knows how the steps work. What the launch learns lives in one LaunchContext
(context.py); events are made by events.py.
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
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from binderlab import contract
from binderlab.builders.base import Builder
from binderlab.builders.cacheindex import CacheIndex
from binderlab.contract import CLIENT_USER_PREFIX, LABEL_CLIENT, LABEL_REPO_KEY
from binderlab.errors import LaunchError, RepositoryError, outcome
from binderlab.fingerprint.buildpacks import Fingerprint
from binderlab.fingerprint.startscript import write_env_context
from binderlab.fingerprint.worker import FingerprintWorker
from binderlab.gpus.allocator import GPUAllocator, Reservation, launch_gpus
from binderlab.gpus.budgets import duration
from binderlab.launch import events as ev
from binderlab.launch import owned
from binderlab.launch.context import (  # noqa: F401 (LaunchRequest: the drivers' import)
    ImagePlan,
    LaunchContext,
    LaunchRequest,
    StartedSession,
)
from binderlab.launch.launchlog import LaunchLog
from binderlab.launch.limits import LaunchLimits
from binderlab.platform import metrics
from binderlab.repos.diskbudget import RepoDiskBudget
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import RepoProvider, repo_key
from binderlab.repos.settings import read_settings
from binderlab.sessions.launcher import Launcher
from binderlab.sessions.pool import host_user_sessions
from binderlab.sessions.pooled import launch_or_claim
from binderlab.sessions.trackers import SessionTracker


@dataclass
class LaunchRecord:
    """What the launch log keeps of one launch (events.schema.json, $defs.launch_record)."""

    provider: str
    spec: str
    repo: str = ""
    ref: str = ""
    status: str = "failed"
    status_code: int = 200
    build: bool = False
    image_kind: str = ""
    gpus: int = 0


class Pipeline:
    records = None  # builders.records.EnvironmentRecords, set by the app
    rebuild_from_records = False  # c.BinderLab.rebuild_from_records
    pool = None  # sessions.pool.WarmPool (c.BinderLab.warm_pool), set by the app

    def __init__(self, *, builder: Builder, launcher: Launcher | None, mirrors: RepoMirrors,
                 fingerprints: FingerprintWorker, index: CacheIndex, config_digest: str,
                 image_prefix: str, blocked_networks, public_url: str, work_dir: Path,
                 content_dir: Path, gpus: GPUAllocator | None = None,
                 limits: LaunchLimits | None = None, launch_log: LaunchLog | None = None,
                 providers: list[RepoProvider] = (), max_repo_bytes: int = 0,
                 sessions: SessionTracker | None = None,
                 disk: RepoDiskBudget | None = None):
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
        self.disk = disk or RepoDiskBudget(mirrors.root, content_dir, budget_gb=0,
                                           max_repo_files=0, min_free_mb=0)
        self._cleanups: set[asyncio.Task] = set()
        self._quota_lock = asyncio.Lock()
        self._starting: Counter[str] = Counter()

    # ---- the steps, each run once per launch ----------------------------------------------

    def context(self, request: LaunchRequest) -> LaunchContext:
        """Parse the spec (unless the handler did) and key the repository: once."""
        spec = request.spec or request.provider.parse(request.raw_spec)
        return LaunchContext(request, spec, repo_key(spec, self.providers))

    async def resolve(self, ctx: LaunchContext) -> None:
        """Apply the host's limits, and resolve the ref to a commit."""
        if self.limits is not None:
            self.limits.check_spec(ctx.repo_key)
            self.limits.check_rate(ctx.request.client, ctx.repo_key, ctx.request.from_page,
                                   ctx.request.course, ctx.spec.ref)
        ctx.resolved = await ctx.request.provider.resolve(ctx.spec, self.blocked_networks)

    async def fetch(self, ctx: LaunchContext) -> None:
        """Fetch the commit into its mirror (the launch's only fetch) and read what the
        commit says about itself before anything is built: its size, binderlab.yml."""
        resolved = ctx.resolved
        new_mirror = not self.mirrors.path_for(resolved.spec.clone_url).exists()
        self.disk.check_free(self.mirrors.root)
        ctx.mirror = await self.mirrors.fetch(resolved.spec.clone_url, resolved.commit,
                                              resolved.allowed_protocols, resolved.git_config,
                                              reachable_only=resolved.verify_reachable)
        os.utime(ctx.mirror)  # its last use, for the disk budget's least-recently-used order
        ctx.files, ctx.size = await self.mirrors.checkout_stats(ctx.mirror, resolved.commit)
        try:  # file count and size from the tree, before anything is exported
            self.disk.check_tree(ctx.files, ctx.size, self.max_repo_bytes)
        except LaunchError:
            if new_mirror and not self.disk.in_use_by_others(ctx.mirror):
                # fetched only for this refused commit: leave nothing behind
                shutil.rmtree(ctx.mirror, ignore_errors=True)
            raise
        self.clean_up_disk()
        ctx.settings = await read_settings(self.mirrors, ctx.mirror, resolved.commit)

    def clean_up_disk(self) -> None:
        """Bring mirrors and archives back under the disk budget, in the background."""
        task = asyncio.ensure_future(self.disk.enforce())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def checkout_space(self, ctx: LaunchContext) -> int:
        """Bytes a checkout of the commit takes on disk (files plus a block each)."""
        return ctx.size + 512 * ctx.files

    async def plan(self, ctx: LaunchContext) -> ImagePlan:
        """Work out the commit's image (fingerprints are cached per tree)."""
        commit = ctx.commit
        tree = await self.mirrors.tree_hash(ctx.mirror, commit)
        known = self.index.fingerprint(tree, self.config_digest)
        if known is not None:
            fingerprint = Fingerprint(**known)
        else:
            self.disk.check_free(self.work_dir, self.checkout_space(ctx))
            with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
                checkout = Path(tmp) / "checkout"
                await self.mirrors.export(ctx.mirror, commit, checkout, outside_links="break")
                try:
                    fingerprint = await self.fingerprints.compute(checkout, tree)
                except LaunchError:  # the worker's own refusals (413, 422, 503) as they are
                    raise
                except Exception as e:
                    raise RepositoryError(f"repo2docker cannot read this repository: {e}",
                                          400) from None
            self.index.save_fingerprint(tree, self.config_digest, fingerprint.as_dict())
        image = self.builder.image_plan(fingerprint.kind, fingerprint.key, ctx.spec.repo_url,
                                        commit)  # the builder names images and labels them
        ctx.plan = ImagePlan(image.name, fingerprint, tree, image.labels)
        return ctx.plan

    async def build_context(self, ctx: LaunchContext, dest: Path) -> None:
        """The build context: only the environment files for an env-keyed image."""
        fp = ctx.plan.fingerprint
        self.disk.check_free(dest.parent, self.checkout_space(ctx))
        if fp.kind == "tree":
            await self.mirrors.export(ctx.mirror, ctx.commit, dest)
            return
        with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
            checkout = Path(tmp) / "checkout"
            await self.mirrors.export(ctx.mirror, ctx.commit, checkout)
            write_env_context(checkout, dest, fp.files, fp.start)
            if ctx.frozen:  # a rebuild from the environment record: the recorded pins
                (dest / ctx.frozen[0]).write_text(ctx.frozen[1])

    async def image(self, ctx: LaunchContext) -> AsyncIterator[dict]:
        """Find or build the planned image; yields the key, build and built events (a
        failed build ends with its failed event)."""
        plan = ctx.plan
        fp = plan.fingerprint
        if fp.kind == "env":
            yield ev.event(ev.FETCHING, "Environment defined by "
                           f"{', '.join(fp.files) or 'defaults'} ({fp.buildpack}): key "
                           f"{fp.key[:12]}"
                           + (f"; {fp.start} runs from this commit" if fp.start else ""))
        else:
            yield ev.event(ev.FETCHING, f"Image keyed by the repository's content: {fp.reason}")
        if await self.builder.image_ready(plan.image, fp.key):
            metrics.CACHE.labels("hit").inc()
            ctx.image_ready = True
            yield ev.event(ev.BUILT, f"Found built image {plan.image}",
                           **{ev.IMAGE_NAME: plan.image})
            return
        metrics.CACHE.labels("miss").inc()
        if self.rebuild_from_records and self.records is not None and fp.kind == "env":
            # an evicted image comes back with the versions it had, not a fresh solve
            ctx.frozen = self.records.frozen_requirements(plan.image, fp.files)
            if ctx.frozen:
                yield ev.event(ev.FETCHING, "Rebuilding from the recorded packages "
                               f"({ctx.frozen[1].count(chr(10)) - 1} pinned in "
                               f"{ctx.frozen[0]})")
        ctx.started_build = plan.image not in self.builder.running  # else joined another's
        client = ctx.request.client
        build = self.builder.build(plan.image, plan.labels, partial(self.build_context, ctx),
                                   client=self.limits.client_key(client)
                                   if self.limits is not None else client)
        if ctx.started_build and self.records is not None:
            self.records.follow(build, plan, ctx.resolved)  # kept after the image is gone
        async for event in build.follow():
            ctx.image_ready = event[ev.PHASE] == ev.BUILT
            yield event

    async def content_archive(self, ctx: LaunchContext) -> None:
        """Write the commit's files for the content overlay (``<content_dir>/<commit>.tar``)."""
        target = contract.content_archive(self.content_dir, ctx.commit)
        if target.exists():
            os.utime(target)
            return
        self.disk.check_free(self.content_dir, self.checkout_space(ctx) + 1024)
        await self.mirrors.archive(ctx.mirror, ctx.commit, target)
        self.clean_up_disk()

    # ---- the whole launch ---------------------------------------------------------------

    async def events(self, request: LaunchRequest) -> AsyncIterator[dict]:
        """The whole launch as events; always ends with "ready" or "failed"."""
        started = time.monotonic()
        record = LaunchRecord(request.provider.prefix, request.raw_spec)
        ctx = None
        lease = self.disk.lease()  # what this launch reads stays on disk until it ends
        try:
            ctx = self.context(request)
            async for event in self._events(ctx, record, lease):
                yield event
        except LaunchError as e:
            record.status_code = e.status_code
            if e.ours:  # ours to look into; the request's own faults are not errors
                logging.getLogger("binderlab").error("Launch of %s/%s failed (%d): %s",
                                                     request.provider.prefix,
                                                     request.raw_spec, e.status_code, e)
            yield ev.failed(str(e), e.status_code, **e.fields)
        except Exception:
            # a defect, not the user's doing: say so, keep the details in the service log
            logging.getLogger("binderlab").exception("Launch of %s/%s crashed",
                                                     request.provider.prefix, request.raw_spec)
            record.status_code = 500
            yield ev.failed("Internal error in the binder service; the operator's log has "
                            "the details.", 500)
        finally:
            lease.release()
            if ctx is not None:
                record.repo, record.ref = ctx.spec.repo_url, ctx.commit
                record.build = ctx.started_build
                record.image_kind = ctx.plan.kind if ctx.plan and ctx.image_ready else ""
                record.gpus = len(ctx.session.gpus) if ctx.session else 0
            duration = time.monotonic() - started
            # failures counted apart by owner: "failed" (the request's or repository's
            # fault) and "error" (ours), so an operator alerts on errors alone
            label = outcome(record.status_code) if record.status == "failed" else record.status
            metrics.LAUNCHES.labels(label).inc()
            metrics.LAUNCH_SECONDS.labels(label).observe(duration)
            if self.launch_log is not None:
                self.launch_log.record(**asdict(record), duration=round(duration, 3))

    async def _events(self, ctx: LaunchContext, record: LaunchRecord, lease):
        request = ctx.request
        yield ev.event(ev.FETCHING, "Resolving the requested ref")
        await self.resolve(ctx)
        lease.hold(self.mirrors.path_for(ctx.spec.clone_url),
                   contract.content_archive(self.content_dir, ctx.commit))
        yield ev.event(ev.FETCHING, f"Fetching {ctx.spec.repo_url} at {ctx.commit[:12]}")
        await self.fetch(ctx)
        returned = None  # a logged-in user's running session of this repository
        if not request.build_only:
            returned = await owned.running_session(self.launcher, ctx,
                                                   f"{self.public_url}sessions")
        if not request.build_only and returned is None:  # else the session has its GPUs
            await self.check_user_sessions(ctx)  # before anything is built
            ctx.gpus = launch_gpus(self.gpus, ctx.repo_key, request.gpu, ctx.settings.gpu,
                                   request.client)
        await self.plan(ctx)
        async for event in self.image(ctx):
            if event[ev.PHASE] == ev.FAILED:
                record.status_code = event.get(ev.STATUS_CODE, 500)
                yield event
                return
            yield event
        image = ctx.plan.image
        if request.build_only:
            record.status = "built"
            yield ev.event(ev.READY, f"Image {image} is ready (build only)",
                           **{ev.IMAGE_NAME: image})
            return
        if self.launcher is None:
            raise LaunchError("This host only builds images.", 400)
        user_options = {  # the keys are the contract's (contract.SessionOptions)
            contract.OPT_REPO_URL: ctx.spec.repo_url,
            contract.OPT_REF: ctx.commit,
            contract.OPT_PROVIDER: ctx.spec.provider,
            contract.OPT_SPEC: ctx.spec.spec,
            contract.OPT_REPO_KEY: ctx.repo_key,
            contract.OPT_CLIENT: request.client,
            # BinderHub's spawner puts these in the session's environment (BINDER_REQUEST,
            # ...): notebooks and extensions that build "share this" links read them
            **self.binder_links(ctx),
            **request.extra,
        }
        if ctx.plan.kind == "env" or ctx.request.user:
            await self.content_archive(ctx)
            if ctx.plan.kind == "env":
                # the image holds the environment; the commit's files go in at launch
                user_options[contract.OPT_CONTENT] = ctx.commit
            if ctx.request.user:
                # merged into the user's persistent folder, whatever the image's kind (a
                # tree-keyed image's own copy may hold postBuild's changes: the archive
                # is the commit's files)
                user_options[contract.OPT_UPSTREAM] = ctx.commit
            serve = getattr(self.builder, "serve_content", None)  # the cluster's session pods
            if serve is not None:
                user_options[contract.OPT_CONTENT_URL] = await serve(
                    contract.content_archive(self.content_dir, ctx.commit))
        self.index.launched(image)
        if returned is not None:
            yield returned
        else:
            async with self.session_slot(ctx):
                async for event in self.start_session(ctx, user_options):
                    yield event
        record.status = "ready"
        budget = self.gpus.budget_event(request.client, len(ctx.session.gpus)) \
            if self.gpus is not None and ctx.session.gpus else None
        if budget:  # said in advance: the session stops when the budget runs out
            yield ev.event(ev.LAUNCHING, f"GPU time left this {budget['period']}: "
                           f"{duration(budget['seconds_left'])}; this session stops at "
                           f"{budget['stops_at']} unless you stop it earlier")
        yield self.ready_event(ctx, budget)

    def _user(self, ctx: LaunchContext) -> str:
        """The client a per-user session cap counts ('' anonymous, or no cap)."""
        client = ctx.request.client
        if self.limits is None or not self.limits.max_sessions_per_user:
            return ""
        return client if client.startswith(CLIENT_USER_PREFIX) else ""

    async def check_user_sessions(self, ctx: LaunchContext) -> None:
        """A logged-in user's sessions (running, and launches of theirs starting) against
        max_sessions_per_user; session_slot checks again as the session starts."""
        user = self._user(ctx)
        if user:
            self.limits.check_user_sessions(self._user_count(await self._our_sessions(), user))

    async def _our_sessions(self) -> list:
        """This host's sessions (its image prefix) without the pool's warm ones; a claimed
        warm session counts under its repository and the user who claimed it."""
        return await host_user_sessions(self.sessions, self.image_prefix, self.pool)

    def _user_count(self, sessions: list, user: str) -> int:
        """A user's sessions among ``sessions``, and their launches still starting."""
        return (sum(1 for s in sessions if s.labels.get(LABEL_CLIENT) == user)
                + self._starting[CLIENT_USER_PREFIX + user])

    @asynccontextmanager
    async def session_slot(self, ctx: LaunchContext):
        """Hold a place under the session quotas while a session starts.

        Running sessions are this host's (image prefix), as the session tracker finds them;
        launches still starting count too, so concurrent launches cannot all see room for
        one.
        """
        user = self._user(ctx)
        if self.limits is None or not (self.limits.max_sessions
                                       or self.limits.max_sessions_per_repo or user):
            yield
            return
        key = ctx.repo_key
        # launches starting, by repository and (prefixed again, so the two cannot meet)
        # by user
        user_key = CLIENT_USER_PREFIX + user if user else ""
        async with self._quota_lock:
            ours = await self._our_sessions()  # warm sessions are the pool's, within its budget
            for_repo = sum(1 for s in ours if s.labels.get(LABEL_REPO_KEY) == key)
            self.limits.check_quota(len(ours) + sum(self._starting[k] for k in self._starting
                                                    if not k.startswith(CLIENT_USER_PREFIX)),
                                    for_repo + self._starting[key], key)
            if user:
                self.limits.check_user_sessions(self._user_count(ours, user))
                self._starting[user_key] += 1
            self._starting[key] += 1
        try:
            yield
        finally:
            self._starting[key] -= 1
            if user:
                self._starting[user_key] -= 1

    async def start_session(self, ctx: LaunchContext, user_options: dict):
        """Wait for GPUs if the launch gets some, then start the session (ctx.session)."""
        try:
            if ctx.gpus:
                async for step in self.gpus.acquire(ctx.gpus, ctx.repo_key,
                                                    ctx.request.client):
                    if isinstance(step, Reservation):
                        ctx.reservation = step
                        user_options[contract.OPT_GPUS] = step.devices
                        yield ev.event(ev.LAUNCHING, f"GPU {', '.join(step.devices)} reserved")
                    else:
                        yield ev.waiting(step.position, "All GPUs are busy: you are number "
                                         f"{step.position} in the queue")
            # a logged-in user's launch goes to their own server (the launcher's owner=)
            owner = {"owner": ctx.request.user} if ctx.request.user else {}
            async for event in launch_or_claim(self.pool, self.launcher, ctx.plan.image,
                                               user_options, **owner):
                if event[ev.PHASE] == ev.READY:  # the launcher's last event
                    ctx.session = StartedSession(event[ev.URL], event[ev.TOKEN],
                                                 list(user_options.get(contract.OPT_GPUS, [])))
                else:
                    yield event
        finally:
            if ctx.reservation is not None:
                # on success the container's label holds the devices from now on
                await self.gpus.release(ctx.reservation.ticket)
        if ctx.session is None:
            raise LaunchError("The session ended before it was ready.", 500)

    def binder_links(self, ctx: LaunchContext) -> dict:
        """The launch's links, as BinderHub names them (ready event, session environment)."""
        spec = ctx.spec
        return {
            ev.BINDER_REF_URL: ctx.request.provider.ref_url(spec, ctx.commit),
            ev.BINDER_LAUNCH_HOST: self.public_url,
            ev.BINDER_REQUEST: f"v2/{spec.provider}/{spec.spec}",
            ev.BINDER_PERSISTENT_REQUEST: f"v2/{spec.provider}/{ctx.resolved.persistent_spec}",
        }

    def ready_event(self, ctx: LaunchContext, budget: dict | None = None) -> dict:
        spec, session = ctx.spec, ctx.session
        fields = {
            ev.URL: session.url,
            ev.TOKEN: session.token,
            ev.IMAGE: ctx.plan.image,
            ev.REPO_URL: spec.repo_url,
            **self.binder_links(ctx),
            ev.ENVIRONMENT_URL: f"{self.public_url}environment/{spec.provider}/"
                                f"{ctx.resolved.persistent_spec}",
        }
        if session.gpus:
            fields[ev.GPUS] = session.gpus
        if budget:
            fields[ev.GPU_BUDGET] = budget
        return ev.event(ev.READY, f"server running at {session.url}", **fields)
