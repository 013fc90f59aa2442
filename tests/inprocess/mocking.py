"""An in-process binderlab for fast tests: the real Tornado app with fake plugins.

Like JupyterHub's MockHub: ``MockBinderLab`` is the real ``BinderLab`` application (its
handlers, pipeline, limits, GPU allocator, launch log), started in the test's event loop,
with the plugins that would need Docker or a hub chosen by config, as an operator chooses
the real ones:

- ``FakeBuilder`` (builder_class): "builds" by remembering the image; can be held at a gate
  (slow) or made to fail as the repository's fault or crash as ours;
- ``FakeLauncher`` (launcher_class): "starts" a session and registers it with the tracker;
  can be held at a gate or made to fail;
- ``FakeSessionTracker`` (session_tracker_class): the sessions the fake launcher started;
- GPUs come from the real ``StaticGPUInventory``; repositories from the real ``gh`` provider
  against the test git server on 127.0.0.1 (git is fast and local, so it stays real);
- ``FakeFingerprintWorker``: keys an environment by its files without repo2docker's worker
  process (the fingerprint has its own tests).

A hub that is down needs no fake: the real ``HubLauncher`` pointed at a closed port.
"""

import asyncio
import hashlib
import json
import secrets
from pathlib import Path

import jsonschema
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Bool, Integer, Unicode
from traitlets.config import Config

from binderlab.app import BinderLab
from binderlab.builders.repo2docker import Build, Builder
from binderlab.contract import LABEL_CLIENT, LABEL_GPUS, LABEL_REPO_KEY, LABEL_USER
from binderlab.errors import LaunchError, RepositoryError
from binderlab.fingerprint.buildpacks import Fingerprint
from binderlab.launch import events
from binderlab.sessions.launcher import Launcher
from binderlab.sessions.trackers import Session, SessionTracker
from tests.harness.service import free_port

ENV_FILES = ("requirements.txt", "environment.yml", "apt.txt", "runtime.txt")


class Gate:
    """A switch a fake waits at while it is closed: makes a step slow, on the test's cue."""

    def __init__(self):
        self._open = asyncio.Event()
        self._open.set()
        self.waiting = 0

    def close(self):
        self._open.clear()

    def open(self):
        self._open.set()

    async def pass_(self):
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1


class FakeBuilder(Builder):
    """Builds nothing; an image exists once its "build" finished."""

    fail_with = Unicode(
        "", help="A repo2docker error message: every build fails with it (the repository's "
        "fault, e.g. an environment.yml pinning a Python repo2docker refuses)."
    ).tag(config=True)
    crash = Bool(False, help="Every build crashes (a defect of ours).").tag(config=True)
    log_lines = Integer(3, help="Log lines each build emits.").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.images: set[str] = set()
        self.builds = 0
        self.gate = Gate()

    async def image_ready(self, name: str, key: str) -> bool:
        return name in self.images

    async def run_build(self, build: Build, context: Path, labels: dict[str, str]):
        self.builds += 1
        for i in range(self.log_lines):
            await build.emit({"phase": "building", "message": f"Step {i + 1}\n"})
        await self.gate.pass_()
        if self.crash:
            raise RuntimeError("the fake builder crashed")
        if self.fail_with:
            raise RepositoryError(self.fail_with)
        self.images.add(build.image)


class FakeSessionTracker(SessionTracker):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.running: dict[str, Session] = {}

    async def sessions(self) -> list[Session]:
        return list(self.running.values())


class FakeLauncher(Launcher):
    """Starts sessions that exist only in the fake tracker, labelled as a spawner would."""

    fail_with = Unicode("", help="Every launch fails with this message (500).").tag(
        config=True)

    # where logged-in mode's login redirects go (nothing listens: a browser is only sent)
    hub_url = "http://127.0.0.1:9"
    api_token = "fake-service-token"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = Gate()
        self.launched: list[dict] = []  # user_options of every launch, in order
        self.stopped: list[dict] = []  # labels of the sessions stop_session stopped

    def api_url(self, path: str) -> str:
        return f"{self.hub_url}/hub/api/{path.lstrip('/')}"

    @property
    def tracker(self) -> FakeSessionTracker:
        return self.parent.sessions

    async def check(self) -> dict:
        return {"ok": True, "version": "fake"}

    async def launch(self, image: str, user_options: dict, owner: str = ""):
        # a logged-in user's session runs as that user (a named server per repository)
        username = owner or "fake-" + secrets.token_hex(4)
        key = f"{owner}--{user_options.get('repo_key', '')}" if owner else username
        self.launched.append({"image": image, "username": username, **user_options})
        yield {"phase": "launching", "message": f"Starting a session as {username}\n"}
        await self.gate.pass_()
        if self.fail_with:
            raise LaunchError(self.fail_with, 500)
        self.tracker.running[key] = Session(
            {LABEL_USER: username, LABEL_REPO_KEY: user_options.get("repo_key", ""),
             LABEL_CLIENT: user_options.get("client", ""),
             LABEL_GPUS: ",".join(user_options.get("gpus", []))}, image, None)
        yield {"phase": "ready", "url": f"http://127.0.0.1:1/user/{username}/",
               "token": secrets.token_hex(8)}

    async def last_activity(self, username: str):
        return None

    async def stop(self, username: str) -> None:
        self.tracker.running.pop(username, None)

    async def stop_session(self, labels: dict) -> None:
        """That one session (a logged-in user's other sessions stay), as the hub's is."""
        self.stopped.append(dict(labels))
        for key, session in list(self.tracker.running.items()):
            if all(session.labels.get(k) == labels.get(k) for k in (LABEL_USER,
                                                                     LABEL_REPO_KEY)):
                del self.tracker.running[key]


class FakeFingerprintWorker:
    """An environment key from the environment files' bytes; a Dockerfile keys by tree."""

    def __init__(self):
        self.computed = 0

    async def compute(self, checkout: Path, tree_hash: str, env_context=None) -> Fingerprint:
        self.computed += 1
        if (checkout / "Dockerfile").exists():
            return Fingerprint("tree", tree_hash, "DockerBuildPack", [], "a Dockerfile")
        files = [f for f in ENV_FILES if (checkout / f).is_file()]
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.encode() + b"\0" + (checkout / f).read_bytes())
        return Fingerprint("env", digest.hexdigest(), "FakeBuildPack", files)

    def close(self):
        pass


class MockBinderLab(BinderLab):
    """The real service with fake plugins; ``await start()``, then ``await stop()``."""

    def init_fingerprints(self):
        super().init_fingerprints()
        self.fingerprints = FakeFingerprintWorker()

    async def start_in_loop(self):
        self.listen()

    async def stop(self):
        self.http_server.stop()
        close = getattr(getattr(self, "pool", None), "close", None)
        if close is not None:  # the real WarmPool (tests may put a stand-in there)
            await close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http_server.close_all_connections()


def mock_config(tmp: Path, git_host: str, **sections) -> Config:
    """The config of an in-process service; ``sections`` override, e.g.
    ``LaunchLimits={"per_client": 2}``."""
    port = free_port()
    c = Config()
    c.BinderLab.config_file = str(tmp / "no-config-file.py")
    c.BinderLab.port = port
    c.BinderLab.state_dir = str(tmp / "state")
    c.BinderLab.image_prefix = "binderlab-inproc/"
    c.BinderLab.docker_url = "none"
    c.BinderLab.blocked_networks = []
    c.BinderLab.event_stream_linger = 0
    c.BinderLab.allow_build_only = True
    c.BinderLab.builder_class = FakeBuilder
    c.BinderLab.launcher_class = FakeLauncher
    c.BinderLab.session_tracker_class = FakeSessionTracker
    c.BinderLab.gpu_inventory_class = "static"
    c.GitHubRepoProvider.host = git_host
    c.GitRepoProvider.allowed_protocols = ["https", "http"]
    c.LaunchLimits.per_client = 0
    c.LaunchLimits.per_client_with_page = 0
    c.GPUAllocator.reconcile_interval = 0.05
    for section, values in sections.items():
        for key, value in values.items():
            setattr(c[section], key, value)
    return c


class EventStream:
    """One client of ``/build/...``: its events arrive in ``events`` as they are sent."""

    def __init__(self, base: str, path: str, params: str = ""):
        self.events: list[dict] = []
        self.status = None
        self._new = asyncio.Event()
        self._buffer = b""
        self._client = AsyncHTTPClient(force_instance=True)
        url = f"{base}build/{path}" + (f"?{params}" if params else "")
        request = HTTPRequest(url, headers={"Accept": "text/event-stream"},
                              streaming_callback=self._chunk, request_timeout=60)
        self.task = asyncio.ensure_future(self._client.fetch(request, raise_error=False))

    def _chunk(self, chunk: bytes):
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            for line in block.decode().splitlines():
                if line.startswith("data:"):
                    self.events.append(json.loads(line[5:]))
        self._new.set()

    async def until(self, phase: str, **fields) -> dict:
        """Wait for the first event of ``phase`` (with these field values); the stream
        ending first is an error that shows what it sent."""
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["phase"] == phase and all(event.get(k) == v
                                                   for k, v in fields.items()):
                    return event
            seen = len(self.events)
            if self.task.done():
                response = self.task.result()
                raise AssertionError(f"no {phase} event {fields or ''}; got "
                                     f"{response.code} {self.events or response.body!r}")
            self._new.clear()
            await asyncio.wait({self.task, asyncio.ensure_future(self._new.wait())},
                               return_when=asyncio.FIRST_COMPLETED)

    async def end(self) -> dict:
        """The final event (ready or failed), once the stream closed; every event the
        stream sent is checked against the published schema, and exactly one is final."""
        response = await self.task
        self.status = response.code
        self._client.close()
        for event in self.events:
            jsonschema.validate(event, events.schema())
        finals = [e for e in self.events if e["phase"] in events.FINAL]
        assert len(finals) == 1 and finals[0] is self.events[-1], \
            f"stream must end with one ready/failed: {response.code} {self.events}"
        return finals[-1]

    def close(self):
        self.task.cancel()
        self._client.close()
