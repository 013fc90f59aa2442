"""Reading running sessions on the cluster tier: the pods KubeSpawner creates carry
binderlab's facts as annotations, and the tracker (and so GPU holdings and quotas) reads
them back. The Kubernetes API is a thin stand-in at the CoreV1Api boundary returning the
pod that KubeSpawner's own manifest code generated (no cluster here)."""

from datetime import UTC, datetime

from kubernetes_asyncio.client import ApiClient, V1PodList, V1PodStatus
from traitlets.config import Config

from binderlab.contract import sign_gpus
from binderlab.gpus.allocator import GPUAllocator, GPUDevice
from binderlab.sessions.trackers import KubernetesSessionTracker
from tests.test_kubespawner import OPTIONS, kubeconfig, manifest  # noqa: F401 (fixture)


class CoreV1:
    def __init__(self, pods):
        self.pods, self.calls = pods, []

    async def list_namespaced_pod(self, namespace, label_selector):
        self.calls.append((namespace, label_selector))
        return V1PodList(items=self.pods)


async def gpu_pod(phase="Running"):
    options = {**OPTIONS, "gpus": ["1"], "repo_key": "gh/o/r", "client": "203.0.113.9"}
    options["gpu_signature"] = sign_gpus("k", "mock@name", ["1"])
    config = Config()
    config.BinderLabKubeSpawner.gpu_signing_key = "k"
    _, data = await manifest(options, config)
    pod = ApiClient()._ApiClient__deserialize(data, "V1Pod")
    pod.status = V1PodStatus(phase=phase, start_time=datetime(2026, 1, 1, tzinfo=UTC))
    return pod


async def test_session_facts_round_trip_through_pod_annotations():
    pod = await gpu_pod()
    assert pod.metadata.annotations["binderlab.gpus"] == "1"
    core = CoreV1([pod, await gpu_pod("Succeeded")])
    tracker = KubernetesSessionTracker(core=core, namespace="binder")
    [session] = await tracker.sessions()
    assert core.calls == [("binder", "component=singleuser-server")]
    assert session.labels["binderlab.user"] == "mock@name"
    assert session.labels["binderlab.repo-key"] == "gh/o/r"
    assert session.image == OPTIONS["image"]
    assert session.started == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


async def test_gpu_allocator_sees_cluster_holdings():
    tracker = KubernetesSessionTracker(core=CoreV1([await gpu_pod()]), namespace="binder")
    allocator = GPUAllocator(devices=[GPUDevice("0", "a"), GPUDevice("1", "b")],
                             tracker=tracker)
    await allocator.reconcile()
    assert allocator.free() == ["0"]
    assert allocator.status()["in_use"] == 1
