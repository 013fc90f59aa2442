"""``GET /environment/<provider>/<spec>``: the record of the environment a launch gets.

HTML for people; JSON with ``Accept: application/json`` (or ``?format=json``); the stored
build log as a download with ``?format=log``. The record outlives the image: a reader can
see what a paper's environment held, and rebuild it, after the image was evicted.
"""

import time

from tornado import web

from binderlab.builders.records import reproduce
from binderlab.errors import LaunchError
from binderlab.launch.context import LaunchRequest
from binderlab.web.base import BaseHandler


class EnvironmentHandler(BaseHandler):
    async def get(self, provider_prefix: str, _spec: str):
        provider, raw_spec = self.provider_and_spec("environment", provider_prefix)
        records = getattr(self.binderlab, "records", None)
        if records is None:
            raise web.HTTPError(404, "This host keeps no environment records.")
        try:
            spec = provider.parse(raw_spec)
            # the launch's own steps, without its rate limit (reading a record is no launch)
            ctx = self.pipeline.context(LaunchRequest(provider, raw_spec, spec=spec))
            limits = getattr(self.binderlab, "limits", None)
            if limits is not None:
                limits.check_spec(ctx.repo_key)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None
        try:
            resolved = ctx.resolved = await provider.resolve(spec,
                                                             self.pipeline.blocked_networks)
            await self.pipeline.fetch(ctx)
            plan = await self.pipeline.plan(ctx)
        except LaunchError as e:
            # the repository (or that commit) may be gone: the record of its build is not
            kept = records.find(provider.prefix, spec.spec)
            if kept is None:
                raise web.HTTPError(e.status_code, str(e)) from None
            await self.write_kept(kept, str(e))
            return
        record = records.get(plan.image)
        try:
            available = await self.binderlab.builder.image_ready(plan.image,
                                                                 plan.fingerprint.key)
        except Exception:  # no engine (cluster tier without registry access): unknown
            available = None
        base = self.binderlab.public_url
        here = f"{base}environment/{provider.prefix}/{resolved.persistent_spec}"
        fmt = self.get_argument("format", "")
        self.set_cors_headers()
        if fmt == "log":
            log = records.build_log(plan.image)
            if log is None:
                raise web.HTTPError(404, "No build log is kept for this environment (it was "
                                    "built before this host kept logs, or not built yet).")
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("Content-Disposition",
                            f'attachment; filename="{plan.fingerprint.kind}-'
                            f'{plan.fingerprint.key[:12]}-build.log"')
            self.finish(log)
            return
        body = {
            "environment_url": here,
            "launch_url": f"{base}v2/{provider.prefix}/{resolved.persistent_spec}",
            "build_log_url": f"{here}?format=log" if record else None,
            "image": plan.image,
            "image_available": available,
            "requested": {"provider": provider.prefix, "spec": spec.spec,
                          "repo_url": spec.repo_url, "commit": resolved.commit,
                          "tree": plan.tree},
            "environment": {"kind": plan.fingerprint.kind, "key": plan.fingerprint.key,
                            "buildpack": plan.fingerprint.buildpack,
                            "files": list(plan.fingerprint.files),
                            "reason": plan.fingerprint.reason},
            "record": record,
            "reproduce": reproduce(record) if record else None,
        }
        if not record and not available:
            self.set_status(404)
            body["message"] = ("No image was built for this environment yet: launch it "
                               "once and its record appears here.")
        wants_json = fmt == "json" or "application/json" in self.request.headers.get(
            "Accept", "")
        if wants_json:
            self.finish(body)
            return
        self.render("environment.html", base_url=self.binderlab.base_url, body=body,
                    when=_when)


    async def write_kept(self, record: dict, problem: str) -> None:
        """A record whose repository cannot be read any more (deleted, made private)."""
        records = self.binderlab.records
        here = (f"{self.binderlab.public_url}environment/{record['provider']}/"
                f"{record['persistent_spec']}")
        if self.get_argument("format", "") == "log":
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="build.log"')
            self.finish(records.build_log(record["image"]) or "")
            return
        try:
            available = await self.binderlab.builder.image_ready(record["image"], record["key"])
        except Exception:
            available = None
        body = {
            "environment_url": here,
            "launch_url": f"{self.binderlab.public_url}v2/{record['provider']}/"
                          f"{record['persistent_spec']}",
            "build_log_url": f"{here}?format=log",
            "image": record["image"], "image_available": available,
            "requested": {"provider": record["provider"], "spec": record["spec"],
                          "repo_url": record["repo_url"], "commit": record["commit"],
                          "tree": record.get("tree", "")},
            "environment": {k: record.get(k) for k in ("kind", "key", "buildpack", "files",
                                                       "reason")},
            "record": record, "reproduce": reproduce(record),
            "message": f"The repository cannot be read now ({problem.rstrip('.')}); this "
                       "is the record kept of its build.",
        }
        if self.get_argument("format", "") == "json" or "application/json" in \
                self.request.headers.get("Accept", ""):
            self.finish(body)
            return
        self.render("environment.html", base_url=self.binderlab.base_url, body=body,
                    when=_when)


def _when(seconds) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds)) if seconds else "unknown"


default_handlers = [(r"environment/([^/]+)/(.+)", EnvironmentHandler)]
