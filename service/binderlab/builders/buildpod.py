"""The build pod: what runs repo2docker on the cluster, and how to read its outcome.

The pod fetches its context from the service's context server (builders/contextserver.py),
then runs ``repo2docker --push`` with the options the fingerprint is computed with
(``Builder.r2d_args()``) against a Docker daemon (a shared Docker-in-Docker Service or a
per-pod DinD sidecar) or a shared BuildKit daemon. One pod per image, named after it, so
every replica of the service finds the pod of an image by its name.
"""

import hashlib
import os
import re

from repo2docker import __version__ as repo2docker_version
from traitlets import Dict, Enum, List, Unicode, default
from traitlets.config import Configurable

from binderlab.contract import LABEL_KEY
from binderlab.errors import LaunchError, RepositoryError
from binderlab.platform.kubernetes import pod_namespace

# Run by the build pod's first init container, with the context URL and the target folder
# as arguments (never inside the program text). The "tar" filter refuses members that would
# land outside the target folder.
FETCH_CONTEXT = """import sys, tarfile, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=300) as response:
    with tarfile.open(fileobj=response, mode="r|gz") as archive:
        archive.extractall(sys.argv[2], filter="tar")
"""


# where the build pod's client finds the shared daemon's TLS client certificate
DAEMON_CERTS = "/etc/binderlab/daemon-tls"


class BuildPodError(Exception):
    """A build pod failed in a way the user is told about as is."""


class BuildPodSpec(Configurable):
    """The build pod's options and manifest (mixed into KubernetesBuilder, whose
    ``c.KubernetesBuilder.*`` settings they are)."""

    repo2docker_config_map = Unicode(
        "",
        help="""ConfigMap holding repo2docker_config (under the file's own name), mounted
        into build pods at that path. Required when repo2docker_config is set.""",
    ).tag(config=True)

    namespace = Unicode(
        help="""Namespace of the build pods. Default: $POD_NAMESPACE, else the namespace of
        the service account binderlab runs as, else 'default'.""",
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self):
        return pod_namespace()

    build_image = Unicode(
        help="""Image of the build pods: repo2docker, the docker CLI and its buildx plugin.

        Its repo2docker must be the version binderlab computes fingerprints with, or an image
        may differ from what its key says: use binderlab's own image (deploy/kubernetes/image)
        or the repo2docker image of that version. Default:
        quay.io/jupyterhub/repo2docker:<binderlab's repo2docker version>.""",
    ).tag(config=True)

    @default("build_image")
    def _default_build_image(self):
        return f"quay.io/jupyterhub/repo2docker:{repo2docker_version}"

    build_command = List(
        Unicode(), default_value=["repo2docker"],
        help="How the build image runs repo2docker (default: ['repo2docker']).",
    ).tag(config=True)

    image_pull_secrets = List(
        Unicode(),
        help="Secrets (names) the build pods pull their images with, if the registry of "
        "build_image or dind_image is private. Default: none.",
    ).tag(config=True)

    daemon = Enum(
        ["docker", "buildkit", "dind-sidecar"],
        default_value="docker",
        help="""What builds the image for repo2docker in the pod:

        'docker' (default): a shared Docker daemon at daemon_url (the Docker-in-Docker
        Service of deploy/kubernetes; layers are cached between builds);
        'buildkit': a shared BuildKit daemon (buildkitd) at daemon_url, used through a buildx
        'remote' builder;
        'dind-sidecar': a Docker-in-Docker daemon in each build pod (a privileged native
        sidecar, Kubernetes 1.29+; no cache between builds).""",
    ).tag(config=True)

    daemon_url = Unicode(
        "tcp://binderlab-dind:2376",
        help="""Address of the shared daemon ('docker': a DOCKER_HOST URL, default
        tcp://binderlab-dind:2376; 'buildkit': a buildkitd address such as
        tcp://buildkitd:1234). Unused for 'dind-sidecar'.""",
    ).tag(config=True)

    daemon_tls_secret = Unicode(
        "binderlab-dind-tls",
        help="""Secret with the TLS client certificate for the shared daemon (keys ca.pem,
        cert.pem, key.pem; deploy/kubernetes/dind-certs.sh makes it). Default
        'binderlab-dind-tls'.

        Build steps (a repository's RUN and postBuild) run as containers of that daemon,
        where the daemon's own address is one hop away and NetworkPolicy does not apply:
        without client certificates any repository could drive the daemon, start a
        privileged container and own the node. The certificate is mounted into the build
        pod's client only, never into build steps. Used for tcp:// daemon URLs (a unix
        socket needs none). Empty: no TLS (only for a daemon no build step can reach).
        Unused for 'dind-sidecar' (its daemon listens on the pod's loopback, which build
        steps cannot reach).""",
    ).tag(config=True)

    dind_image = Unicode(
        "docker.io/library/docker:27-dind",
        help="Docker-in-Docker image of the 'dind-sidecar' daemon.",
    ).tag(config=True)

    build_resources = Dict(
        default_value={"requests": {"cpu": "100m", "memory": "256Mi"},
                       "limits": {"cpu": "1", "memory": "1Gi"}},
        help="""Resources of the repo2docker container (a Kubernetes ResourceRequirements).

        With a shared daemon the image is built in the daemon, so this bounds the client
        only; the daemon's own Deployment sets the build's limits.""",
    ).tag(config=True)

    dind_resources = Dict(
        default_value={"requests": {"cpu": "1", "memory": "2Gi"},
                       "limits": {"cpu": "4", "memory": "8Gi"}},
        help="Resources of the per-pod daemon ('dind-sidecar'): the build's own limits.",
    ).tag(config=True)

    security_context = Dict(
        default_value={"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                       "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}},
        help="""securityContext of the repo2docker and context-fetching containers.

        The default runs them as UID 1000 with no privileges and a read-only root file
        system (/tmp and the context are emptyDir volumes). Only the 'dind-sidecar' daemon is
        privileged; prefer a shared daemon.""",
    ).tag(config=True)

    node_selector = Dict(
        Unicode(), help="nodeSelector of build pods, e.g. a build node pool. Default: none."
    ).tag(config=True)

    tolerations = List(
        Dict(), help="Tolerations of build pods (Kubernetes Toleration objects). Default: none."
    ).tag(config=True)

    pod_name_prefix = Unicode(
        "binderlab-build-",
        help="Build pods are named <prefix><last part of the image name>, so every "
        "replica of the service finds the pod of an image by its name.",
    ).tag(config=True)

    # ---- the registry -------------------------------------------------------------------

    registry_secret = Unicode(
        "",
        help="""A kubernetes.io/dockerconfigjson Secret the build pods push with (mounted as
        their DOCKER_CONFIG). Empty (default): push without credentials.""",
    ).tag(config=True)

    def command(self, image: str, labels: dict[str, str]) -> list[str]:
        cmd = [*self.build_command, "--json-logs", "--no-run", "--push", "--image-name", image]
        for key, value in labels.items():
            cmd += ["--label", f"{key}={value}"]
        return [*cmd, *self.r2d_args(), "/context"]

    def pod_name(self, image: str) -> str:
        last = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        name = re.sub(r"[^a-z0-9-]+", "-", (self.pod_name_prefix + last).lower()).strip("-")
        if len(name) > 253 or name != self.pod_name_prefix + last:
            digest = hashlib.sha256(image.encode()).hexdigest()[:16]
            name = f"{name[:200].rstrip('-')}-{digest}"
        return name

    def pod_manifest(self, image: str, labels: dict[str, str], context_url: str) -> dict:
        """The build pod for ``image`` (plain JSON, as the API server receives it)."""
        name = self.pod_name(image)
        volumes = [{"name": "context", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
        env = [{"name": "HOME", "value": "/tmp"},
               {"name": "BUILDX_CONFIG", "value": "/tmp/buildx"}]
        mounts = [{"name": "context", "mountPath": "/context"},
                  {"name": "tmp", "mountPath": "/tmp"}]
        if self.registry_secret:
            volumes.append({"name": "registry", "secret": {
                "secretName": self.registry_secret,
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}})
            mounts.append({"name": "registry", "mountPath": "/docker-config", "readOnly": True})
            env.append({"name": "DOCKER_CONFIG", "value": "/docker-config"})
        if self.repo2docker_config:
            if not self.repo2docker_config_map:
                raise ValueError("c.KubernetesBuilder.repo2docker_config_map must name the "
                                 "ConfigMap that holds repo2docker_config.")
            file_name = os.path.basename(self.repo2docker_config)
            volumes.append({"name": "repo2docker-config",
                            "configMap": {"name": self.repo2docker_config_map}})
            mounts.append({"name": "repo2docker-config", "mountPath": self.repo2docker_config,
                           "subPath": file_name, "readOnly": True})

        init_containers = [{
            "name": "fetch-context",
            "image": self.build_image,
            "command": ["python3", "-c", FETCH_CONTEXT, context_url, "/context"],
            "volumeMounts": [{"name": "context", "mountPath": "/context"}],
            "securityContext": self.security_context,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"cpu": "500m", "memory": "256Mi"}},
        }]
        # TLS is for a daemon on the network; a unix socket is nothing a build step reaches
        tls = self.daemon in ("docker", "buildkit") and bool(self.daemon_tls_secret) \
            and self.daemon_url.startswith("tcp://")
        if tls:
            volumes.append({"name": "daemon-tls", "secret": {
                "secretName": self.daemon_tls_secret, "defaultMode": 0o400,
                "items": [{"key": k, "path": k} for k in ("ca.pem", "cert.pem", "key.pem")]}})
            mounts.append({"name": "daemon-tls", "mountPath": DAEMON_CERTS, "readOnly": True})
        elif self.daemon != "dind-sidecar" and self.daemon_url.startswith("tcp://"):
            self.log.warning("c.KubernetesBuilder.daemon_tls_secret is empty: build steps "
                             "that can reach %s can drive it", self.daemon_url)
        if self.daemon == "docker":
            env.append({"name": "DOCKER_HOST", "value": self.daemon_url})
            if tls:
                env += [{"name": "DOCKER_TLS_VERIFY", "value": "1"},
                        {"name": "DOCKER_CERT_PATH", "value": DAEMON_CERTS}]
        elif self.daemon == "buildkit":
            # a buildx builder for the shared buildkitd, written where the build container
            # looks for builders (BUILDX_CONFIG), then selected by name; mTLS as for docker
            buildkit_tls = ["--driver-opt", ",".join(
                f"{opt}={DAEMON_CERTS}/{name}" for opt, name in
                (("cacert", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem")))] \
                if tls else []
            init_containers.append({
                "name": "buildx-builder",
                "image": self.build_image,
                "command": ["docker", "buildx", "create", "--name", "binderlab",
                            "--driver", "remote", *buildkit_tls, self.daemon_url],
                "env": [{"name": "HOME", "value": "/tmp"},
                        {"name": "BUILDX_CONFIG", "value": "/tmp/buildx"}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                 *[m for m in mounts if m["name"] == "daemon-tls"]],
                "securityContext": self.security_context,
                "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}},
            })
            env.append({"name": "BUILDX_BUILDER", "value": "binderlab"})
        else:  # dind-sidecar: a native sidecar, stopped when the build container exits
            volumes.append({"name": "dind", "emptyDir": {}})
            init_containers.append({
                "name": "dind",
                "image": self.dind_image,
                "restartPolicy": "Always",
                "args": ["dockerd", "--host=tcp://127.0.0.1:2375"],
                "env": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "dind", "mountPath": "/var/lib/docker"}],
                "resources": self.dind_resources,
                "startupProbe": {
                    "exec": {"command": ["docker", "-H", "tcp://127.0.0.1:2375", "info"]},
                    "periodSeconds": 2, "failureThreshold": 60,
                },
            })
            env.append({"name": "DOCKER_HOST", "value": "tcp://127.0.0.1:2375"})

        spec = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,  # a build needs no Kubernetes API
            "enableServiceLinks": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": init_containers,
            "containers": [{
                "name": "build",
                "image": self.build_image,
                "command": self.command(image, labels),
                "env": env,
                "volumeMounts": mounts,
                "securityContext": self.security_context,
                "resources": self.build_resources,
            }],
            "volumes": volumes,
        }
        if self.build_timeout:
            spec["activeDeadlineSeconds"] = int(self.build_timeout)
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = list(self.tolerations)
        if self.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in self.image_pull_secrets]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/name": "binderlab",
                           "app.kubernetes.io/component": "build"},
                "annotations": {"binderlab/image": image,
                                "binderlab/key": labels.get(LABEL_KEY, "")},
            },
            "spec": spec,
        }


def pod_outcome(pod, name: str, tail: list[str], build_timeout: float) -> LaunchError | None:
    """None when the build pod's build succeeded, else whose failure it was: the build's
    steps (the repository's, RepositoryError 422) or the pod around them (ours, 5xx)."""
    if pod is None:
        # deleted by another replica that saw it finish: the registry decides
        # (Builder._run checks image_ready)
        return None
    if pod.status.reason == "DeadlineExceeded":
        return RepositoryError(f"The build took longer than {build_timeout:g} s and was "
                               "stopped.\n" + "".join(tail))
    terminated = terminated_state(pod, "build")
    if terminated is not None:
        # (a sidecar daemon stopped after the build exits non-zero: only the build counts)
        if terminated.exit_code == 0:
            return None
        message = (f"repo2docker failed (exit code {terminated.exit_code}"
                   f"{', ' + terminated.reason if terminated.reason else ''}). "
                   "Last lines of its log:\n" + "".join(tail))
        if terminated.reason == "OOMKilled" or terminated.exit_code > 128:
            return LaunchError(message, 500)  # stopped from outside the build's steps
        return RepositoryError(message)
    for status in pod.status.init_container_statuses or []:
        stopped = status.state.terminated if status.state else None
        if stopped is not None and stopped.exit_code:
            return LaunchError(f"The build pod's {status.name} step failed "
                               f"({stopped.reason or 'exit code ' + str(stopped.exit_code)}).\n",
                               500)
    return LaunchError(f"Build pod {name} ended without running the build "
                       f"({pod.status.phase}).\n", 500)


def container_state(pod, name: str):
    """The running or terminated state of container ``name``, else None."""
    for status in pod.status.container_statuses or []:
        if status.name == name and status.state is not None:
            return status.state.running or status.state.terminated
    return None


def terminated_state(pod, name: str):
    for status in pod.status.container_statuses or []:
        if status.name == name and status.state is not None:
            return status.state.terminated
    return None


def waiting_reason(pod) -> str:
    """One line on why a pod has not started its build container."""
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"not scheduled: {condition.reason} {condition.message or ''}".strip()
    for status in [*(pod.status.init_container_statuses or []),
                   *(pod.status.container_statuses or [])]:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason not in (None, "PodInitializing"):
            return f"{status.name}: {waiting.reason} {waiting.message or ''}".strip()
        if status.state is not None and status.state.running and not status.ready:
            return f"{status.name} running"
    return pod.status.phase or "Pending"
