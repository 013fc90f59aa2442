"""Run `binderlab up` / `binderlab serve` for tests and benchmarks, the way an operator does."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker.errors
import requests

from tests.harness import leftovers

HARNESS = Path(__file__).resolve().parent
DOCKER_CONFIG = HARNESS / "docker-config"
BASE_IMAGE = os.environ.get("BINDERLAB_TEST_BASE_IMAGE", "binderlab-test/base:latest")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One binderlab process with its own ports, state dir and image prefix."""

    def __init__(self, workdir: Path, git_host: str, command: str = "up",
                 extra_config: str = "", allow_loopback: bool = True,
                 env: dict[str, str] | None = None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.hub_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.hub_url = f"http://127.0.0.1:{self.hub_port}"
        self.image_prefix = leftovers.image_prefix()  # names the test run (leftover check)
        self.env = env or {}
        self.webhook_secret = uuid.uuid4().hex
        self.command = command
        self.config = self.workdir / "binderlab_config.py"
        self.config.write_text(f"""
c.BinderLab.port = {self.port}
c.BinderLab.state_dir = {str(self.workdir / 'state')!r}
c.BinderLab.image_prefix = {self.image_prefix!r}
c.BinderLab.allow_build_only = True
c.BinderLab.event_stream_linger = 2
c.BinderLab.github_webhook_secret = {self.webhook_secret!r}
# every test launches from 127.0.0.1: per-address rate limits are tested on their own
c.LaunchLimits.per_client = 0
c.LaunchLimits.per_client_with_page = 0
c.LaunchLimits.page_views_per_client = 0
c.Repo2DockerBuilder.max_builds_per_client = 0
# the shared service runs many tests' sessions; quotas are tested on their own
c.LaunchLimits.max_sessions = 0
{'c.BinderLab.blocked_networks = []' if allow_loopback else ''}
c.GitRepoProvider.allowed_protocols = ["https", "http"]
c.GitHubRepoProvider.host = {git_host!r}
c.Repo2DockerBuilder.repo2docker_config = {str(HARNESS / 'repo2docker_config.py')!r}
c.HubLauncher.hub_url = {self.hub_url!r}
c.UpApp.hub_internal_url = "http://127.0.0.1:{free_port()}"
c.UpApp.proxy_api_url = "http://127.0.0.1:{free_port()}"
# a test's service leaves nothing running when it stops
c.UpApp.keep_sessions_on_exit = False
{extra_config}
""")
        self.log_path = self.workdir / f"binderlab-{command}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def service_token(self) -> str:
        return (self.workdir / "state" / "hub" / "binderlab-service-token").read_text().strip()

    def start(self, timeout: float = 90) -> "Service":
        env = {**os.environ, "DOCKER_CONFIG": str(DOCKER_CONFIG), **self.env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "binderlab", self.command, "--config", str(self.config)],
            cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"binderlab {self.command} exited:\n{self.log()}")
            try:
                requests.get(self.url + "versions", timeout=2).raise_for_status()
                return self
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"binderlab {self.command} did not answer:\n{self.log()}")

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run `binderlab <args> --config <this service's config>`."""
        env = {**os.environ, "DOCKER_CONFIG": str(DOCKER_CONFIG)}
        return subprocess.run(
            [sys.executable, "-m", "binderlab", *args, "--config", str(self.config)],
            cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        hub_log = self.workdir / "state" / "jupyterhub.log"
        if hub_log.exists():
            text += "\n--- jupyterhub.log ---\n" + hub_log.read_text(errors="replace")[-8000:]
        return text[-20000:]

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (all label values)."""
        total = 0.0
        for line in requests.get(self.url + "metrics", timeout=10).text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def remove_prefix(client, prefix: str) -> None:
    """Remove the containers, volumes and images of one image prefix (a test's or bench's
    service).

    From the low-level lists (one call each): other runs on the same engine remove their
    containers meanwhile, which must not fail this clean-up."""
    for container in client.api.containers(all=True):
        if (container.get("Image") or "").startswith(prefix):
            try:
                client.api.remove_container(container["Id"], force=True)
            except docker.errors.NotFound:
                pass
    # logged-in users' volumes of that service (their spawner labels them with the prefix)
    for volume in client.api.volumes(
            filters={"label": f"binderlab.image-prefix={prefix}"}).get("Volumes") or []:
        try:
            client.api.remove_volume(volume["Name"], force=True)
        except docker.errors.NotFound:
            pass
    for image in client.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefix):
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.NotFound:
                    pass
