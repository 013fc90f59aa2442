"""``POST /hooks/github``: a push webhook that prebuilds the pushed commit.

An instructor adds it to the course repository once; every push builds its environment in
the background, so students' launches are cache hits.
"""

import hashlib
import hmac
import json

from tornado import web

from binderlab.launch.pipeline import LaunchRequest
from binderlab.web.base import BaseHandler


class GitHubHookHandler(BaseHandler):
    def check_xsrf_cookie(self):  # a server-to-server call, authenticated by its signature
        pass

    def post(self):
        secret = self.binderlab.github_webhook_secret
        if not secret:
            raise web.HTTPError(404, "The GitHub webhook is not enabled on this host.")
        signature = self.request.headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(secret.encode(), self.request.body,
                                        hashlib.sha256).hexdigest()
        # constant-time comparison: the time taken must not reveal how much matched
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise web.HTTPError(401, "Bad or missing X-Hub-Signature-256.")
        event = self.request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return self.finish({"status": "ok"})
        if event != "push":
            raise web.HTTPError(400, f"Unsupported event {event!r}: send push events.")
        try:
            payload = json.loads(self.request.body)
            full_name = payload["repository"]["full_name"]
            commit = payload["after"]
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, "Not a GitHub push payload.") from None
        if payload.get("deleted") or set(commit) == {"0"}:
            return self.finish({"status": "ignored", "reason": "branch deleted"})
        provider = self.providers.get("gh")
        if provider is None:
            raise web.HTTPError(404, "The gh provider is not enabled on this host.")
        spec = f"{full_name}/{commit}"
        try:
            provider.parse(spec)
        except Exception as e:
            raise web.HTTPError(400, str(e)) from None
        self.binderlab.background_task(self.prebuild(LaunchRequest(provider, spec,
                                                                   build_only=True)))
        self.set_status(202)
        self.finish({"status": "building", "spec": f"gh/{spec}"})

    async def prebuild(self, request: LaunchRequest):
        async for event in self.pipeline.events(request):
            if event["phase"] in ("failed", "ready"):
                self.binderlab.log.info("Prebuild of gh/%s: %s %s", request.raw_spec,
                                        event["phase"], event.get("message", "").strip())


default_handlers = [(r"hooks/github", GitHubHookHandler)]
