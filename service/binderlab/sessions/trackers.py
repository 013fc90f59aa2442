"""Which sessions run, read from where they run: the Docker engine's containers or the
cluster's pods. GPU holdings and session quotas are derived from this on every check,
never only from the service's memory, so restarts and culling cannot leave them stale.

Spawners record each session's facts as ``binderlab.*`` labels (Docker) or annotations
(Kubernetes pods, whose label values cannot hold repository names).
"""

from dataclasses import dataclass

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from binderlab.contract import LABEL_USER, LIVE_STATES
from binderlab.platform.kubernetes import core_v1_api, pod_namespace
from binderlab.platform.rfc3339 import timestamp


@dataclass
class Session:
    labels: dict[str, str]  # binderlab.user, binderlab.repo-key, binderlab.gpus, ...
    image: str
    started: float | None  # POSIX time the session started, None if it has not yet


class SessionTracker(LoggingConfigurable):
    """Lists binderlab's live sessions. ``sessions()`` is called every few seconds."""

    async def sessions(self) -> list[Session]:
        raise NotImplementedError


class DockerSessionTracker(SessionTracker):
    """Sessions are containers with a ``binderlab.user`` label (DockerSpawner)."""

    def __init__(self, *, engine, **kwargs):
        super().__init__(**kwargs)
        self.engine = engine

    async def sessions(self) -> list[Session]:
        containers = await self.engine.call(self.engine.client.containers.list, all=True,
                                            filters={"label": LABEL_USER})
        found = []
        for c in containers:
            if c.status not in LIVE_STATES:
                continue
            started = timestamp(c.attrs.get("State", {}).get("StartedAt", ""))
            found.append(Session(dict(c.labels or {}), c.attrs["Config"]["Image"] or "",
                                 started if started and started > 0 else None))
        return found


class KubernetesSessionTracker(SessionTracker):
    """Sessions are pods of JupyterHub's single-user servers (KubeSpawner) whose
    annotations carry ``binderlab.user``."""

    namespace = Unicode(
        help="Namespace of the session pods. Default: $POD_NAMESPACE, else the service "
        "account's namespace, else 'default'.",
    ).tag(config=True)

    label_selector = Unicode(
        "component=singleuser-server",
        help="Selects the session pods (KubeSpawner's default label).",
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self):
        return pod_namespace()

    def __init__(self, core=None, **kwargs):
        super().__init__(**kwargs)
        self.core = core  # a kubernetes_asyncio CoreV1Api, made on first use

    async def api(self):
        if self.core is None:
            self.core = await core_v1_api()
        return self.core

    async def sessions(self) -> list[Session]:
        core = await self.api()
        pods = await core.list_namespaced_pod(self.namespace,
                                              label_selector=self.label_selector)
        found = []
        for pod in pods.items:
            annotations = pod.metadata.annotations or {}
            if LABEL_USER not in annotations or pod.status.phase not in ("Pending",
                                                                         "Running"):
                continue
            start = pod.status.start_time
            found.append(Session(
                {k: v for k, v in annotations.items() if k.startswith("binderlab.")},
                pod.spec.containers[0].image if pod.spec.containers else "",
                start.timestamp() if start else None))
        return found
