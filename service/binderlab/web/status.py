"""Machine-readable status: /health, /versions, /metrics, /api/repoproviders."""

import asyncio
import json
import shutil

import prometheus_client
from repo2docker import __version__ as repo2docker_version

from binderlab._version import __version__
from binderlab.web.base import BaseHandler


class HealthHandler(BaseHandler):
    """Checks what launches depend on; 200 when all pass, 503 otherwise."""

    async def get(self):
        checks = await asyncio.gather(self.check_docker(), self.check_hub(), self.check_disk())
        gpus = self.binderlab.gpus
        checks.append({"service": "GPUs", "ok": True,
                       **(gpus.status() if gpus else {"total": 0, "in_use": 0, "queue": 0})})
        ok = all(c["ok"] for c in checks)
        self.set_status(200 if ok else 503)
        self.set_cors_headers()
        self.finish({"ok": ok, "checks": checks})

    async def check_docker(self) -> dict:
        if self.binderlab.engine is None:
            return {"service": "Docker", "ok": True, "note": "not used (docker_url = 'none')"}
        try:
            await asyncio.wait_for(self.binderlab.engine.ping(), 10)
            return {"service": "Docker", "ok": True}
        except Exception as e:
            return {"service": "Docker", "ok": False, "error": str(e)}

    async def check_hub(self) -> dict:
        launcher = self.pipeline.launcher
        if launcher is None:
            return {"service": "JupyterHub", "ok": True, "note": "build-only host"}
        return {"service": "JupyterHub", **await launcher.check()}

    async def check_disk(self) -> dict:
        usage = shutil.disk_usage(self.binderlab.state_dir)
        free_gb = usage.free / 1e9
        minimum = self.binderlab.min_free_disk_gb
        return {"service": "Disk", "ok": free_gb >= minimum, "free_gb": round(free_gb, 2),
                "min_free_gb": minimum, "path": str(self.binderlab.state_dir)}


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
