"""Builds on Kubernetes: repo2docker in a build pod, pushing to a registry (the cluster tier).

Needs the `kubernetes` extra (kubernetes_asyncio, through jupyterhub-kubespawner).

``KubernetesBuilder`` keeps the ``Builder`` contract of the one-box builder:

- the build context is the one the pipeline prepared, served to the pod by the service's
  context server (builders/contextserver.py); the build pod clones nothing;
- the pod (builders/buildpod.py) runs ``repo2docker --push`` with the same repo2docker
  options the fingerprint is computed with (``r2d_args()``, the base class's traits);
- one pod per image, named after the image: concurrent requests in one process share one
  ``Build`` (the base class), and a replica that finds the pod already created by another
  replica follows it instead of creating a second;
- ``image_ready`` asks the registry (the base class with ``pushes``): a registry holds a
  manifest only after every layer of a push arrived, so a failed or interrupted build
  leaves nothing it accepts.
"""

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets import Float, Integer, Unicode, default

from binderlab.builders.base import Build, Builder, log_message
from binderlab.builders.buildpod import (
    BuildPodError,
    BuildPodSpec,
    container_state,
    pod_outcome,
    terminated_state,
    waiting_reason,
)
from binderlab.builders.contextserver import ContextServer
from binderlab.errors import LaunchError
from binderlab.platform import metrics
from binderlab.platform.kubernetes import core_v1_api


class KubernetesBuilder(BuildPodSpec, Builder):
    """Build with repo2docker in a pod on the cluster and push the image to a registry."""

    start_timeout = Float(
        600,
        help="""Seconds a build pod may stay Pending (scheduling, pulling the build image,
        fetching the context) before the build fails (default 600).""",
    ).tag(config=True)

    poll_interval = Float(
        2, help="Seconds between status checks of a build pod that has not started."
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

    content_lifetime = Float(
        900,
        help="""Seconds a session's content stays fetchable by its pod's init container
        (default 900: pulling a new image first can take minutes).""",
    ).tag(config=True)

    async def serve_content(self, archive: Path) -> str:
        """The URL a session pod's init container fetches the commit's files from.

        The session then never runs `git fetch` of a user-supplied URL inside the cluster,
        outside the SSRF guard and its pinned address: it gets the files this service
        fetched through the guard, from this pod, at an unguessable URL.
        """
        self.contexts.start()
        token = self.contexts.share(archive, self.content_lifetime)
        return f"{self.context_url.rstrip('/')}/content/{token}.tar"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.core = None  # a kubernetes_asyncio CoreV1Api, created on first use
        self.contexts = ContextServer(self.context_ip, self.context_port)

    # ---- the Kubernetes API -------------------------------------------------------------

    async def api(self):
        """The CoreV1Api (in-cluster config, else the kubeconfig), created on first use."""
        if self.core is None:
            self.core = await core_v1_api()
        return self.core

    # ---- Builder --------------------------------------------------------------------------

    pushes = True  # images live in the registry: image_ready asks it

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
        while pod is not None and container_state(pod, "build") is not None:
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
            if pod is None or terminated_state(pod, "build") is not None:
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
                    container_state(pod, "build") is not None:
                return pod
            reason = waiting_reason(pod)
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
        return pod_outcome(pod, name, tail, self.build_timeout)
