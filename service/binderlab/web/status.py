"""Machine-readable status: /health, /versions, /metrics, /api/repoproviders."""

import asyncio
import json
import shutil
import time

import prometheus_client
from repo2docker import __version__ as repo2docker_version

from binderlab._version import __version__
from binderlab.builders.preflight import builder_checks
from binderlab.platform import isolation
from binderlab.web.base import BaseHandler


class HealthHandler(BaseHandler):
    """Checks what launches depend on; 200 when all pass, 503 otherwise.

    The answer is computed at most once per ``c.BinderLab.health_cache_seconds`` and shared
    by every request meanwhile: a load balancer polling it (or anyone else, it is public)
    costs one engine ping, hub call and builder check per interval, not one per request.
    The body names no paths, URLs or raw errors (the service log has the details)."""

    async def get(self):
        app = self.binderlab
        now = time.monotonic()
        cached = getattr(app, "_health", None)
        if cached is None or now - cached[0] >= app.health_cache_seconds or (
                cached[1].done() and cached[1].exception()):
            cached = (now, asyncio.ensure_future(self.compute()))
            app._health = cached
        body = await asyncio.shield(cached[1])
        self.set_status(200 if body["ok"] else 503)
        self.set_cors_headers()
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    async def compute(self) -> dict:
        checks = list(await asyncio.gather(self.check_docker(), self.check_hub(),
                                           self.check_disk(), self.check_builder()))
        if self.binderlab.isolation_status_file:
            checks.append(self.check_isolation())
        gpus = self.binderlab.gpus
        checks.append({"service": "GPUs", "ok": True,
                       **(gpus.status() if gpus else {"total": 0, "in_use": 0, "queue": 0})})
        return {"ok": all(c["ok"] for c in checks), "checks": checks}

    async def check_docker(self) -> dict:
        if self.binderlab.engine is None:
            return {"service": "Docker", "ok": True, "note": "not used (docker_url = 'none')"}
        try:
            await asyncio.wait_for(self.binderlab.engine.ping(), 10)
            return {"service": "Docker", "ok": True}
        except Exception as e:
            self.binderlab.log.warning("Health: the Docker engine does not answer: %s", e)
            return {"service": "Docker", "ok": False, "error": "the engine does not answer"}

    async def check_hub(self) -> dict:
        launcher = self.pipeline.launcher
        if launcher is None:
            return {"service": "JupyterHub", "ok": True, "note": "build-only host"}
        result = await launcher.check()
        if not result.get("ok"):
            self.binderlab.log.warning("Health: JupyterHub: %s", result.get("error"))
            return {"service": "JupyterHub", "ok": False, "error": "JupyterHub is not reachable"}
        return {"service": "JupyterHub", "ok": True,
                **({"version": result["version"]} if result.get("version") else {})}

    async def check_disk(self) -> dict:
        usage = shutil.disk_usage(self.binderlab.state_dir)
        free_gb = usage.free / 1e9
        minimum = self.binderlab.min_free_disk_gb
        return {"service": "Disk", "ok": free_gb >= minimum, "free_gb": round(free_gb, 2),
                "min_free_gb": minimum}

    async def check_builder(self) -> dict:
        """Whether a build can run now (buildx, engine, base image): a host that cannot
        build is not healthy, however well the rest answers."""
        checks = await builder_checks(self.binderlab.builder, self.binderlab.engine)
        failed = [c for c in checks if not c.ok]
        for c in failed:
            self.binderlab.log.warning("Health: builder: %s: %s", c.name, c.message)
        result = {"service": "builder", "ok": not failed,
                  "checks": {c.name: c.ok for c in checks}}
        if any(c.name == "buildx" for c in failed):
            result["error"] = "docker buildx is missing or broken: builds cannot run"
        elif failed:
            result["error"] = f"{failed[0].name} check failed"
        return result


    def check_isolation(self) -> dict:
        """The session network and egress rules (one box), as root last found them: the
        service runs unprivileged and cannot read the firewall itself."""
        problems = isolation.read_status(self.binderlab.isolation_status_file,
                                         self.binderlab.isolation_status_max_age)
        for problem in problems:
            self.binderlab.log.warning("Health: isolation: %s", problem)
        result = {"service": "isolation", "ok": not problems}
        if problems:
            result["error"] = (f"{len(problems)} isolation problem(s): sessions may reach "
                               "each other, the host or private networks")
        return result


class VersionsHandler(BaseHandler):
    """Answers as BinderHub's ``/versions`` does, plus binderlab's own key.

    Clients tell a BinderHub from a plain JupyterHub by this answer: MyST's launch button
    (myst-theme) fetches ``<host>/versions`` and takes the host for a BinderHub when the
    JSON has a ``binderhub`` key, else it tries ``<host>/hub/api/``. BinderHub sends its
    version there, ``builder_info`` from its builder (the local repo2docker builder says
    ``repo2docker-version``) and, for older clients, ``builder``.
    """

    def get(self):
        self.set_cors_headers()
        self.finish({
            "binderhub": __version__,
            "builder_info": {"repo2docker-version": repo2docker_version},
            "builder": f"repo2docker {repo2docker_version}",
            "binderlab": __version__,
        })


class MetricsHandler(BaseHandler):
    def get(self):
        self.set_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.finish(prometheus_client.generate_latest())


class RepoProvidersHandler(BaseHandler):
    def get(self):
        self.set_cors_headers()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps([p.info() for p in self.providers.values()]))


default_handlers = [
    (r"health", HealthHandler),
    (r"versions", VersionsHandler),
    (r"metrics", MetricsHandler),
    (r"api/repoproviders", RepoProvidersHandler),
]
