"""The spawner's merge of a commit into a user's folder, run by the binder service.

A warm session claimed by a logged-in user (sessions/poolstorage.py) gets the user's folder
after it started, so the merge the spawner runs before a session's container is created
(spawners/persistent.py) runs at the claim instead: the same merge container, rules, report
file and launch-log lines, driven over the service's Docker engine.
"""

import os
from pathlib import Path
from types import SimpleNamespace

from binderlab.spawners.persistent import UserVolumeMixin, merge_messages


class ClaimMerge(UserVolumeMixin):
    """The spawner's merge (volume, merge container, messages) driven from the service:
    the attributes the spawner mixin reads, over the service's Docker engine."""

    def __init__(self, *, engine, image: str, owner: str, folder: str, image_prefix: str,
                 log, **kwargs):
        super().__init__(**kwargs)
        self.engine, self.image, self.name, self.image_prefix = engine, image, folder, \
            image_prefix
        self.user = SimpleNamespace(name=owner)
        self.object_name = f"binderlab-claim-{folder}-{os.urandom(4).hex()}"
        self.log = log
        self._log_name = f"{owner}/{folder}"

    @property
    def client(self):
        return self.engine.client.api

    def docker(self, method: str, *args, **kwargs):
        return self.engine.call(getattr(self.engine.client.api, method), *args, **kwargs)

    async def merge(self, volume: str, archive: Path, commit: str, uid: int) -> list[str]:
        """Merge ``commit`` into the owner's folder of ``volume``; the launch-log lines.
        In a claimed session the folder is the volume path itself (sessions/poolmounts.py)."""
        result = await self.run_merge(volume, archive, commit, uid)
        return merge_messages(result, self.volume_mount_path)
