"""The content overlay's tarball: a commit's files, owned by the notebook user.

Used by the Docker spawner (into a created container, before it starts) and by the warm
pool's claim (into a running one): Docker's put_archive works on both.
"""

import tarfile
import tempfile
from pathlib import Path


def repo_dir_of(image_config: dict) -> str:
    """Where repo2docker put the repository in an image (its REPO_DIR), from the image's
    ``Config`` (docker inspect)."""
    env = image_env(image_config)
    return env.get("REPO_DIR") or image_config.get("WorkingDir") or "/home/jovyan"


def image_env(image_config: dict) -> dict[str, str]:
    """An image's environment variables, from its ``Config`` (docker inspect)."""
    return dict(item.split("=", 1) for item in image_config.get("Env") or [] if "=" in item)


def owned_tar(path: Path, uid: int, executable: str = ""):
    """The tar at ``path`` with every entry owned by ``uid`` (git archive writes root), as
    a file positioned at its start (spilled to disk when large, never all in memory);
    the regular file at ``executable`` (a path inside the tar) made executable."""
    out = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    with tarfile.open(path) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            member.uid = member.gid = uid
            member.uname = member.gname = ""
            if executable and member.isreg() and member.name.removeprefix("./") == executable:
                member.mode |= 0o111
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    out.seek(0)
    return out
