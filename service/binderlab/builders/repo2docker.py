"""Builders turn a repository checkout into an image; concurrent requests share one build.

``Builder`` is the contract. ``Repo2DockerBuilder`` runs jupyter-repo2docker as a
subprocess on the local engine (the one-box tier).
"""

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from traitlets import Bool, Float, Integer, List, Unicode
from traitlets.config import Configurable, LoggingConfigurable

from binderlab.errors import LaunchError, RepositoryError, outcome
from binderlab.platform import metrics
from binderlab.platform.docker import DockerEngine
from binderlab.platform.registry import Registry

LABEL_KEY = "binderlab.key"
LABEL_REPO = "binderlab.repo"
LABEL_COMMIT = "binderlab.commit"
LABEL_KIND = "binderlab.kind"
LABEL_UID = "binderlab.uid"


class Build:
    """One build of one image, watched by any number of clients.

    Events are kept from the start, so a watcher that joins late still sees the whole log.
    ``outcome`` is None while running, then "built" or "failed".
    """

    def __init__(self, image: str, max_events: int):
        self.image = image
        self.events: list[dict] = []
        self.outcome: str | None = None
        self.max_events = max_events
        self.dropped = 0
        self._changed = asyncio.Condition()
        self.task: asyncio.Task | None = None

    async def emit(self, event: dict) -> None:
        async with self._changed:
            if len(self.events) < self.max_events:
                self.events.append(event)
            else:
                self.dropped += 1
            self._changed.notify_all()

    async def finish(self, outcome: str, event: dict) -> None:
        async with self._changed:
            self.events.append(event)
            self.outcome = outcome
            self._changed.notify_all()

    async def follow(self) -> AsyncIterator[dict]:
        """Yield every event of this build from its start until it ends."""
        seen = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.events) > seen or self.outcome)  # noqa: B023
                new = self.events[seen:]
                done = self.outcome is not None
            seen += len(new)
            for event in new:
                yield event
            if done and seen >= len(self.events):
                return


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

    def __init__(self, *, engine: DockerEngine, work_dir: Path, index=None, **kwargs):
        super().__init__(**kwargs)
        self.engine = engine
        self.work_dir = work_dir
        self.index = index
        self.running: dict[str, Build] = {}
        self._slots: asyncio.Semaphore | None = None
        # called with the image name after each successful build (e.g. eviction)
        self.after_build: Callable[[str], Awaitable[object]] | None = None

    async def image_ready(self, name: str, key: str) -> bool:
        labels = await self.engine.image_labels(name)
        return labels is not None and labels.get(LABEL_KEY) == key

    def build(self, name: str, labels: dict[str, str], source: SourceFactory) -> Build:
        """Start building ``name`` (or join the build already running)."""
        if name in self.running:
            return self.running[name]
        build = Build(name, self.max_log_events)
        self.running[name] = build
        build.task = asyncio.create_task(self._run(build, labels, source))
        return build

    async def _run(self, build: Build, labels: dict[str, str], source: SourceFactory) -> None:
        started = time.monotonic()
        context = self.work_dir / f"{build.image.replace('/', '_').replace(':', '_')}"
        outcome_label = "error"  # a cancelled build (every watcher left) is counted as ours
        try:
            if self._slots is None:
                self._slots = asyncio.Semaphore(max(self.max_concurrent_builds, 1))
            if self._slots.locked():
                await build.emit({"phase": "waiting", "message": "Waiting for a build slot "
                                  f"({self.max_concurrent_builds} builds running)\n"})
            metrics.BUILDS_WAITING.inc()
            try:
                await self._slots.acquire()
            finally:
                metrics.BUILDS_WAITING.dec()
            metrics.BUILDS_RUNNING.inc()
            try:
                shutil.rmtree(context, ignore_errors=True)
                await source(context)
                await self.run_build(build, context, labels)
            finally:
                metrics.BUILDS_RUNNING.dec()
                self._slots.release()
            if not await self.image_ready(build.image, labels[LABEL_KEY]):
                raise LaunchError("The build finished but its image is missing.\n", 500)
            outcome_label = "built"
            if self.index is not None:
                self.index.add(build.image, labels[LABEL_KEY], labels.get(LABEL_KIND, ""),
                               labels.get(LABEL_REPO))
            if self.after_build is not None:
                asyncio.ensure_future(self.after_build(build.image))
            await build.finish("built", {
                "phase": "built", "imageName": build.image,
                "message": f"Built image {build.image}\n",
            })
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
            shutil.rmtree(context, ignore_errors=True)
            self.running.pop(build.image, None)
            metrics.BUILDS.labels(outcome_label).inc()
            metrics.BUILD_SECONDS.labels(outcome_label).observe(time.monotonic() - started)

    async def run_build(self, build: Build, context: Path, labels: dict[str, str]) -> None:
        """Build ``context`` into ``build.image`` and emit log events; raise LaunchError
        (RepositoryError when the repository is at fault) when no image came of it."""
        raise NotImplementedError


class Repo2DockerOptions(Configurable):
    """What every repo2docker-based builder shares (the class also defines ``extra_args``
    and ``repo2docker_config``, with help for its own setting)."""

    user_id = Integer(1000, help="UID of the notebook user in built images.").tag(config=True)
    user_name = Unicode("jovyan", help="Name of the notebook user in built images.").tag(
        config=True
    )

    failure_log_lines = Integer(
        20, help="How many of the last log lines a failed build's message repeats."
    ).tag(config=True)

    def r2d_args(self) -> list[str]:
        """The repo2docker options that shape an image; the fingerprint uses the same."""
        args = ["--user-id", str(self.user_id), "--user-name", self.user_name]
        if self.repo2docker_config:
            args += ["--config", self.repo2docker_config]
        return [*args, *self.extra_args]


class Repo2DockerBuilder(Repo2DockerOptions, Builder):
    """Build with jupyter-repo2docker on the local Docker engine."""

    _registry = None

    repo2docker_command = List(
        Unicode(),
        default_value=[sys.executable, "-m", "repo2docker"],
        help="How to run repo2docker (default: the repo2docker of binderlab's Python).",
    ).tag(config=True)

    extra_args = List(
        Unicode(),
        help="""Extra command-line arguments for repo2docker, e.g. ["--appendix", "..."].

        Placed before the checkout path. Options that change the image belong here or in
        repo2docker_config, so that binderlab sees the same configuration everywhere.""",
    ).tag(config=True)

    repo2docker_config = Unicode(
        "",
        help="""A repo2docker config file (traitlets, `c.Repo2Docker.*`), passed as --config.

        Use it for repo2docker's own settings: base_image, buildpacks, engine options.
        Empty (default): repo2docker's defaults.""",
    ).tag(config=True)

    build_timeout = Float(
        3600,
        help="Seconds a build may take; a build still running then is stopped and fails "
        "(default 3600). 0 means no limit.",
    ).tag(config=True)

    push = Bool(
        False,
        help="""Push each image to its registry (the image prefix names it, e.g.
        'registry.example.org/binderlab/'); a build counts as complete when the registry has
        its manifest, and sessions pull it. For several hosts sharing one registry.""",
    ).tag(config=True)

    insecure_registries = List(
        Unicode(),
        help="Registry hosts (host:port) reached over plain HTTP, e.g. a registry on "
        "127.0.0.1. The Docker engine treats 127.0.0.0/8 as insecure already.",
    ).tag(config=True)


    async def image_ready(self, name: str, key: str) -> bool:
        if not self.push:
            return await super().image_ready(name, key)
        if not name.endswith(key):
            return False
        if self._registry is None:
            self._registry = Registry(self.insecure_registries)
        return await self._registry.image_exists(name)

    def command(self, image: str, context: Path, labels: dict[str, str]) -> list[str]:
        cmd = [*self.repo2docker_command, "--json-logs", "--no-run", "--image-name", image]
        if self.push:
            cmd.append("--push")
        for key, value in labels.items():
            cmd += ["--label", f"{key}={value}"]
        return [*cmd, *self.r2d_args(), str(context)]

    async def run_build(self, build: Build, context: Path, labels: dict[str, str]) -> None:
        cmd = self.command(build.image, context, labels)
        self.log.info("Building %s: %s", build.image, " ".join(cmd))
        metrics.BUILDER_RUNS.inc()
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # so a timeout can stop repo2docker and its docker client
            limit=1 << 20,
            env=os.environ.copy(),
        )
        tail: list[str] = []

        async def pump():
            async for raw in proc.stdout:
                # the build context's path on this server is nobody else's business
                message = log_message(raw).replace(str(context), ".")
                if message.startswith("Error during build: Command"):
                    continue  # repeats the whole docker command line
                tail.append(message)
                del tail[: -self.failure_log_lines]
                await build.emit({"phase": "building", "message": message})
            return await proc.wait()

        try:
            code = await asyncio.wait_for(pump(), self.build_timeout or None)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            # the repository asks for more than this host gives one build
            raise RepositoryError(f"The build took longer than {self.build_timeout:g} s and "
                                  "was stopped.\n" + "".join(tail)) from None
        except asyncio.CancelledError:
            _kill_group(proc)
            raise
        finally:
            # repo2docker's docker clients outlive it when it is killed: a build must not go
            # on outside the build slots and the timeout
            _kill_group(proc, signal.SIGKILL)
        if code != 0:
            message = f"repo2docker failed (exit code {code}). Last lines of its log:\n" + \
                "".join(tail)
            if code < 0:  # killed by a signal: not something the repository did
                raise LaunchError(message, 500)
            if not await self.engine_answers():
                raise LaunchError(message, 503)
            raise RepositoryError(message)

    async def engine_answers(self) -> bool:
        """After a failed build: did the engine fail it (down, restarting) rather than the
        repository's steps?"""
        try:
            return bool(await self.engine.ping())
        except Exception:
            return False


def _kill_group(proc, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_message(raw: bytes) -> str:
    """The message of one repo2docker --json-logs line (plain lines pass through)."""
    line = raw.decode(errors="replace")
    try:
        data = json.loads(line)
        message = data.get("message", "") if isinstance(data, dict) else line
    except ValueError:
        message = line
    return message if message.endswith("\n") else message + "\n"
