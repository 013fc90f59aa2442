"""BinderLabSpawner's volume and merge container against the real engine, without a hub:
the spawner object as the hub makes it for a logged-in user's named server, its
``prepare_storage`` run for real (volume creation, the merge container of the session's
image as the notebook user, its clean-up) and its failures: a merge that breaks or runs out
of time fails with a clear message, leaves no container and does not touch the user's files."""

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web
from traitlets.config import Config

from binderlab.spawners.docker import BinderLabSpawner
from tests.harness import leftovers
from tests.harness.service import BASE_IMAGE

pytestmark = pytest.mark.docker

SERVER = "gh-course-lessons-1a2b3c4d"


class NamedServerSpawner(BinderLabSpawner):
    """The spawner of a named server (Spawner.name reads the hub's database record)."""

    server_name = SERVER

    @property
    def name(self):
        return self.server_name


def archive(content_dir: Path, commit: str, files: dict[str, str]) -> None:
    with tarfile.open(content_dir / f"{commit}.tar", "w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


@pytest.fixture
def spawner(tmp_path, docker_client):
    tag = leftovers.name("spawnervol")
    config = Config()
    config.BinderLabSpawner.content_dir = str(tmp_path)
    config.BinderLabSpawner.persistent_storage = True
    config.BinderLabSpawner.volume_name_template = tag + "-{username}"
    config.BinderLabSpawner.volume_labels = {leftovers.LABEL: leftovers.RUN_ID}
    config.DockerSpawner.prefix = tag
    s = NamedServerSpawner(config=config, user=SimpleNamespace(name="erin", id=1,
                                                               url="/user/erin/"))
    s.image = BASE_IMAGE
    yield s
    for v in docker_client.volumes.list(filters={"name": tag}):
        v.remove(force=True)


def volume_files(docker_client, spawner) -> dict[str, str]:
    root = Path(docker_client.volumes.get(spawner.volume_name).attrs["Mountpoint"]) / SERVER
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def merge_containers(docker_client, spawner):
    # the low-level list (one call): other runs' containers that go meanwhile cannot fail it
    name = "/" + spawner.object_name + "-merge"
    return [c for c in docker_client.api.containers(all=True) if name in c["Names"]]


async def test_prepare_storage_creates_the_volume_and_merges(spawner, docker_client, tmp_path):
    assert spawner.has_volume
    archive(tmp_path, "1" * 40, {"lesson.md": "v1\n", "data/x.csv": "1\n"})
    await spawner.prepare_storage("1" * 40, 1000)
    volume = docker_client.volumes.get(spawner.volume_name)
    assert volume.attrs["Labels"]["binderlab.user"] == "erin"
    assert volume.attrs["Labels"]["binderlab.storage"] == "user"
    assert volume.attrs["Labels"]["binderlab.image-prefix"] == spawner.image_prefix
    assert volume_files(docker_client, spawner) == {"lesson.md": "v1\n", "data/x.csv": "1\n"}
    root = Path(volume.attrs["Mountpoint"])
    # the notebook user's, not root's (the new volume was handed over once)
    assert root.stat().st_uid == 1000 and (root / SERVER / "lesson.md").stat().st_uid == 1000
    assert (root / ".binderlab" / "merge" / f"{SERVER}.json").is_file()
    # the session mounts it and starts in the repository's folder
    assert spawner.volumes[spawner.volume_name] == {"bind": "/persistent", "mode": "rw"}
    assert spawner.extra_create_kwargs["working_dir"] == f"/persistent/{SERVER}"
    assert any("Your files are in /persistent/" in m for m in spawner._storage_messages)
    assert not merge_containers(docker_client, spawner)

    (root / SERVER / "lesson.md").write_text("mine\n")
    archive(tmp_path, "2" * 40, {"lesson.md": "v2\n", "data/x.csv": "2\n"})
    await spawner.prepare_storage("2" * 40, 1000)
    assert volume_files(docker_client, spawner) == {
        "lesson.md": "mine\n", "lesson.upstream-2222222.md": "v2\n", "data/x.csv": "2\n",
        "BINDERLAB-MERGE.md": (root / SERVER / "BINDERLAB-MERGE.md").read_text()}
    assert any(m.startswith("Conflict: you changed lesson.md") for m in
               spawner._storage_messages)


async def test_a_broken_merge_fails_clearly_and_changes_nothing(spawner, docker_client,
                                                                tmp_path):
    archive(tmp_path, "1" * 40, {"lesson.md": "v1\n"})
    await spawner.prepare_storage("1" * 40, 1000)
    root = Path(docker_client.volumes.get(spawner.volume_name).attrs["Mountpoint"])
    (root / SERVER / "lesson.md").write_text("mine\n")
    # the record of the last merge is unreadable (here: a folder where the file should be)
    state = root / ".binderlab" / "merge" / f"{SERVER}.json"
    state.unlink()
    state.mkdir()
    archive(tmp_path, "2" * 40, {"lesson.md": "v2\n", "new.md": "new\n"})
    with pytest.raises(web.HTTPError) as failed:
        await spawner.prepare_storage("2" * 40, 1000)
    assert failed.value.status_code == 500
    assert "Could not merge the repository into your files" in failed.value.log_message
    assert "your files are unchanged" in failed.value.log_message
    assert volume_files(docker_client, spawner) == {"lesson.md": "mine\n"}
    assert not merge_containers(docker_client, spawner)


async def test_a_merge_out_of_time_is_stopped(spawner, docker_client, tmp_path):
    archive(tmp_path, "1" * 40, {"lesson.md": "v1\n"})
    await spawner.prepare_storage("1" * 40, 1000)  # the volume exists and is the user's
    spawner.merge_timeout = 0.05  # less than any container takes to start Python
    archive(tmp_path, "2" * 40, {"lesson.md": "v2\n"})
    with pytest.raises(web.HTTPError) as failed:
        await spawner.prepare_storage("2" * 40, 1000)
    assert failed.value.status_code == 504
    assert "took over" in failed.value.log_message
    assert not merge_containers(docker_client, spawner)  # stopped and removed
    # killed at any point, each file is the old or the new one (written, then renamed)
    assert volume_files(docker_client, spawner)["lesson.md"] in ("v1\n", "v2\n")
    # and launching again completes the merge
    spawner.merge_timeout = 120
    await spawner.prepare_storage("2" * 40, 1000)
    assert volume_files(docker_client, spawner) == {"lesson.md": "v2\n"}


async def test_missing_content_is_refused(spawner):
    with pytest.raises(web.HTTPError, match="needs the repository's content"):
        await spawner.prepare_storage(None, 1000)
    with pytest.raises(web.HTTPError) as missing:
        await spawner.prepare_storage("9" * 40, 1000)
    assert missing.value.status_code == 404


async def test_volume_driver_options_reach_the_engine(spawner, docker_client):
    spawner.volume_driver_opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"}
    await spawner.ensure_volume()
    volume = docker_client.volumes.get(spawner.volume_name)
    assert volume.attrs["Driver"] == "local"
    assert volume.attrs["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"}


def test_anonymous_and_unnamed_servers_get_no_volume(spawner):
    spawner.server_name = ""  # a temporary user's default server (anonymous launch)
    assert not spawner.has_volume
    spawner.server_name = SERVER
    spawner.persistent_storage = False
    assert not spawner.has_volume
