"""What every builder shares: one build per image watched by many clients, build slots, the
repo2docker options the fingerprint is computed with, the image plan (name and labels) and
the check that an image is complete.

``Builder`` is the plugin contract (entry point group ``binderlab.builders``); the
one-box builder (builders/repo2docker.py) and the cluster builder (builders/kubernetes.py)
add only how repo2docker runs.
"""

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from traitlets import Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.builders.build import Build
from binderlab.builders.slots import FairSlots
from binderlab.contract import (
    DEFAULT_IMAGE_PREFIX,
    LABEL_COMMIT,
    LABEL_KEY,
    LABEL_KIND,
    LABEL_REPO,
    LABEL_UID,
    image_name,
)
from binderlab.errors import LaunchError, outcome
from binderlab.platform import metrics
from binderlab.platform.docker import DockerEngine
from binderlab.platform.registry import Registry


@dataclass(frozen=True)
class ImagePlan:
    """The image a build makes: its name and the labels (contract.LABEL_*) it carries."""

    name: str
    labels: dict[str, str]


SourceFactory = Callable[[Path], Awaitable[None]]


class Builder(LoggingConfigurable):
    """Build images for the service and tell which ones already exist.

    Guarantees a subclass must keep:
    - ``image_ready(name)`` is True only for an image whose build completed; a failed or
      interrupted build leaves nothing that ``image_ready`` accepts.
    - ``build(...)`` for a name already being built returns the running Build: one build per
      image, however many clients ask.
    - a Build's last event has phase "built" (with ``imageName``) or "failed" (with a
      message a user can act on and its ``status_code``: 422 when the repository is at
      fault, 5xx when we are).
    - ``run_build`` returns when the image is built and raises LaunchError when not:
      RepositoryError (4xx) for the repository's fault, a 5xx LaunchError for ours.
    """

    max_concurrent_builds = Integer(
        2,
        help="""Builds that run at once (default 2); more wait for a slot, their watchers
        told so. Builds are CPU- and disk-heavy: size this to the machine.""",
    ).tag(config=True)

    max_log_events = Integer(
        20000,
        help="Log lines kept per build for late watchers; later lines are counted, not kept.",
    ).tag(config=True)

    max_log_mb = Float(
        8,
        help="""Megabytes of log messages kept per build for late watchers (default 8);
        later lines are counted, not kept. 0: no byte limit (max_log_events still applies).""",
    ).tag(config=True)

    max_log_line_kb = Integer(
        16,
        help="""Longest log line (KiB) sent to watchers and kept (default 16); the rest of a
        longer line is cut, with a note of how much. 0: lines are not cut.""",
    ).tag(config=True)

    abandon_after = Float(
        120,
        help="""Seconds a build goes on with nobody following it (default 120) before it is
        stopped, freeing its slot; a client that comes back within that time finds it still
        running. Prebuilds (webhook, `binderlab build`) follow their own builds, so they are
        never abandoned. 0: builds always run to the end.""",
    ).tag(config=True)

    max_builds_per_client = Integer(
        2,
        help="""Builds one client (address, or /64 for IPv6) may have running or waiting at
        once (default 2); another gets a 429. Joining a build that is already running is
        always allowed. 0: no cap.""",
    ).tag(config=True)

    def __init__(self, *, engine: DockerEngine, work_dir: Path, index=None, evictor=None,
                 image_prefix: str = DEFAULT_IMAGE_PREFIX, **kwargs):
        super().__init__(**kwargs)
        self.engine = engine
        self.image_prefix = image_prefix
        self.registry: Registry | None = None
        self.work_dir = work_dir
        self.index = index
        # the ImageEvictor run after each successful build (it keeps the new image), or None
        self.evictor = evictor
        self.running: dict[str, Build] = {}
        self._slots: FairSlots | None = None
        self._abandon_timers: dict[str, asyncio.TimerHandle] = {}

    # ---- what every repo2docker-based builder shares (the fingerprint uses the same) ----

    user_id = Integer(1000, help="UID of the notebook user in built images (default 1000).").tag(
        config=True)
    user_name = Unicode("jovyan", help="Name of the notebook user in built images.").tag(
        config=True)

    extra_args = List(
        Unicode(),
        help="""Extra command-line arguments for repo2docker, e.g. ["--appendix", "..."].

        Placed before the build context's path. Options that change the image belong here or
        in repo2docker_config: the fingerprint is computed with the same options.""",
    ).tag(config=True)

    repo2docker_config = Unicode(
        "",
        help="""A repo2docker config file (traitlets, `c.Repo2Docker.*`), passed as --config.

        Use it for repo2docker's own settings: base_image, buildpacks, engine options. The
        service reads it at this path (the fingerprint); the Kubernetes builder mounts it
        into build pods at the same path (c.KubernetesBuilder.repo2docker_config_map).
        Empty (default): repo2docker's defaults.""",
    ).tag(config=True)

    build_timeout = Float(
        3600,
        help="""Seconds a build may take (default 3600); a build still running then is
        stopped and fails. On Kubernetes it is the build pod's activeDeadlineSeconds, which
        includes pulling the build image and fetching the context. 0 means no limit.""",
    ).tag(config=True)

    insecure_registries = List(
        Unicode(),
        help="""Registry hosts (host:port) asked over plain HTTP instead of HTTPS, e.g. a
        registry on 127.0.0.1 or an in-cluster one without TLS. Default: none. Credentials
        come from $DOCKER_CONFIG/config.json, as for `docker push`.""",
    ).tag(config=True)

    failure_log_lines = Integer(
        20, help="How many of the last log lines a failed build's message repeats (default 20)."
    ).tag(config=True)

    def r2d_args(self) -> list[str]:
        """The repo2docker options that shape an image; the fingerprint uses the same."""
        args = ["--user-id", str(self.user_id), "--user-name", self.user_name]
        if self.repo2docker_config:
            args += ["--config", self.repo2docker_config]
        return [*args, *self.extra_args]

    def image_plan(self, kind: str, key: str, repo: str, commit: str = "") -> ImagePlan:
        """The image an environment is built as, and the labels it gets: computed here only."""
        labels = {LABEL_KEY: key, LABEL_KIND: kind, LABEL_REPO: repo,
                  LABEL_UID: str(self.user_id)}
        if commit:
            labels[LABEL_COMMIT] = commit
        return ImagePlan(image_name(self.image_prefix, kind, key), labels)

    # ---- is an image there ---------------------------------------------------------------

    pushes = False  # images live in a registry (checked there), not in the local engine

    async def image_ready(self, name: str, key: str) -> bool:
        """True only for an image whose build completed (see the class's guarantees)."""
        if self.pushes:
            # a registry holds a manifest only after every layer of a push arrived
            if not name.endswith(key):
                return False
            if self.registry is None:  # made in the event loop, on first use
                self.registry = Registry(self.insecure_registries)
            return await self.registry.image_exists(name)
        labels = await self.engine.image_labels(name)
        return labels is not None and labels.get(LABEL_KEY) == key

    def build(self, name: str, labels: dict[str, str], source: SourceFactory,
              client: str = "") -> Build:
        """Start building ``name`` (or join the build already running).

        Raises LaunchError(429) when ``client`` already has ``max_builds_per_client`` builds
        running or waiting."""
        if name in self.running:
            timer = self._abandon_timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            return self.running[name]
        if client and self.max_builds_per_client:
            mine = sum(1 for b in self.running.values() if b.client == client)
            if mine >= self.max_builds_per_client:
                metrics.BUILDS_REFUSED.labels("per_client").inc()
                raise LaunchError(f"You have {mine} builds running or waiting on this host, "
                                  "the most it allows at once; launch again when one has "
                                  "finished.", 429)
        build = Build(name, self.max_log_events, int(self.max_log_mb * 1e6),
                      self.max_log_line_kb << 10, client)
        build.on_unwatched = self._unwatched
        self.running[name] = build
        build.task = asyncio.create_task(self._run(build, labels, source))
        return build

    def _unwatched(self, build: Build) -> None:
        """Nobody follows ``build`` any more: stop it unless someone comes back in time."""
        if not self.abandon_after or build.task is None or build.task.done():
            return

        def abandon():
            self._abandon_timers.pop(build.image, None)
            if not build.watchers and build.outcome is None and not build.task.done():
                self.log.info("Stopping build of %s: nobody has followed it for %g s",
                              build.image, self.abandon_after)
                build.abandoned = True
                build.task.cancel()

        old = self._abandon_timers.pop(build.image, None)
        if old is not None:
            old.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a follower finalised after the loop ended: nothing to stop
            return
        self._abandon_timers[build.image] = loop.call_later(self.abandon_after, abandon)

    async def _run(self, build: Build, labels: dict[str, str], source: SourceFactory) -> None:
        started = time.monotonic()
        context = self.work_dir / f"{build.image.replace('/', '_').replace(':', '_')}"
        outcome_label = "error"  # a cancelled build (every watcher left) is counted as ours
        try:
            if self._slots is None:
                self._slots = FairSlots(self.max_concurrent_builds)
            if self._slots.busy():
                await build.emit({"phase": "waiting", "message": "Waiting for a build slot "
                                  f"({self.max_concurrent_builds} builds running)\n"})
            metrics.BUILDS_WAITING.inc()
            try:
                await self._slots.acquire(build.client)
            finally:
                metrics.BUILDS_WAITING.dec()
            metrics.BUILDS_RUNNING.inc()
            try:
                shutil.rmtree(context, ignore_errors=True)
                await source(context)
                await self.run_build(build, context, labels)
            finally:
                metrics.BUILDS_RUNNING.dec()
                self._slots.release(build.client)
            if not await self.image_ready(build.image, labels[LABEL_KEY]):
                raise LaunchError("The build finished but its image is missing.\n", 500)
            outcome_label = "built"
            if self.index is not None:
                self.index.add(build.image, labels[LABEL_KEY], labels.get(LABEL_KIND, ""),
                               labels.get(LABEL_REPO))
            if self.evictor is not None:
                asyncio.ensure_future(self.evictor.run(keep={build.image}))
            await build.finish("built", {
                "phase": "built", "imageName": build.image,
                "message": f"Built image {build.image}\n",
            })
        except asyncio.CancelledError:
            if not build.abandoned:
                raise
            outcome_label = "abandoned"  # a watcher arriving now still gets an ending
            await build.finish("failed", {"phase": "failed", "status_code": 503,
                               "message": "The build was stopped: nobody followed it for "
                               f"{self.abandon_after:g} s. Launch again to start it anew.\n"})
        except LaunchError as e:
            outcome_label = outcome(e.status_code)
            if e.ours:
                self.log.error("Build of %s failed: %s", build.image, e)
            await build.finish("failed", {"phase": "failed", "message": str(e),
                                          "status_code": e.status_code})
        except Exception:  # a build must always end with an event
            self.log.exception("Build of %s crashed", build.image)
            await build.finish("failed", {
                "phase": "failed", "status_code": 500,
                "message": "Internal error in the builder; the operator's log has the details.\n"})
        finally:
            timer = self._abandon_timers.pop(build.image, None)
            if timer is not None:
                timer.cancel()
            shutil.rmtree(context, ignore_errors=True)
            self.running.pop(build.image, None)
            metrics.BUILDS.labels(outcome_label).inc()
            metrics.BUILD_SECONDS.labels(outcome_label).observe(time.monotonic() - started)

    async def run_build(self, build: Build, context: Path, labels: dict[str, str]) -> None:
        """Build ``context`` into ``build.image`` and emit log events; raise LaunchError
        (RepositoryError when the repository is at fault) when no image came of it."""
        raise NotImplementedError


def log_message(raw: bytes) -> str:
    """The message of one repo2docker --json-logs line (plain lines pass through)."""
    line = raw.decode(errors="replace")
    try:
        data = json.loads(line)
        message = data.get("message", "") if isinstance(data, dict) else line
    except ValueError:
        message = line
    return message if message.endswith("\n") else message + "\n"
