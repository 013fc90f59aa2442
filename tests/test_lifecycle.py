"""Sessions' lifecycle in the service (clean-up after stops, the reaper) and the app's
shutdown, against the real Docker engine."""

import asyncio
import io
import json
import logging
import subprocess
import sys
import time
import uuid

import docker.errors
import pytest

from binderlab.contract import LABEL_USER
from binderlab.platform.docker import DockerEngine
from binderlab.sessions.lifecycle import REAP_AFTER_SECONDS, SessionLifecycle
from binderlab.sessions.trackers import DockerSessionTracker
from tests.harness import leftovers
from tests.harness.service import BASE_IMAGE

log = logging.getLogger("test")


@pytest.fixture
def prefix_image(docker_client):
    """The base image tagged under a prefix of this test's own, removed afterwards."""
    prefix = leftovers.image_prefix()
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
                                            labels={LABEL_USER: label_user,
                                                    leftovers.LABEL: leftovers.RUN_ID})
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


# The app runs in a fresh interpreter: its fingerprint worker brings multiprocessing's
# resource tracker, which lives as long as the process that started it.
APP = """
import asyncio, json, sqlite3, sys
from binderlab.app import BinderLab

app = BinderLab()
app.initialize(sys.argv[1:])
indexed = [name for name, _ in app.index.by_last_use()]

async def main():
    app.lifecycle.start()
    tasks = set(app.lifecycle._tasks)
    worker = await app.fingerprints._start()  # a fingerprint worker process, as a launch starts
    await app.shutdown()
    return (bool(tasks) and all(t.done() for t in tasks),
            worker.returncode is not None and not app.fingerprints._all)

lifecycle, workers = asyncio.run(main())
closed = {"lifecycle": lifecycle, "fingerprints": workers}
try:
    app.index.db.execute("select 1")
    closed["index"] = False
except sqlite3.ProgrammingError:
    closed["index"] = True
print(json.dumps({"indexed": indexed, "closed": closed}))
"""


def run_app(tmp_path, *args) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", APP, f"--BinderLab.state_dir={tmp_path}",
         f"--BinderLab.config_file={tmp_path / 'none.py'}", *args],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_shutdown_closes_what_initialize_opened(tmp_path):
    result = run_app(tmp_path, "--BinderLab.docker_url=none",
                     "--BinderLab.session_tracker_class=kubernetes")
    assert result["closed"] == {"lifecycle": True, "index": True, "fingerprints": True}


@pytest.mark.docker
def test_start_up_indexes_this_hosts_images_only(docker_client, tmp_path):
    """initialize() rebuilds the cache index from the engine's images: binderlab's (prefix
    and a key label matching the name), not others'."""
    prefix = leftovers.image_prefix()
    key = "d" * 40
    ours, mislabelled = f"{prefix}env-{key}", f"{prefix}env-{'e' * 40}"
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL binderlab.key={key} binderlab.kind=env\n"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    try:
        image.tag(ours)
        image.tag(mislabelled)  # its name does not end with the key its label records
        result = run_app(tmp_path, f"--BinderLab.image_prefix={prefix}")
        assert result["indexed"] == [ours]
    finally:
        for name in (ours, mislabelled, image.id):  # the last tag gone, the image goes too
            try:
                docker_client.images.remove(name)
            except docker.errors.ImageNotFound:
                pass
