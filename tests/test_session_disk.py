"""A session's own disk use: bounded by the engine where its storage driver can
(BINDERLAB_SESSION_DISK_LIMIT -> storage_opt), refused with the engine's own message where it
cannot (overlay2 over ext4, as on this machine); see the README, "Disk budget"."""

from pathlib import Path

import docker
import pytest
from traitlets.config import Config

from tests.harness import leftovers
from tests.harness.service import BASE_IMAGE

HUB_CONFIG = Path(__file__).resolve().parent.parent / "jupyterhub_config.py"


def hub_config(monkeypatch, **env) -> Config:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = Config()
    exec(compile(HUB_CONFIG.read_text(), str(HUB_CONFIG), "exec"), {"get_config": lambda: config})
    return config


def test_disk_limit_is_off_unless_set(monkeypatch):
    monkeypatch.delenv("BINDERLAB_SESSION_DISK_LIMIT", raising=False)
    assert "storage_opt" not in hub_config(monkeypatch).DockerSpawner.extra_host_config


def test_disk_limit_reaches_the_container_host_config(monkeypatch):
    config = hub_config(monkeypatch, BINDERLAB_SESSION_DISK_LIMIT="5G")
    assert config.DockerSpawner.extra_host_config["storage_opt"] == {"size": "5G"}


@pytest.mark.docker
def test_engine_bounds_the_writable_layer_or_says_it_cannot(docker_client, monkeypatch):
    """What this engine does with the host config the hub would send."""
    host_config = hub_config(monkeypatch, BINDERLAB_SESSION_DISK_LIMIT="1G") \
        .DockerSpawner.extra_host_config
    driver = docker_client.info()["DriverStatus"]
    name = leftovers.name("disk")  # found by the end-of-run check if it were left behind
    try:
        out = docker_client.containers.run(
            BASE_IMAGE, ["sh", "-c", "df -B1 / | tail -1"], name=name,
            storage_opt=host_config["storage_opt"], remove=False)
    except docker.errors.APIError as e:
        # overlay2 over ext4: the engine refuses, so the option must stay off by default
        assert ["Backing Filesystem", "xfs"] not in driver, driver
        assert "storage-opt is supported only for overlay over xfs" in str(e), e
    else:
        assert int(out.decode().split()[1]) <= 1 << 30
    finally:
        try:
            docker_client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
