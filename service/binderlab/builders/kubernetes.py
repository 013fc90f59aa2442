"""Builds on Kubernetes: repo2docker in a build pod, pushing to a registry (the cluster tier).

Needs the `kubernetes` extra (kubernetes_asyncio, through jupyterhub-kubespawner).

``KubernetesBuilder`` keeps the ``Builder`` contract of the one-box builder:

- the build context is the one the pipeline prepared (environment files only for an
  env-keyed image, the whole commit for a tree-keyed one). The service serves it to the pod
  over HTTP from a small server of its own (``ContextServer``), at an unguessable URL that
  lives as long as the build; the pod never clones anything itself, so the SSRF guard and
  the fingerprint's view of the repository stay in one place;
- the pod runs ``repo2docker --push`` with the same repo2docker options the fingerprint is
  computed with (``r2d_args()``, same trait names as ``Repo2DockerBuilder``), against a
  Docker daemon (a shared Docker-in-Docker Service or a per-pod DinD sidecar) or a shared
  BuildKit daemon;
- one pod per image, named after the image: concurrent requests in one process share one
  ``Build`` (the base class), and a replica that finds the pod already created by another
  replica follows it instead of creating a second;
- ``image_ready`` asks the registry (``registry.Registry``: HTTP API v2, manifest HEAD, the
  registry credentials in $DOCKER_CONFIG) instead of a local engine: a registry holds a
  manifest only after every layer of a push arrived, so a failed or interrupted build
  leaves nothing it accepts.
"""

import asyncio
import hashlib
import os
import re
import secrets
import socket
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import tornado.web
from kubernetes_asyncio.client.exceptions import ApiException
from repo2docker import __version__ as repo2docker_version
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets import Dict, Enum, Float, Integer, List, Unicode, default

from binderlab.builders.repo2docker import (
    LABEL_KEY,
    Build,
    Builder,
    Repo2DockerOptions,
    log_message,
)
from binderlab.errors import LaunchError, RepositoryError
from binderlab.platform import metrics
from binderlab.platform.registry import Registry
from binderlab.sessions.trackers import core_v1_api, pod_namespace

# Run by the build pod's first init container, with the context URL and the target folder
# as arguments (never inside the program text). The "tar" filter refuses members that would
# land outside the target folder.
FETCH_CONTEXT = """import sys, tarfile, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=300) as response:
    with tarfile.open(fileobj=response, mode="r|gz") as archive:
        archive.extractall(sys.argv[2], filter="tar")
"""

class BuildPodError(Exception):
    """A build pod failed in a way the user is told about as is."""


class _ContextHandler(tornado.web.RequestHandler):
    def initialize(self, contexts: dict[str, Path]):
        self.contexts = contexts

    async def get(self, token: str):
        path = self.contexts.get(token)
        if path is None or not path.exists():
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "application/gzip")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                self.write(chunk)
                await self.flush()

    def log_exception(self, typ, value, tb):  # a 404 for a stale token is not news
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)


class ContextServer:
    """Serve build contexts to build pods, each at an unguessable URL, while it builds."""

    def __init__(self, ip: str, port: int):
        self.ip = ip
        self.port = port
        self.contexts: dict[str, Path] = {}
        self.server = None

    def start(self) -> None:
        if self.server is not None:
            return
        app = tornado.web.Application(
            [(r"/context/([A-Za-z0-9_-]+)\.tar\.gz", _ContextHandler,
              {"contexts": self.contexts})], log_function=lambda handler: None)
        sockets = bind_sockets(self.port, self.ip)
        self.port = sockets[0].getsockname()[1]  # the one the OS picked for port 0
        self.server = HTTPServer(app)
        self.server.add_sockets(sockets)

    async def add(self, context: Path, archive: Path) -> str:
        """Pack ``context`` into ``archive`` and return the token it is served under."""
        await asyncio.get_running_loop().run_in_executor(None, _pack, context, archive)
        token = secrets.token_urlsafe(32)
        self.contexts[token] = archive
        return token

    def remove(self, token: str) -> None:
        archive = self.contexts.pop(token, None)
        if archive is not None:
            archive.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _pack(context: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(context.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(context)), recursive=False)


class KubernetesBuilder(Repo2DockerOptions, Builder):
    """Build with repo2docker in a pod on the cluster and push the image to a registry."""

    # ---- the same repo2docker options as Repo2DockerBuilder (the fingerprint uses them) ----

    extra_args = List(
        Unicode(),
        help="""Extra command-line arguments for repo2docker in the build pod.

        Placed before the context path; the fingerprint is computed with the same options.""",
    ).tag(config=True)

    repo2docker_config = Unicode(
        "",
        help="""A repo2docker config file (`c.Repo2Docker.*`), passed as --config.

        The service reads it at this path (the fingerprint), and the build pod gets it at the
        same path from the ConfigMap repo2docker_config_map. Empty (default): none.""",
    ).tag(config=True)

    repo2docker_config_map = Unicode(
        "",
        help="""ConfigMap holding repo2docker_config (under the file's own name), mounted
        into build pods at that path. Required when repo2docker_config is set.""",
    ).tag(config=True)

    build_timeout = Float(
        3600,
        help="""Seconds a build pod may run (its activeDeadlineSeconds, which includes
        pulling the build image and fetching the context); default 3600. 0 means no limit.""",
    ).tag(config=True)


    # ---- where and how build pods run --------------------------------------------------

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
        "tcp://binderlab-dind:2375",
        help="""Address of the shared daemon ('docker': a DOCKER_HOST URL, default
        tcp://binderlab-dind:2375; 'buildkit': a buildkitd address such as
        tcp://buildkitd:1234). Unused for 'dind-sidecar'.""",
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

    start_timeout = Float(
        600,
        help="""Seconds a build pod may stay Pending (scheduling, pulling the build image,
        fetching the context) before the build fails (default 600).""",
    ).tag(config=True)

    poll_interval = Float(
        2, help="Seconds between status checks of a build pod that has not started."
    ).tag(config=True)

    # ---- the registry -------------------------------------------------------------------

    registry_secret = Unicode(
        "",
        help="""A kubernetes.io/dockerconfigjson Secret the build pods push with (mounted as
        their DOCKER_CONFIG). Empty (default): push without credentials.""",
    ).tag(config=True)

    insecure_registries = List(
        Unicode(),
        help="""Registry hosts (host:port) the service asks over plain HTTP instead of HTTPS,
        e.g. an in-cluster registry without TLS. Default: none.

        The service's own credentials for the registry come from $DOCKER_CONFIG/config.json
        (mount the registry_secret there), as for the one-box builder's push.""",
    ).tag(config=True)

    # ---- how build pods get their context -----------------------------------------------

    context_ip = Unicode(
        "0.0.0.0", help="Address the build-context server listens on (default all)."
    ).tag(config=True)

    context_port = Integer(
        8586, help="Port of the build-context server, which build pods fetch from (8586)."
    ).tag(config=True)

    context_url = Unicode(
        help="""Base URL build pods fetch contexts from. Default: http://<this pod's IP>:
        <context_port>, with the IP from $POD_IP (downward API) or this host's name. It must
        reach this very replica, not a Service in front of several.""",
    ).tag(config=True)

    @default("context_url")
    def _default_context_url(self):
        ip = os.environ.get("POD_IP") or socket.gethostbyname(socket.gethostname())
        return f"http://{ip}:{self.contexts.port}"  # the bound port, once started

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.core = None  # a kubernetes_asyncio CoreV1Api, created on first use
        self.contexts = ContextServer(self.context_ip, self.context_port)
        self.registry: Registry | None = None  # created in the event loop, on first use

    # ---- what the fingerprint shares with the builder --------------------------------

    def command(self, image: str, labels: dict[str, str]) -> list[str]:
        cmd = [*self.build_command, "--json-logs", "--no-run", "--push", "--image-name", image]
        for key, value in labels.items():
            cmd += ["--label", f"{key}={value}"]
        return [*cmd, *self.r2d_args(), "/context"]

    # ---- the build pod ------------------------------------------------------------------

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
        if self.daemon == "docker":
            env.append({"name": "DOCKER_HOST", "value": self.daemon_url})
        elif self.daemon == "buildkit":
            # a buildx builder for the shared buildkitd, written where the build container
            # looks for builders (BUILDX_CONFIG), then selected by name
            init_containers.append({
                "name": "buildx-builder",
                "image": self.build_image,
                "command": ["docker", "buildx", "create", "--name", "binderlab",
                            "--driver", "remote", self.daemon_url],
                "env": [{"name": "HOME", "value": "/tmp"},
                        {"name": "BUILDX_CONFIG", "value": "/tmp/buildx"}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
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

    # ---- the Kubernetes API -------------------------------------------------------------

    async def api(self):
        """The CoreV1Api (in-cluster config, else the kubeconfig), created on first use."""
        if self.core is None:
            self.core = await core_v1_api()
        return self.core

    # ---- Builder --------------------------------------------------------------------------

    async def image_ready(self, name: str, key: str) -> bool:
        if not name.endswith(key):
            return False
        if self.registry is None:
            self.registry = Registry(self.insecure_registries)
        return await self.registry.image_exists(name)

    async def run_build(self, build: Build, context: Path, labels: dict[str, str]) -> None:
        core = await self.api()
        name = self.pod_name(build.image)
        self.contexts.start()
        archive = context.with_name(context.name + ".context.tar.gz")
        token = await self.contexts.add(context, archive)
        pod = self.pod_manifest(build.image, labels,
                                f"{self.context_url.rstrip('/')}/context/{token}.tar.gz")
        created = finished = False
        try:
            try:
                created = await self._create_or_follow(core, pod)
            except (aiohttp.ClientError, OSError) as e:
                raise LaunchError(f"The Kubernetes API server is not reachable: {e}\n",
                                  503) from None
            except ApiException as e:
                if e.status in (401, 403):
                    raise LaunchError(f"binderlab may not create build pods in namespace "
                                      f"{self.namespace} ({e.status} {e.reason}); see its "
                                      "Role.\n", 500) from None
                raise
            if created:
                metrics.BUILDER_RUNS.inc()
                self.log.info("Building %s in pod %s/%s", build.image, self.namespace, name)
                await build.emit({"phase": "building", "message": f"Build pod {name} created\n"})
            else:
                await build.emit({"phase": "building", "message":
                                  f"Following build pod {name}, started by another replica\n"})
            deadline = self.start_timeout + (self.build_timeout or 1e9) + 60
            try:
                failure = await asyncio.wait_for(self._watch(core, build, name), deadline)
            except BuildPodError as e:
                failure = LaunchError(str(e), 503)  # the cluster could not run it
            except TimeoutError:
                failure = LaunchError(f"The build pod {name} did not finish in time and was "
                                      "stopped.\n", 504)
            finished = True
            if failure is not None:
                raise failure
        finally:
            self.contexts.remove(token)
            if finished or created:
                await self._delete(core, name)

    async def _create_or_follow(self, core, pod: dict) -> bool:
        """Create the pod; True if this call created it, False if one already runs."""
        name = pod["metadata"]["name"]
        for _ in range(5):
            try:
                await core.create_namespaced_pod(self.namespace, pod)
                return True
            except ApiException as e:
                if e.status != 409:
                    raise
            try:
                existing = await core.read_namespaced_pod(name, self.namespace)
            except ApiException as e:
                if e.status == 404:  # deleted in between: try creating again
                    continue
                raise
            image = (existing.metadata.annotations or {}).get("binderlab/image")
            if image != pod["metadata"]["annotations"]["binderlab/image"]:
                raise LaunchError(f"Pod {name} exists but builds {image!r}.\n", 500)
            if existing.metadata.deletion_timestamp is None and \
                    existing.status.phase not in ("Succeeded", "Failed"):
                return False
            # a finished pod from an earlier attempt (its image is not in the registry, or
            # we would not build): remove it and start again
            await self._delete(core, name)
            await self._gone(core, name)
        raise LaunchError(f"Could not create build pod {name}: it keeps reappearing.\n",
                          500)

    async def _delete(self, core, name: str) -> None:
        try:
            await core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                self.log.warning("Could not delete build pod %s: %s", name, e.reason)

    async def _gone(self, core, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await core.read_namespaced_pod(name, self.namespace)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            await asyncio.sleep(self.poll_interval)

    async def _read(self, core, name: str):
        """The pod, or None when it no longer exists."""
        try:
            return await core.read_namespaced_pod(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def _watch(self, core, build: Build, name: str) -> LaunchError | None:
        """Wait for the build container, stream its log as events, return the outcome."""
        pod = await self._wait_started(core, build, name)
        tail: list[str] = []
        emitted = 0
        while pod is not None and _container_state(pod, "build") is not None:
            seen = 0
            async for message in self._log_lines(core, name):
                seen += 1
                if seen <= emitted:  # a reconnect replays the log from its start
                    continue
                emitted = seen
                tail.append(message)
                if len(tail) > self.failure_log_lines:
                    del tail[0]
                await build.emit({"phase": "building", "message": message})
            pod = await self._read(core, name)
            if pod is None or _terminated(pod, "build") is not None:
                break
            await asyncio.sleep(self.poll_interval)  # the stream broke; the build goes on
        return self._outcome(pod, name, tail)

    async def _wait_started(self, core, build: Build, name: str):
        """Poll the pod until its build container runs or the pod ends; report why it waits."""
        started = time.monotonic()
        last = None
        while True:
            pod = await self._read(core, name)
            if pod is None:
                raise BuildPodError(f"The build pod {name} was deleted before it started.\n")
            if pod.status.phase in ("Succeeded", "Failed") or \
                    _container_state(pod, "build") is not None:
                return pod
            reason = _waiting_reason(pod)
            if reason != last:
                last = reason
                await build.emit({"phase": "building", "message": f"Build pod: {reason}\n"})
            if time.monotonic() - started > self.start_timeout:
                raise BuildPodError(f"The build pod did not start in {self.start_timeout:g} s "
                                    f"({reason}).\n")
            await asyncio.sleep(self.poll_interval)

    async def _log_lines(self, core, name: str) -> AsyncIterator[str]:
        """The build container's log, line by line, from its start, following it."""
        try:
            response = await core.read_namespaced_pod_log(
                name, self.namespace, container="build", follow=True, _preload_content=False)
        except ApiException as e:
            if e.status in (400, 404):  # not started yet / already gone
                return
            raise
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield log_message(line)
            if buffer:
                yield log_message(buffer)
        except (OSError, asyncio.IncompleteReadError, aiohttp.ClientError) as e:
            self.log.info("Log stream of %s broke (%s); reconnecting", name, e)
        finally:
            response.release()

    def _outcome(self, pod, name: str, tail: list[str]) -> LaunchError | None:
        """None when the build container succeeded, else whose failure it was: the build's
        steps (the repository's, 422) or the pod around them (ours)."""
        if pod is None:
            # deleted by another replica that saw it finish: the registry decides
            # (Builder._run checks image_ready)
            return None
        if pod.status.reason == "DeadlineExceeded":
            return RepositoryError(f"The build took longer than {self.build_timeout:g} s and "
                                   "was stopped.\n" + "".join(tail))
        terminated = _terminated(pod, "build")
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
                                   f"({stopped.reason or 'exit code ' + str(stopped.exit_code)})"
                                   ".\n", 500)
        return LaunchError(f"Build pod {name} ended without running the build "
                           f"({pod.status.phase}).\n", 500)


def _container_state(pod, name: str):
    """The running or terminated state of container ``name``, else None."""
    for status in pod.status.container_statuses or []:
        if status.name == name and status.state is not None:
            return status.state.running or status.state.terminated
    return None


def _terminated(pod, name: str):
    for status in pod.status.container_statuses or []:
        if status.name == name and status.state is not None:
            return status.state.terminated
    return None


def _waiting_reason(pod) -> str:
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

