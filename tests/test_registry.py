"""Images in a registry (several hosts, or a cluster): build, push, drop the local copy,
launch — the session's image is pulled back. A real registry (Debian's docker-registry,
the CNCF distribution server) runs on 127.0.0.1."""

import shutil
import subprocess
import time

import pytest
import requests

from tests.harness import leftovers
from tests.harness.service import free_port
from tests.harness.sse import follow, phases

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One registry for the module: the base image's layers (600 MB) are pushed once, not
    once per test; every test pushes under its own image prefix, so none sees another's
    images."""
    tmp_path = tmp_path_factory.mktemp("registry")
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: apt-get install docker-registry "
                    "(tests/harness/setup.sh installs it)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"""version: 0.1
storage:
  filesystem:
    rootdirectory: {tmp_path / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(url + "/v2/", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_pushed_image_is_pulled_back_for_a_launch(make_service, git_server, registry,
                                                  docker_client):
    # a prefix naming this run, so the end-of-run check would find an image left behind
    prefix = f"{registry}/{leftovers.image_prefix()}"
    svc = make_service("up", extra_config=f"""
c.BinderLab.image_prefix = "{prefix}"
c.Repo2DockerBuilder.push = True
c.Repo2DockerBuilder.insecure_registries = ["{registry}"]
""")
    svc.image_prefix = prefix  # the fixture removes this service's images by it
    repo = git_server.create("requirements")
    built = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"build_only": "true"})
    assert built[-1]["phase"] == "ready", built[-1]
    image = built[-1]["imageName"]
    assert image.startswith(f"{prefix}env-")
    name = image.split("/", 1)[1]
    tags = requests.get(f"http://{registry}/v2/{name}/tags/list", timeout=10).json()
    assert tags["tags"] == ["latest"]

    # this host loses its copy (another host would never have had one)
    docker_client.images.remove(image, force=True)
    runs = svc.metric("binderlab_builder_runs_total")
    events = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")
    assert phases(events) == ["fetching", "built", "launching", "ready"], events[-1]
    assert svc.metric("binderlab_builder_runs_total") == runs  # found in the registry
    ready = events[-1]
    assert ready["image"] == image
    assert docker_client.images.get(image).labels["binderlab.kind"] == "env"
    contents = requests.get(ready["url"] + "api/contents/hello.ipynb", timeout=20,
                            headers={"Authorization": f"token {ready['token']}"})
    assert contents.status_code == 200


def test_image_missing_from_the_registry_is_built(make_service, git_server, registry):
    prefix = f"{registry}/{leftovers.image_prefix()}"  # as above
    svc = make_service("serve", extra_config=f"""
c.BinderLab.image_prefix = "{prefix}"
c.Repo2DockerBuilder.push = True
c.Repo2DockerBuilder.insecure_registries = ["{registry}"]
""")
    svc.image_prefix = prefix  # the fixture removes this service's images by it
    repo = git_server.create("dockerfile")
    events = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"build_only": "true"})
    assert "building" in phases(events) and events[-1]["phase"] == "ready"
