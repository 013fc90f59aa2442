"""The reaper's choice on real containers of this engine: a container still "created"
because its launch is copying a large repository's content is left alone; a stopped or
abandoned one is removed in time."""

import time

import pytest

from binderlab.platform.rfc3339 import timestamp
from binderlab.sessions.reaping import should_reap
from tests.harness import leftovers
from tests.harness.service import BASE_IMAGE

pytestmark = pytest.mark.docker
PREFIX = BASE_IMAGE.split("/")[0] + "/"


@pytest.fixture
def created_container(docker_client):
    user = leftovers.name("reap")  # found by the end-of-run check if it were left behind
    container = docker_client.containers.create(
        BASE_IMAGE, ["true"], name=user, labels={"binderlab.user": user})
    yield container, user
    container.remove(force=True)


def test_created_container_of_a_launch_in_progress_is_kept(created_container):
    container, user = created_container
    container.reload()
    assert container.attrs["State"]["Status"] == "created"
    created = timestamp(container.attrs["Created"])
    later = created + 1000  # far past any grace: only the launch in progress protects it
    assert not should_reap(container.attrs, later, PREFIX, starting={user})
    assert should_reap(container.attrs, later, PREFIX, starting=set())
    # within the grace (the launcher's start timeout and a margin) it is kept either way
    assert not should_reap(container.attrs, created + 300, PREFIX, starting=set(),
                           created_grace=360)
    assert not should_reap(container.attrs, later, "someone-else/", starting=set())


def test_stopped_container_is_reaped_after_its_grace(created_container):
    container, user = created_container
    container.start()
    container.wait(timeout=60)
    container.reload()
    assert container.attrs["State"]["Status"] == "exited"
    finished = timestamp(container.attrs["State"]["FinishedAt"])
    assert not should_reap(container.attrs, finished + 60, PREFIX, starting={user})
    assert should_reap(container.attrs, max(finished, time.time()) + 121, PREFIX,
                       starting={user})  # a stopped one is not protected by a launch
