"""The hub API is reachable by users: only images binderlab built can ever be started."""

import time

import pytest
import requests

pytestmark = pytest.mark.docker


def hub_api(service, method, path, token=None, **kwargs):
    return requests.request(
        method, f"{service.hub_url}/hub/api{path}",
        headers={"Authorization": f"token {token or service.service_token}"},
        timeout=30, **kwargs,
    )


def spawn_outcome(service, user, options, token=None):
    """Ask the hub to start ``user``'s server with ``options``; return (ready, messages)."""
    response = hub_api(service, "POST", f"/users/{user}/server", token=token, json=options)
    messages = []
    if response.status_code >= 400:
        return False, [response.text]
    deadline = time.monotonic() + 60
    with requests.get(f"{service.hub_url}/hub/api/users/{user}/server/progress",
                      headers={"Authorization": f"token {service.service_token}"},
                      stream=True, timeout=60) as progress:
        for line in progress.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                messages.append(line)
            if '"failed": true' in line or '"ready": true' in line or time.monotonic() > deadline:
                break
    server = hub_api(service, "GET", f"/users/{user}").json()["servers"].get("", {})
    return bool(server.get("ready")), messages


@pytest.fixture
def user(service):
    name = f"guard-{time.monotonic_ns() % 10**9}"
    assert hub_api(service, "POST", f"/users/{name}").status_code == 201
    yield name
    hub_api(service, "DELETE", f"/users/{name}/server")
    for _ in range(20):
        if hub_api(service, "DELETE", f"/users/{name}").status_code in (204, 404):
            break
        time.sleep(0.5)


TOKEN = {"token": "a-launch-token-of-enough-length"}


def test_foreign_image_is_refused(service, user, docker_client):
    ready, messages = spawn_outcome(service, user, {"image": "binderlab-test/base:latest",
                                                    **TOKEN})
    assert not ready
    assert any("was not built by binderlab" in m for m in messages), messages
    assert not docker_client.containers.list(filters={"ancestor": "binderlab-test/base:latest"})


def test_image_with_prefix_but_no_labels_is_refused(service, user, docker_client):
    fake = f"{service.image_prefix}tree-{'0' * 40}"
    docker_client.images.get("binderlab-test/base:latest").tag(fake)
    try:
        ready, messages = spawn_outcome(service, user, {"image": fake, **TOKEN})
        assert not ready
        assert any("was not built by binderlab" in m for m in messages), messages
    finally:
        docker_client.images.remove(fake)


def test_session_container_holds_no_hub_credentials(service, git_server, docker_client):
    """Anonymous sessions run the repository's code: they get their launch token only, no
    JupyterHub token with which to reach the hub API as their user."""
    from tests.harness.sse import follow

    repo = git_server.create("dockerfile")
    ready = follow(f"{service.url}build/gh/{repo.gh_spec}/main")[-1]
    assert ready["phase"] == "ready", ready
    user = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    [container] = [c for c in docker_client.containers.list()
                   if c.attrs["Config"]["Image"] == ready["image"]
                   and f"--ServerApp.base_url=/user/{user}/" in c.attrs["Config"]["Cmd"]]
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert not [k for k in env if k.startswith(("JUPYTERHUB_", "JPY_"))]
    assert env["JUPYTER_TOKEN"] == ready["token"]
    assert container.attrs["Config"]["User"] != "root"


def test_launch_without_a_token_is_refused(service, user, git_server):
    from tests.harness.sse import follow

    repo = git_server.create("dockerfile")
    built = follow(f"{service.url}build/gh/{repo.gh_spec}/main",
                   params={"build_only": "true"})[-1]
    ready, messages = spawn_outcome(service, user, {"image": built["imageName"]})
    assert not ready
    assert any("launch token is required" in m for m in messages), messages
