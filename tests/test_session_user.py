"""What a repository's Dockerfile cannot get (issue 12): `USER root` still runs the session as
the notebook user, and `ENV NVIDIA_VISIBLE_DEVICES=all` gives a CPU session no devices.
A real launch through `binderlab up` (tests/repos/root-user), checked from the engine's view
and from the session's own kernel."""

import json

import pytest

from tests.test_isolation import container_of, in_kernel, launch

pytestmark = pytest.mark.docker

SEEN = """
import json, os
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                  "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES")}))
"""


def test_user_root_and_all_gpus_in_the_image_are_not_honoured(service, git_server,
                                                               docker_client):
    repo = git_server.create("root-user")
    ready = launch(service, repo)
    container = container_of(docker_client, ready)
    image = docker_client.images.get(container.attrs["Config"]["Image"]).attrs["Config"]
    # the precondition: the image itself says root and all GPUs
    assert image["User"] == "root"
    assert "NVIDIA_VISIBLE_DEVICES=all" in image["Env"]
    assert container.attrs["Config"]["User"] == "1000:1000"
    assert not container.attrs["HostConfig"].get("DeviceRequests")
    seen = json.loads(in_kernel(ready, SEEN))
    assert seen == {"uid": 1000, "gid": 1000, "nvidia": "void"}, seen
