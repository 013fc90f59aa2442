"""The binderlab service: a Tornado app whose start-up is a list of small steps.

Read top to bottom: the options (traits), ``initialize`` as one ``init_*`` step per
collaborator (engine, sessions, cache index, providers, eviction, builder, fingerprints,
launcher, GPUs, limits, pipeline, Tornado), then running (``listen``, ``serve``) and
``shutdown``, which closes what the steps opened.

``binderlab serve`` runs this service alone (JupyterHub runs elsewhere);
``binderlab up`` (commands/up.py) runs JupyterHub beside it; ``binderlab build``
(commands/cli.py) builds without launching.
"""

import asyncio
import hashlib
import json
import logging
import os
import resource
import signal
from pathlib import Path

import tornado.web
from jupyterhub.traitlets import EntryPointType
from repo2docker import __version__ as repo2docker_version
from traitlets import Bool, Enum, Float, Integer, List, Unicode, default
from traitlets.config import Application, catch_config_error

from binderlab import contract, web
from binderlab._version import __version__
from binderlab.builders.cacheindex import CacheIndex, engine_images
from binderlab.builders.eviction import ImageEvictor
from binderlab.builders.records import EnvironmentRecords, repo2docker_base_image
from binderlab.builders.repo2docker import Builder, Repo2DockerBuilder
from binderlab.contract import (
    image_prefix_trait,
)
from binderlab.courses.manager import Courses
from binderlab.fingerprint.worker import FingerprintWorker
from binderlab.gpus.allocator import (
    GPUAllocator,
    GPUInventory,
    NvidiaSmiGPUInventory,
    StaticGPUInventory,
)
from binderlab.gpus.budgets import GPUBudgets
from binderlab.launch.launchlog import LaunchLog
from binderlab.launch.limits import LaunchLimits
from binderlab.launch.pipeline import Pipeline
from binderlab.platform.docker import DockerEngine
from binderlab.repos import netguard
from binderlab.repos.diskbudget import RepoDiskBudget
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import RepoProvider
from binderlab.resources import frontend_dir
from binderlab.sessions.launcher import HubLauncher, Launcher
from binderlab.sessions.lifecycle import SessionLifecycle
from binderlab.sessions.temporary import TemporaryUserReaper
from binderlab.sessions.trackers import (
    DockerSessionTracker,
    KubernetesSessionTracker,
    SessionTracker,
)
from binderlab.web import auth


class BinderLab(Application):
    name = "binderlab"
    version = __version__
    description = """Run the binderlab service: BinderHub's API on top of repo2docker and
    JupyterHub. JupyterHub must run separately; `binderlab up` starts both."""

    aliases = {
        "config": "BinderLab.config_file",
        "ip": "BinderLab.ip",
        "port": "BinderLab.port",
        "log-level": "Application.log_level",
    }
    flags = {"debug": ({"Application": {"log_level": logging.DEBUG}}, "Log at DEBUG level.")}

    @property
    def classes(self):
        """Every configurable class, so --help-all lists all options."""
        from binderlab.repos.archives import ARCHIVE_PROVIDERS
        from binderlab.repos.providers import (
            GistRepoProvider,
            GitHubRepoProvider,
            GitLabRepoProvider,
            GitRepoProvider,
        )
        from binderlab.sessions.pool import WarmPool
        from binderlab.sessions.pooled import HubPoolBackend
        from binderlab.spawners.claimmerge import ClaimMerge
        from binderlab.web.hookpolicy import GitHubWebhookPolicy

        classes = [type(self), BinderLab, GitRepoProvider, GitHubRepoProvider,
                   GitLabRepoProvider, GistRepoProvider, Repo2DockerBuilder, HubLauncher,
                   LaunchLimits, GPUAllocator, StaticGPUInventory, NvidiaSmiGPUInventory,
                   GPUBudgets, GitHubWebhookPolicy, KubernetesSessionTracker, *ARCHIVE_PROVIDERS,
                   FingerprintWorker, RepoDiskBudget, TemporaryUserReaper, WarmPool,
                   HubPoolBackend, ClaimMerge, Courses]
        try:  # the cluster builder needs the kubernetes extra
            from binderlab.builders.kubernetes import KubernetesBuilder
        except ImportError:
            return classes
        return [*classes, KubernetesBuilder]

    config_file = Unicode(
        "binderlab_config.py",
        help="The config file to load (traitlets, `c.BinderLab.*`). Missing is fine.",
    ).tag(config=True)

    ip = Unicode("127.0.0.1", help="Address the binder service listens on.").tag(config=True)
    port = Integer(8585, help="Port the binder service listens on (default 8585).").tag(
        config=True
    )
    base_url = Unicode(
        "/", help="URL prefix of every route, starting and ending with '/' (default '/')."
    ).tag(config=True)

    public_url = Unicode(
        help="""The URL users reach this service at (badges, `binder_launch_host`).

        Default: http://<ip>:<port><base_url>. Set it behind a reverse proxy.""",
    ).tag(config=True)

    @default("public_url")
    def _default_public_url(self):
        return f"http://{self.ip}:{self.port}{self.base_url}"

    state_dir = Unicode(
        help="""Directory for binderlab's state: git mirrors, build contexts, the hub's
        database and generated secrets. Default: $XDG_STATE_HOME/binderlab
        (~/.local/state/binderlab).""",
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self):
        base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return os.path.join(base, "binderlab")

    image_prefix = image_prefix_trait()

    blocked_networks = List(
        Unicode(),
        default_value=netguard.DEFAULT_BLOCKED_NETWORKS,
        help="""Networks (CIDR) that repository hosts must not resolve into (SSRF guard).

        Default: loopback, private, link-local (incl. cloud metadata), carrier-grade NAT.
        [] allows every address; tests that serve repositories on 127.0.0.1 do that.""",
    ).tag(config=True)

    repo_providers = List(
        Unicode(),
        default_value=["gh", "gl", "git", "gist", "zenodo", "figshare", "hydroshare",
                       "dataverse", "ckan", "swhid"],
        help="""Repository providers this host accepts, by entry point name
        (group binderlab.repo_providers: gh, gl, git, gist; DOI and archive records:
        zenodo, figshare, hydroshare, dataverse, ckan, swhid). Default: all of them.""",
    ).tag(config=True)

    builder_class = EntryPointType(
        default_value=Repo2DockerBuilder,
        klass=Builder,
        entry_point_group="binderlab.builders",
        help="How images are built: an entry point name or a Builder class.",
    ).tag(config=True)

    launcher_class = EntryPointType(
        default_value=HubLauncher,
        klass=Launcher,
        entry_point_group="binderlab.launchers",
        help="How sessions are started: an entry point name or a Launcher class.",
    ).tag(config=True)

    authentication = Enum(
        list(contract.AUTHENTICATION_MODES), default_value="none",
        help="""Who may launch: 'none' (default) anonymous launches, each session a temporary
        hub user; 'required' every launch belongs to a JupyterHub user, and the pages, /v2/
        and /build/ send a browser without a login to the hub's login first; 'optional'
        anonymous launches as with 'none', and a logged-in user's launches are theirs.

        With 'required' or 'optional' the service is a JupyterHub OAuth client (the hub
        registers it; its callback is <public_url>oauth_callback), a user's launch starts
        one named server of theirs per repository (a second launch returns to it), and
        per-client limits count a logged-in user by hub name instead of address. Who can
        log in is the hub's authenticator (c.UpApp.hub_config_overlay).""",
    ).tag(config=True)

    instructor_group = Unicode(
        contract.INSTRUCTOR_GROUP,
        help="""The JupyterHub group whose members are instructors (default 'instructors'):
        an LMS launch puts people with an instructor role in it (c.CourseLaunch in the hub
        config; `binderlab up` passes this name on), and /api/user says `instructor`.""",
    ).tag(config=True)

    trusted_proxies = List(
        Unicode(),
        help="""Reverse proxies (CIDR, e.g. ["127.0.0.1/32"]) whose X-Forwarded-For /
        X-Real-Ip headers name the client. Default: none, the connection's address is the
        client (rate limits and GPU limits count per client address).""",
    ).tag(config=True)

    cors_allow_origin = Unicode(
        "*",
        help="""Access-Control-Allow-Origin for the API (event stream, health, versions).

        '*' (default) lets course pages on any site launch; '' sends no CORS header.""",
    ).tag(config=True)

    login_ticket_origins = List(
        Unicode(),
        help="""Course sites (origins, e.g. "https://course.example.org") whose pages may
        launch as their logged-in reader, with authentication "required" or "optional".

        thebe on another origin cannot send the login cookie; such a page opens
        <public_url>login_ticket?origin=<its origin> and gets a single-use, one-minute
        ticket by postMessage (README "thebe on a course site, logged in"). Default: none.""",
    ).tag(config=True)

    allow_build_only = Bool(
        False,
        help="Accept `build_only=true` on /build (build, do not launch). Off by default.",
    ).tag(config=True)

    keepalive_interval = Float(
        25, help="Seconds between keep-alive comments on an event stream (default 25)."
    ).tag(config=True)

    event_stream_linger = Float(
        60,
        help="""Seconds an event stream stays open after `ready` or `failed` (default 60).

        Clients close it themselves; closing from the server makes browsers reconnect,
        which would launch again.""",
    ).tag(config=True)

    max_repo_size_mb = Float(
        2000,
        help="""Largest repository checkout (MB, the commit's files) this host builds or
        launches (default 2000); 0: no limit. Larger ones get a clear 413.""",
    ).tag(config=True)

    git_timeout = Float(
        300, help="Seconds fetching one commit may take (default 300)."
    ).tag(config=True)

    health_cache_seconds = Float(
        5,
        help="""Seconds /health reuses its last answer (default 5); 0 computes it for every
        request. Requests meanwhile share one run of the checks.""",
    ).tag(config=True)

    isolation_status_file = Unicode(
        "",
        help="""The one-box isolation status file that `python -m binderlab.platform.isolation
        apply|check` writes (deploy/docker sets /run/binderlab-isolation.json). When set,
        /health has an "isolation" check that fails while the session network or the egress
        rules are missing, or the status is older than isolation_status_max_age. Empty
        (default): no such check (plain `binderlab up`, Kubernetes).""",
    ).tag(config=True)

    isolation_status_max_age = Float(
        0,
        help="""Seconds after which the isolation status counts as stale (default 0: never;
        a deployment that re-runs `isolation check` from a timer sets its interval here).""",
    ).tag(config=True)

    min_free_disk_gb = Float(
        2, help="/health reports unhealthy below this much free disk in state_dir (GB)."
    ).tag(config=True)

    image_disk_budget_gb = Float(
        0,
        help="""Disk space (GB) binderlab's images may use; 0 (default) means no limit.

        Over budget, the least recently launched images are removed, never one in use, a
        pinned one (`binderlab build --pin`) or one that just finished building. Checked
        after every build and every eviction_interval seconds.""",
    ).tag(config=True)

    eviction_interval = Float(
        600, help="Seconds between disk-budget checks (default 600)."
    ).tag(config=True)

    gpu_inventory_class = EntryPointType(
        default_value=NvidiaSmiGPUInventory,
        klass=GPUInventory,
        entry_point_group="binderlab.gpu_inventories",
        help="""Where the list of GPUs comes from: 'nvidia-smi' (default; no GPUs when it is
        missing), 'nvml' (nvidia-ml-py) or 'static' (c.StaticGPUInventory.devices).""",
    ).tag(config=True)

    github_webhook_secret = Unicode(
        "",
        help="""Secret of the GitHub push webhook at POST /hooks/github, which prebuilds
        each pushed commit. Empty (default): the webhook is off (404).""",
    ).tag(config=True)

    docker_url = Unicode(
        "",
        help="""Docker engine URL. Empty (default): DOCKER_HOST or the local socket. 'none':
        no engine (the cluster tier: KubernetesBuilder and KubernetesSessionTracker); image
        eviction and the local image index are then off.""",
    ).tag(config=True)

    session_tracker_class = EntryPointType(
        default_value=DockerSessionTracker,
        klass=SessionTracker,
        entry_point_group="binderlab.session_trackers",
        help="""Where running sessions are read from (GPU holdings, session quotas): 'docker'
        (default: the engine's containers) or 'kubernetes' (the cluster's session pods).""",
    ).tag(config=True)

    rebuild_from_records = Bool(
        False,
        help="""Rebuild an image that is gone (evicted, removed) from the packages its
        environment record lists, so the same versions come back instead of a fresh solve.
        Off by default.

        Covers environments defined by one requirements.txt (pip), with apt.txt and
        runtime.txt beside it: the recorded `pip freeze` replaces requirements.txt in the
        build. Conda, Pipenv, R and Julia environments are solved afresh.""",
    ).tag(config=True)

    warm_pool = Bool(
        False,
        help="""Keep started, never-used sessions for the most launched images (the warm
        pool, c.WarmPool.*), so a launch of one is ready in a fraction of a second. Off by
        default: warm sessions hold memory (c.WarmPool.memory_budget) while nobody uses them.""",
    ).tag(config=True)

    # ---- start-up steps -------------------------------------------------------------

    @catch_config_error
    def initialize(self, argv=None):
        super().initialize(argv)
        if self.subapp:
            return
        self.load_config_file(self.config_file)
        self.init_logging()
        self.init_state_dir()
        self.init_engine()
        self.init_sessions()
        self.init_index()
        self.init_providers()
        self.init_eviction()
        self.init_builder()
        self.init_fingerprints()
        self.init_launcher()
        self.init_gpus()
        self.init_limits()
        self.init_auth()
        self.init_pipeline()
        self.init_pool()
        self.init_records()
        self.init_courses()
        self.init_tornado()

    def init_logging(self):
        self._tasks: set[asyncio.Task] = set()
        # every watched launch runs git and holds a connection: 1,000 watchers need ~3,000
        # files, more than the usual soft limit of 1,024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.log.propagate = False
        logging.getLogger("tornado.access").setLevel(max(self.log_level, logging.INFO))

    def init_state_dir(self):
        self.state_path = Path(self.state_dir)
        self.state_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("build", "content", "git"):
            (self.state_path / sub).mkdir(exist_ok=True)

    def init_engine(self):
        self.engine = None if self.docker_url == "none" else DockerEngine(self.docker_url or None)

    def init_sessions(self):
        self.sessions = self.session_tracker_class(parent=self, log=self.log,
                                                   **({"engine": self.engine}
                                                      if self.engine else {}))
        self.lifecycle = SessionLifecycle(self.sessions, self.engine, self.image_prefix,
                                          self.log)

    def init_index(self):
        """Open the cache index and rebuild its image table from the engine's images."""
        self.index = CacheIndex(self.state_path / "cache.sqlite")
        images = engine_images(self.engine.client, self.image_prefix) if self.engine else []
        self.index.rebuild(images)
        self.log.info("Cache index: %d images", len(images))

    def init_fingerprints(self):
        args = self.builder.r2d_args()
        self.fingerprints = FingerprintWorker(args, parent=self, log=self.log)
        digest = hashlib.sha256(json.dumps([repo2docker_version, __version__, args]).encode())
        if self.builder.repo2docker_config:
            digest.update(Path(self.builder.repo2docker_config).read_bytes())
        self.config_digest = digest.hexdigest()

    def init_providers(self):
        installed = EntryPointType(klass=RepoProvider, entry_point_group="binderlab.repo_providers")
        points = installed.load_entry_points()
        self.providers: dict[str, RepoProvider] = {}
        for name in self.repo_providers:
            if name not in points:
                raise ValueError(f"Unknown repo provider {name!r}; installed: {sorted(points)}")
            provider = points[name].load()(parent=self, log=self.log)
            self.providers[provider.prefix] = provider

    def init_builder(self):
        self.builder = self.builder_class(
            parent=self, log=self.log, engine=self.engine, work_dir=self.state_path / "build",
            index=self.index, evictor=self.evictor, image_prefix=self.image_prefix,
        )

    def init_launcher(self):
        self.launcher = self.launcher_class(parent=self, log=self.log, lifecycle=self.lifecycle)

    def init_gpus(self):
        devices = self.gpu_inventory_class(parent=self, log=self.log).list_devices()
        # reservations of launches in flight survive a restart (gpus/reservations.py)
        self.gpus = GPUAllocator(parent=self, log=self.log, devices=devices,
                                 tracker=self.sessions,
                                 state_file=self.state_path / "gpu-reservations.json",
                                 budget_file=self.state_path / "gpu-budgets.json",
                                 ) if devices else None
        if devices:
            self.log.info("GPUs: %s", ", ".join(f"{d.id} ({d.name})" for d in devices))

    def init_limits(self):
        self.limits = LaunchLimits(parent=self, log=self.log,
                                   sessions_page=f"{self.public_url}sessions")
        self.trusted_proxy_networks = netguard.parse_networks(self.trusted_proxies)

    def init_auth(self):
        """Logged-in mode: the hub's OAuth (web/auth.py). The HubOAuth is made on first use,
        since `binderlab up` sets the service token after these steps."""
        self._hub_auth = None
        if self.authentication != "none" and not hasattr(self.launcher, "api_url"):
            raise ValueError(f"c.BinderLab.authentication = {self.authentication!r} needs "
                             "JupyterHub's logins: a hub launcher (launcher_class = "
                             f"'jupyterhub'), not {type(self.launcher).__name__}.")

    @property
    def hub_auth(self):
        if self.authentication == "none":
            return None
        if self._hub_auth is None:
            self._hub_auth = auth.hub_oauth(self)
        return self._hub_auth

    def init_pipeline(self):
        self.mirrors = RepoMirrors(self.state_path / "git", self.git_timeout)
        for provider in self.providers.values():
            if hasattr(provider, "attach"):  # archive providers import records as commits
                provider.attach(mirrors=self.mirrors, work_dir=self.state_path / "build",
                                max_bytes=int(self.max_repo_size_mb * 1e6))
        self.pipeline = Pipeline(
            builder=self.builder, launcher=self.launcher, mirrors=self.mirrors,
            fingerprints=self.fingerprints, index=self.index, config_digest=self.config_digest,
            image_prefix=self.image_prefix,
            blocked_networks=netguard.parse_networks(self.blocked_networks),
            public_url=self.public_url, work_dir=self.state_path / "build",
            content_dir=self.state_path / "content", gpus=self.gpus, limits=self.limits,
            launch_log=LaunchLog(self.state_path / "launches.jsonl"),
            providers=list(self.providers.values()),
            max_repo_bytes=int(self.max_repo_size_mb * 1e6), sessions=self.sessions,
            disk=RepoDiskBudget(self.state_path / "git", self.state_path / "content",
                                parent=self, log=self.log),
        )

    def init_pool(self):
        """The warm pool (sessions/pool.py), None when c.BinderLab.warm_pool is off."""
        from binderlab.sessions.pooled import make_pool
        from binderlab.spawners.claimmerge import ClaimMerge  # logged-in claims' merge

        self.pool = make_pool(self, ClaimMerge) if self.warm_pool else None
        self.pipeline.pool = self.lifecycle.pool = self.pool
        if self.evictor is not None:
            self.evictor.pool = self.pool

    def init_records(self):
        """Environment records of built images (``GET /environment/...``)."""
        self.records = EnvironmentRecords(
            self.state_path / "records", engine=self.engine, log=self.log,
            base_image=repo2docker_base_image(self.builder.repo2docker_config))
        self.pipeline.records = self.records
        self.pipeline.rebuild_from_records = self.rebuild_from_records

    def init_courses(self):
        """Registered courses (courses/): their allowance joins the launch limits."""
        self.courses = Courses(self)

    def init_eviction(self):
        self.evictor = None if self.engine is None else ImageEvictor(
            self.engine, self.index, self.image_prefix, self.image_disk_budget_gb * 1e9,
            self.log)

    def background_task(self, coro) -> asyncio.Task:
        """Run ``coro`` beyond the request that started it; its errors are logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t):
            self._tasks.discard(t)
            if not t.cancelled() and t.exception():
                self.log.error("Background task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    async def evict_periodically(self):
        while self.image_disk_budget_gb > 0 and self.evictor is not None:
            try:
                await self.evictor.run()
            except Exception:
                self.log.exception("Eviction failed")
            await asyncio.sleep(self.eviction_interval)

    def init_tornado(self):
        base = self.base_url
        routes = [(base + pattern, handler) for pattern, handler in web.default_handlers]
        routes.append((base + r"static/(.*)", tornado.web.StaticFileHandler,
                       {"path": str(frontend_dir() / "static")}))
        self.tornado_app = tornado.web.Application(
            routes, binderlab=self, template_path=str(frontend_dir() / "templates"),
            log_function=self._log_request,
            # signs the OAuth state and login cookies of logged-in mode
            cookie_secret=auth.cookie_secret(self.state_path),
        )

    def _log_request(self, handler):
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        if handler.request.path.endswith(("/health", "/metrics")) and status < 400:
            level = logging.DEBUG
        self.log.log(level, "%d %s %s %.0fms", status, handler.request.method,
                     handler.request.uri, 1000 * handler.request.request_time())

    # ---- running ----------------------------------------------------------------------

    def listen(self):
        # no xheaders: forwarding headers are believed only from trusted_proxies
        # (BaseHandler.client_address), or any client could pick its own address
        self.http_server = self.tornado_app.listen(self.port, self.ip)
        self.background_task(self.evict_periodically())
        self.lifecycle.start()
        if self.pool is not None:
            self.pool.start()
        if self.authentication != "none" and hasattr(self.launcher, "username_prefix"):
            # the culler keeps logged-in users; temporary ones go here (sessions/temporary.py)
            pool_prefix = (self.pool.username_prefix,) if self.pool is not None else ()
            self.background_task(TemporaryUserReaper(self.launcher, pool_prefix,
                                                     parent=self).run())
        self.background_task(self.courses.run())  # prebuilds and pool fill per window
        if self.gpus is not None and self.launcher is not None:
            self.background_task(self.gpus.run(self.launcher))
        self.log.info("binder service at %s", self.public_url)

    async def serve_until_stopped(self):
        """Return when the process gets SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    async def serve(self):
        self.listen()
        try:
            await self.serve_until_stopped()
        finally:
            await self.shutdown()

    async def shutdown(self):
        """Undo initialize() and listen(), last started first closed."""
        if getattr(self, "http_server", None) is not None:
            self.http_server.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if getattr(self, "records", None) is not None:
            await self.records.close()  # before the engine closes: probes remove containers
        if getattr(self, "pool", None) is not None:
            await self.pool.close()  # its sessions stop through the hub, which still runs
        await self.lifecycle.close()
        await self.fingerprints.aclose()
        if self.engine is not None:
            self.engine.close()
        self.index.close()

    def start(self):
        if self.subapp:
            return self.subapp.start()
        asyncio.run(self.serve())

