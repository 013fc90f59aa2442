"""The README's set-up path as a new user runs it: `bash deploy/docker/setup.sh`, then
`.venv/bin/binderlab build <dir>`, with no test DOCKER_CONFIG and no test plugin.

On Debian 12 (docker.io 20.10, no buildx package) setup.sh installs binderlab's BuildKit
bridge as a system CLI plugin; the build then runs through the `docker` on PATH (here a
newer client, the one that would fork without end if the bridge called it). Other
developers' runs use the harness's DOCKER_CONFIG, whose plugin directory comes first, so
removing and reinstalling the system plugin here does not disturb them.
"""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.harness.service import BASE_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TOP = Path(__file__).resolve().parents[1]
SYSTEM_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-buildx")
BRIDGE = TOP / "deploy" / "docker" / "docker-buildx-bridge"


def user_env(home: Path) -> dict[str, str]:
    """A new user's environment: their own HOME, no DOCKER_CONFIG, no test settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DOCKER_CONFIG", "BINDERLAB_", "PYTEST"))}
    # the leftover check's marker stays: whatever this starts must be found if left
    env.update(HOME=str(home), BINDERLAB_MARK_TEST_RUN=os.environ["BINDERLAB_MARK_TEST_RUN"])
    # setup.sh reinstalls the venv when the install arguments differ: keep this checkout's
    # (the harness's editable test install), so the test changes nothing but the plugin
    stamp = TOP / ".venv" / ".binderlab-installed"
    if stamp.exists():
        env["BINDERLAB_PIP_ARGS"] = stamp.read_text().strip()
    return env


def buildx_version(env) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "buildx", "version"], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def fresh_user(tmp_path, docker_client):
    """A user's HOME, with binderlab's own system plugin removed first (never a real
    buildx), so setup.sh must provide a builder itself."""
    home = tmp_path / "home"
    home.mkdir()
    if SYSTEM_PLUGIN.exists() and "binderlab's BuildKit bridge" in SYSTEM_PLUGIN.read_text(
            errors="replace"):
        SYSTEM_PLUGIN.unlink()
    env = user_env(home)
    yield home, env
    # a failed setup.sh must not leave this machine without the bridge it had
    if not SYSTEM_PLUGIN.exists() and buildx_version(env).returncode != 0:
        SYSTEM_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BRIDGE, SYSTEM_PLUGIN)


def test_setup_then_build_from_the_local_base_image(fresh_user, tmp_path, docker_client):
    home, env = fresh_user
    setup = subprocess.run(["bash", "deploy/docker/setup.sh"], cwd=TOP, env=env,
                           capture_output=True, text=True, timeout=900)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = uuid.uuid4().hex
    (repo / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        # repo2docker's own Dockerfiles need BuildKit for this; so may a user's
        "COPY --chmod=0644 hello.txt /srv/hello.txt\n"
        "USER 1000\n")
    (repo / "hello.txt").write_text(marker + "\n")
    prefix = f"binderlabtest{os.environ['BINDERLAB_MARK_TEST_RUN']}setup/"
    work = tmp_path / "work"
    work.mkdir()
    (work / "binderlab_config.py").write_text(f"c.BinderLab.image_prefix = {prefix!r}\n")
    build = subprocess.run([str(TOP / ".venv" / "bin" / "binderlab"), "build", str(repo)],
                           cwd=work, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert build.returncode == 0, build.stderr[-3000:]
        image = build.stdout.strip().splitlines()[-1]
        assert image.startswith(prefix)
        out = docker_client.containers.run(image, ["cat", "/srv/hello.txt"], remove=True)
        assert out.decode().strip() == marker
        # and the path it took: a packaged buildx, or on this machine's kind the bridge,
        # calling the client that can build (not the newer one on PATH)
        assert "docker buildx builds" in setup.stdout
        version = buildx_version(env)
        assert version.returncode == 0, version.stderr
        if "binderlab BuildKit bridge" in version.stdout:
            assert SYSTEM_PLUGIN.exists()
            assert "docker build (BuildKit) of /usr/bin/docker" in version.stdout
    finally:
        for img in docker_client.images.list():
            for tag in img.tags:
                if tag.startswith(prefix):
                    docker_client.images.remove(tag, force=True)


@pytest.mark.parametrize("case", ["newer client", "recursion"])
def test_the_bridge_refuses_what_would_fork_without_end(case, tmp_path):
    """A client of Docker 23+ routes `docker build` back into buildx: the bridge refuses it
    (and its recursion guard stops a second level) instead of forking until the machine
    runs out of processes."""
    newer = shutil.which("docker")
    if case == "newer client":
        version = subprocess.run([newer, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        if not version or int(version.split(".")[0]) < 23:
            pytest.skip(f"the docker on PATH is {version}, not a newer client")
        env = {**os.environ, "BINDERLAB_BUILDKIT_CLIENT": newer}
    else:
        env = {**os.environ, "BINDERLAB_BUILDX_BRIDGE_ACTIVE": "1"}
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for args in (["version"], ["build", str(tmp_path)]):
        run = subprocess.run([str(BRIDGE), "buildx", *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode != 0
        assert "binderlab BuildKit bridge" in run.stderr
        assert ("Docker 23" in run.stderr or "18.09 to 22.x" in run.stderr), run.stderr
