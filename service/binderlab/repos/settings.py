"""binderlab's own settings in a repository: ``binderlab.yml``, read from the fetched commit.

Found where repo2docker finds its files: ``.binder/``, else ``binder/``, else the root; a
binder folder that exists hides the root, as it does for repo2docker. Read from the mirror
(``git cat-file``), never from a checkout, and bounded in size.
"""

from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from binderlab.errors import RepositoryError
from binderlab.repos.mirrors import RepoMirrors

FILE_NAME = "binderlab.yml"
MAX_BYTES = 65536


@dataclass(frozen=True)
class RepoSettings:
    gpu: int | None = None  # GPUs the repository asks for (`gpu: 1`); None: not asked
    path: str = ""  # where they were read from ("" when the repository has no file)


async def read_settings(mirrors: RepoMirrors, mirror: Path, commit: str) -> RepoSettings:
    for folder in (".binder/", "binder/", ""):
        data = await mirrors.read_file(mirror, commit, f"{folder}{FILE_NAME}", limit=MAX_BYTES)
        if data is None:
            if folder and await mirrors.has_dir(mirror, commit, folder):
                return RepoSettings()
            continue
        return parse_settings(data, f"{folder}{FILE_NAME}")
    return RepoSettings()


def parse_settings(data: bytes, path: str) -> RepoSettings:
    """``gpu: N`` (N ≥ 0; ``true`` means 1); anything else there is the repository's
    mistake, said as such (400)."""
    try:
        doc = YAML(typ="safe", pure=True).load(data) or {}
    except Exception:
        doc = None
    if not isinstance(doc, dict):
        raise RepositoryError(f"{path} is not valid: expected e.g. 'gpu: 1'.", 400)
    value = doc.get("gpu")
    if value is None:
        return RepoSettings(path=path)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise RepositoryError(f"{path} is not valid: 'gpu' must be a number of GPUs, e.g. "
                              "'gpu: 1'.", 400)
    return RepoSettings(gpu=value, path=path)
