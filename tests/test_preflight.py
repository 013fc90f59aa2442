"""A host that cannot build says so at once: `binderlab up` and `binderlab build` check
first (buildx, the engine, the base image), and /health reports the builder as its own check.

"No buildx" is produced for real: either no `docker` at all on PATH, or binderlab's bridge
asked to drive a client it cannot build with (a Docker 23+ client), which makes
`docker buildx version` fail exactly as on a host without a working buildx.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.harness.service import BASE_IMAGE, DOCKER_CONFIG, HARNESS

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def newer_client() -> str:
    docker = shutil.which("docker")
    version = subprocess.run([docker, "version", "--format", "{{.Client.Version}}"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    if not version or int(version.split(".")[0]) < 23:
        pytest.skip(f"the docker on PATH is {version}: no newer client to break buildx with")
    return docker


def binderlab(args, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "binderlab", *args], cwd=cwd,
                          env={**os.environ, "DOCKER_CONFIG": str(DOCKER_CONFIG), **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "binderlab_config.py").write_text(
        f"c.BinderLab.state_dir = {str(tmp_path / 'state')!r}\n"
        f"c.Repo2DockerBuilder.repo2docker_config = "
        f"{str(HARNESS / 'repo2docker_config.py')!r}\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    return tmp_path


def assert_clear_failure(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "This host cannot build images" in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


@pytest.mark.parametrize("command", ["build", "up"])
def test_without_buildx_up_and_build_stop_before_anything(command, workdir):
    env = {"BINDERLAB_BUILDKIT_CLIENT": newer_client()}
    args = ["build", "repo"] if command == "build" else ["up"]
    out = binderlab(args, workdir, env)
    assert_clear_failure(out, "docker buildx version", "deploy/docker/setup.sh")
    # nothing started: no hub, no build
    assert not (workdir / "state" / "jupyterhub.log").exists()
    assert not list((workdir / "state" / "build").glob("*"))


def test_without_a_docker_client_build_says_what_to_install(workdir):
    out = binderlab(["build", "repo"], workdir, {"PATH": "/nonexistent"})
    assert_clear_failure(out, "No `docker` command on PATH", "docker.io")


@pytest.mark.parametrize("command", ["build", "up"])
def test_without_an_engine_up_and_build_say_so(command, workdir):
    out = binderlab(["build", "repo"] if command == "build" else ["up"], workdir,
                    {"DOCKER_HOST": f"unix://{workdir}/no-engine.sock"})
    assert_clear_failure(out, "The Docker engine does not answer", "DOCKER_HOST")


def test_a_missing_base_image_is_a_warning_and_a_dockerfile_build_goes_on(workdir,
                                                                          docker_client):
    config = workdir / "r2d.py"
    config.write_text(f"exec(open({str(HARNESS / 'repo2docker_config.py')!r}).read())\n"
                      "c.Repo2Docker.base_image = 'binderlabtest-missing/base:none'\n")
    prefix = f"binderlabtest{os.environ['BINDERLAB_MARK_TEST_RUN']}pre/"
    with open(workdir / "binderlab_config.py", "a") as f:
        f.write(f"c.Repo2DockerBuilder.repo2docker_config = {str(config)!r}\n"
                f"c.BinderLab.image_prefix = {prefix!r}\n")
    out = binderlab(["build", "repo"], workdir, {}, timeout=600)
    try:
        assert out.returncode == 0, out.stderr
        assert "binderlabtest-missing/base:none is not on this engine" in out.stderr
        assert out.stdout.strip().startswith(prefix)
    finally:
        for image in docker_client.images.list():
            for tag in image.tags:
                if tag.startswith(prefix):
                    docker_client.images.remove(tag, force=True)


def test_health_reports_the_builder_and_names_no_paths(service):
    body = requests.get(service.url + "health", timeout=30).json()
    checks = {c["service"]: c for c in body["checks"]}
    assert checks["builder"] == {"service": "builder", "ok": True,
                                 "checks": {"buildx": True, "engine": True,
                                            "base image": True}}
    text = json.dumps(body)
    assert str(service.workdir) not in text and "/state" not in text
    assert service.hub_url not in text and "127.0.0.1" not in text


def test_a_host_that_cannot_build_is_not_healthy(make_service):
    svc = make_service("serve", env={"BINDERLAB_BUILDKIT_CLIENT": newer_client()},
                       extra_config="c.BinderLab.health_cache_seconds = 0\n")
    health = requests.get(svc.url + "health", timeout=30)
    assert health.status_code == 503
    builder = next(c for c in health.json()["checks"] if c["service"] == "builder")
    assert builder["ok"] is False and builder["checks"]["buildx"] is False
    assert "buildx" in builder["error"]
    assert "/usr" not in health.text  # the bridge's message names a path: kept in the log


class CountingHub:
    """Answers JupyterHub's `GET /hub/api/` and counts how often it was asked."""

    def __init__(self):
        counter = self
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0].rstrip("/") == "/hub/api":  # the health call
                    counter.calls += 1
                body = b'{"version": "5.0.0"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("cache_seconds, expected_calls", [(3600, 1), (0, 4)])
def test_health_answers_are_cached(cache_seconds, expected_calls, make_service):
    hub = CountingHub()
    try:
        svc = make_service("serve", extra_config=(
            f"c.HubLauncher.hub_url = {hub.url!r}\nc.HubLauncher.api_token = 'x'\n"
            f"c.BinderLab.health_cache_seconds = {cache_seconds}\n"))
        for _ in range(4):
            health = requests.get(svc.url + "health", timeout=30)
            assert health.status_code == 200, health.text
        assert hub.calls == expected_calls
    finally:
        hub.close()
