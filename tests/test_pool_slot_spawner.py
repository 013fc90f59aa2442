"""The spawner's part of logged-in claims (no engine needed): a warm session of a logged-in
pool is created with its own slot bound at the volume path, propagation rslave, and its
server starts there; without the service's slot folder, nothing changes."""

from types import SimpleNamespace

from traitlets.config import Config

from binderlab.contract import ENV_POOL_MOUNTS
from binderlab.spawners.docker import BinderLabSpawner


def pooled_spawner(tmp_path):
    config = Config()
    config.BinderLabSpawner.persistent_storage = True
    return BinderLabSpawner(config=config, user=SimpleNamespace(
        name="binderpool-0a1b2c3d", id=1, url="/user/binderpool-0a1b2c3d/"))


def test_a_warm_session_gets_its_slot_at_the_volume_path(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_POOL_MOUNTS, str(tmp_path / "pool-mounts"))
    spawner = pooled_spawner(tmp_path)
    spawner.attach_pool_slot()
    slot = tmp_path / "pool-mounts" / "binderpool-0a1b2c3d"
    assert slot.is_dir()
    # what Docker gets: host:container:mode
    assert spawner.volume_binds == {str(slot): {"bind": "/persistent", "mode": "rw,rslave"}}
    assert spawner.extra_create_kwargs["working_dir"] == "/persistent"


def test_without_slots_a_warm_session_is_as_before(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_POOL_MOUNTS, raising=False)
    spawner = pooled_spawner(tmp_path)
    spawner.attach_pool_slot()
    assert spawner.volume_binds == {}
    assert "working_dir" not in spawner.extra_create_kwargs
