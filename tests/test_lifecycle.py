"""Sessions' lifecycle in the service (clean-up after stops, the reaper) and the app's
shutdown, against the real Docker engine."""

import asyncio
import logging
import sqlite3
import time
import uuid

import pytest

from binderlab.app import BinderLab
from binderlab.contract import LABEL_USER
from binderlab.platform.docker import DockerEngine
from binderlab.sessions.lifecycle import REAP_AFTER_SECONDS, SessionLifecycle
from binderlab.sessions.trackers import DockerSessionTracker
from tests.harness.service import BASE_IMAGE

log = logging.getLogger("test")


@pytest.fixture
def prefix_image(docker_client):
    """The base image tagged under a prefix of this test's own, removed afterwards."""
    prefix = f"binderlabtest{uuid.uuid4().hex[:8]}/"
    image = f"{prefix}env-{'c' * 40}"
    docker_client.images.get(BASE_IMAGE).tag(image)
    created = []
    yield prefix, image, created
    for c in created:
        try:
            docker_client.containers.get(c.id).remove(force=True)
        except Exception:
            pass
    docker_client.images.remove(image)


def exists(docker_client, container) -> bool:
    return bool(docker_client.containers.list(all=True, filters={"id": container.id}))


@pytest.mark.docker
def test_stop_and_reaper_remove_only_this_hosts_stopped_sessions(docker_client, prefix_image):
    prefix, image, created = prefix_image
    user = f"u-{uuid.uuid4().hex[:8]}"

    def create(image_name, label_user):
        c = docker_client.containers.create(image_name, "true",
                                            labels={LABEL_USER: label_user})
        created.append(c)
        return c

    stopped_one = create(image, user)  # a session the hub could not remove
    never_started = create(image, f"{user}-b")
    other_host = create(BASE_IMAGE, f"{user}-c")  # another prefix: not ours to remove

    async def main():
        engine = DockerEngine()
        lifecycle = SessionLifecycle(DockerSessionTracker(engine=engine), engine, prefix, log)
        try:
            await lifecycle.stopped(user)
            await asyncio.gather(*lifecycle._tasks)
            assert not exists(docker_client, stopped_one)
            assert exists(docker_client, never_started)
            # not yet: a container created a moment ago may be starting
            assert await lifecycle.reap_once() == []
            later = time.time() + REAP_AFTER_SECONDS + 1
            assert await lifecycle.reap_once(now=later) == [never_started.name]
        finally:
            await lifecycle.close()
            engine.close()

    asyncio.run(main())
    assert not exists(docker_client, never_started)
    assert exists(docker_client, other_host)


def test_shutdown_closes_what_initialize_opened(tmp_path):
    app = BinderLab()
    app.initialize(["--BinderLab.docker_url=none", "--BinderLab.session_tracker_class=kubernetes",
                    f"--BinderLab.state_dir={tmp_path}",
                    f"--BinderLab.config_file={tmp_path / 'none.py'}"])

    async def main():
        app.lifecycle.start()
        tasks = set(app.lifecycle._tasks)
        assert tasks
        await app.shutdown()
        assert all(t.done() for t in tasks)

    asyncio.run(main())
    with pytest.raises(sqlite3.ProgrammingError):  # the cache index is closed
        app.index.db.execute("select 1")
    with pytest.raises(RuntimeError):  # so is the fingerprint worker's pool
        app.fingerprints._pool.submit(print)
