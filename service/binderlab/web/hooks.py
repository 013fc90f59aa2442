"""``POST /hooks/github``: a push webhook that prebuilds the pushed commit.

An instructor adds it to the course repository once; every push builds its environment in
the background, so students' launches are cache hits.
"""

import hashlib
import hmac
import json

from tornado import web

from binderlab.launch.pipeline import LaunchRequest
from binderlab.platform import metrics
from binderlab.web.base import BaseHandler
from binderlab.web.hookpolicy import GitHubWebhookPolicy


def webhook_policy(app) -> GitHubWebhookPolicy:
    """The app's webhook policy (one per app, configured from the app's config)."""
    policy = getattr(app, "_github_webhook_policy", None)
    if policy is None:
        policy = app._github_webhook_policy = GitHubWebhookPolicy(parent=app)
    return policy


class GitHubHookHandler(BaseHandler):
    def check_xsrf_cookie(self):  # a server-to-server call, authenticated by its signature
        pass

    def post(self):
        policy = webhook_policy(self.binderlab)
        host_secret = self.binderlab.github_webhook_secret
        if not host_secret and not policy.enabled_without_host_secret:
            raise web.HTTPError(404, "The GitHub webhook is not enabled on this host.")
        event = self.request.headers.get("X-GitHub-Event", "")
        try:
            payload = json.loads(self.request.body) if self.request.body else {}
        except ValueError:
            payload = None
        # the repository names the secret; nothing in the payload is trusted before the
        # signature over the whole body is checked with it
        full_name = ""
        if isinstance(payload, dict) and isinstance(payload.get("repository"), dict):
            full_name = str(payload["repository"].get("full_name", ""))
        secret = policy.secret_for(full_name, host_secret)
        signature = self.request.headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(secret.encode(), self.request.body,
                                        hashlib.sha256).hexdigest()
        # constant-time comparison: the time taken must not reveal how much matched
        if not secret or not hmac.compare_digest(signature.encode(), expected.encode()):
            metrics.WEBHOOK_DELIVERIES.labels("bad_signature").inc()
            raise web.HTTPError(401, "Bad or missing X-Hub-Signature-256.")
        delivery = self.request.headers.get("X-GitHub-Delivery", "")
        if not delivery or len(delivery) > 100:
            raise web.HTTPError(400, "Missing X-GitHub-Delivery.")
        if not policy.first_delivery(delivery):
            return self.finish({"status": "ignored", "reason": "delivery already received"})
        if event == "ping":
            return self.finish({"status": "ok"})
        if event != "push":
            raise web.HTTPError(400, f"Unsupported event {event!r}: send push events.")
        try:
            commit = payload["after"]
            assert full_name and isinstance(commit, str)
        except (KeyError, TypeError, AssertionError):
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
        if not policy.allow_prebuild(full_name):
            self.binderlab.log.warning("Webhook: prebuilds of %s over %d per hour; %s not "
                                       "built", full_name, policy.prebuilds_per_hour, commit)
            raise web.HTTPError(429, f"More than {policy.prebuilds_per_hour} prebuilds of "
                                f"{full_name} in an hour; this push is not built.")
        metrics.WEBHOOK_DELIVERIES.labels("prebuild").inc()
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
