"""Lockfile build packs for repo2docker: ``uv.lock`` and ``conda-lock.yml``.

repo2docker picks a build pack from a configurable list (``c.Repo2Docker.buildpacks``);
these are ordinary repo2docker build packs, added to that list in the repo2docker config
file binderlab passes to repo2docker (``repo2docker_config``). The environment fingerprint
runs repo2docker's build-pack API with the same config, so it sees these build packs and
their pre-assemble files exactly like the built-in ones.

In a repo2docker config file::

    from binderlab.buildpacks import with_lockfile_buildpacks
    c.Repo2Docker.buildpacks = with_lockfile_buildpacks()
"""

from binderlab.buildpacks.condalock import CondaLockBuildPack
from binderlab.buildpacks.uv import UvLockBuildPack

LOCKFILE_BUILDPACKS = [UvLockBuildPack, CondaLockBuildPack]


def with_lockfile_buildpacks(buildpacks=None) -> list:
    """``buildpacks`` (default: repo2docker's own list) with the lockfile build packs in
    front, after a Dockerfile build pack: a repository's Dockerfile still wins, as it does
    over every environment file in repo2docker; a lock file wins over the looser files it
    was made from (pyproject.toml, environment.yml)."""
    if buildpacks is None:
        from repo2docker.app import Repo2Docker

        # the trait's default, without making a second repo2docker app inside its config
        buildpacks = Repo2Docker.class_traits()["buildpacks"].default()
    from repo2docker.buildpacks import DockerBuildPack, LegacyBinderDockerBuildPack

    docker = [b for b in buildpacks if issubclass(b, DockerBuildPack | LegacyBinderDockerBuildPack)]
    rest = [b for b in buildpacks if b not in docker and b not in LOCKFILE_BUILDPACKS]
    return [*docker, *LOCKFILE_BUILDPACKS, *rest]


__all__ = ["CondaLockBuildPack", "LOCKFILE_BUILDPACKS", "UvLockBuildPack",
           "with_lockfile_buildpacks"]
