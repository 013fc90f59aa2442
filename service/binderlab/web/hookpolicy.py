"""What the GitHub push webhook accepts: whose signature, which deliveries, how many prebuilds.

One host-wide secret means anyone who holds it (every instructor who set up a hook) can
sign pushes for every repository; a captured delivery could be sent again and again; and
each push starts a build. So: secrets per repository, delivery ids remembered for a while
(bounded), and prebuilds per repository limited per hour.
"""

import time
from collections import OrderedDict, deque

from traitlets import Dict, Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.platform import metrics


class GitHubWebhookPolicy(LoggingConfigurable):
    repository_secrets = Dict(
        key_trait=Unicode(), value_trait=Unicode(),
        help="""Webhook secrets per repository, {"owner/repo": "secret"} (case-insensitive
        names). A push for a listed repository must be signed with its own secret; the
        host-wide c.BinderLab.github_webhook_secret then signs only pushes of repositories
        not listed here (empty: only listed repositories are accepted). Default: none.""",
    ).tag(config=True)

    delivery_memory = Float(
        24 * 3600,
        help="""Seconds a delivery id (X-GitHub-Delivery) is remembered: the same delivery
        sent again within that time is acknowledged and ignored (default 86400).""",
    ).tag(config=True)

    max_remembered_deliveries = Int(
        100_000,
        help="""Delivery ids kept at most (oldest forgotten first), so the memory stays
        bounded whatever is sent (default 100000).""",
    ).tag(config=True)

    prebuilds_per_hour = Int(
        30,
        help="""Prebuilds the webhook starts per repository in any hour; further pushes get
        429 until the hour has passed. 0: no limit. Default 30.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._deliveries: OrderedDict[str, float] = OrderedDict()
        self._prebuilds: dict[str, deque[float]] = {}

    def secret_for(self, full_name: str, host_secret: str) -> str:
        """The secret a push for ``full_name`` must be signed with ('' = not accepted)."""
        own = {k.lower(): v for k, v in self.repository_secrets.items()}
        return own.get(full_name.lower(), host_secret)

    @property
    def enabled_without_host_secret(self) -> bool:
        return bool(self.repository_secrets)

    def first_delivery(self, delivery: str, now: float | None = None) -> bool:
        """True the first time ``delivery`` is seen within delivery_memory."""
        now = time.monotonic() if now is None else now
        while self._deliveries:
            oldest, seen = next(iter(self._deliveries.items()))
            if now - seen < self.delivery_memory and \
                    len(self._deliveries) < self.max_remembered_deliveries:
                break
            self._deliveries.popitem(last=False)
        if delivery in self._deliveries:
            metrics.WEBHOOK_DELIVERIES.labels("replayed").inc()
            return False
        self._deliveries[delivery] = now
        return True

    def allow_prebuild(self, full_name: str, now: float | None = None) -> bool:
        """Count a prebuild of ``full_name``; False when over prebuilds_per_hour."""
        if not self.prebuilds_per_hour:
            return True
        now = time.monotonic() if now is None else now
        key = full_name.lower()
        starts = self._prebuilds.setdefault(key, deque())
        while starts and now - starts[0] >= 3600:
            starts.popleft()
        if len(starts) >= self.prebuilds_per_hour:
            metrics.WEBHOOK_DELIVERIES.labels("rate_limited").inc()
            return False
        starts.append(now)
        # forget repositories with no recent prebuild, so the table stays bounded by traffic
        for name in [n for n, q in self._prebuilds.items() if q and now - q[-1] >= 3600]:
            del self._prebuilds[name]
        return True
