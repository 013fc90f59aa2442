"""The Kubernetes API client and namespace, for the cluster builder and the session tracker.

kubernetes_asyncio comes with the `kubernetes` extra (through jupyterhub-kubespawner); it
is imported on first use, so the one-box service does not need it.
"""

import os
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def pod_namespace() -> str:
    """The namespace binderlab runs in: $POD_NAMESPACE, else its service account's, else
    'default'."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip()
    except OSError:
        return "default"


async def core_v1_api():
    """A Kubernetes CoreV1Api: in-cluster configuration, else the kubeconfig."""
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    return client.CoreV1Api(client.ApiClient())
