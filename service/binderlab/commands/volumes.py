"""``binderlab volumes``: the persistent volumes of logged-in users (one box).

binderlab never deletes a user's volume by itself: not when a session stops or is culled,
not when the hub or the service restarts, not when a hub user is deleted. This command is
how an operator sees them and removes one (a student who left, a reset on request).
"""

import docker
import docker.errors
from traitlets import Bool
from traitlets.config import catch_config_error

from binderlab.app import BinderLab
from binderlab.contract import LABEL_IMAGE_PREFIX, LABEL_STORAGE, LABEL_USER, STORAGE_USER

USAGE = "Usage: binderlab volumes list | binderlab volumes remove USER --yes"


class VolumesApp(BinderLab):
    name = "binderlab-volumes"
    description = """List or remove logged-in users' persistent volumes (their files).

    `binderlab volumes list` shows the volumes, their user and the sessions using them.

    `binderlab volumes remove USER --yes` deletes USER's volume and every file in it.

    A volume in use by a running session is not removed: stop the user's sessions first
    (hub admin page, or the hub API). Uses the engine of c.BinderLab.docker_url and
    lists the volumes of this host's c.BinderLab.image_prefix only."""

    flags = {**BinderLab.flags,
             "yes": ({"VolumesApp": {"yes": True}},
                     "Really delete (remove deletes the user's files for good).")}
    yes = Bool(False, help="Confirm `remove` (it deletes the user's files).").tag(config=True)

    @catch_config_error
    def initialize(self, argv=None):
        # only the settings: no engine index, no providers, nothing started
        super(BinderLab, self).initialize(argv)
        self.load_config_file(self.config_file)

    def client(self) -> docker.DockerClient:
        if self.docker_url == "none":
            raise SystemExit("c.BinderLab.docker_url is 'none': volumes live in a Docker engine "
                             "(on Kubernetes, users' claims: kubectl get pvc -l "
                             f"{LABEL_STORAGE}={STORAGE_USER}).")
        return docker.DockerClient(base_url=self.docker_url) if self.docker_url \
            else docker.from_env()

    def volumes(self, client, user: str | None = None) -> list:
        # this host's (its image prefix, as `binderlab down` finds its sessions)
        labels = [f"{LABEL_STORAGE}={STORAGE_USER}",
                  f"{LABEL_IMAGE_PREFIX}={self.image_prefix}"]
        if user is not None:
            labels.append(f"{LABEL_USER}={user}")
        return client.volumes.list(filters={"label": labels})

    def start(self):
        if not self.extra_args or self.extra_args[0] not in ("list", "remove"):
            raise SystemExit(USAGE)
        client = self.client()
        try:
            if self.extra_args[0] == "list" and len(self.extra_args) == 1:
                return self.list(client)
            if self.extra_args[0] == "remove" and len(self.extra_args) == 2:
                return self.remove(client, self.extra_args[1])
            raise SystemExit(USAGE)
        finally:
            client.close()

    def users_of(self, client, volume: str) -> list[str]:
        return [c.name for c in client.containers.list(all=True,
                                                       filters={"volume": volume})]

    def list(self, client) -> None:
        volumes = self.volumes(client)
        if not volumes:
            print("No user volumes.")
            return
        print(f"{'VOLUME':40} {'USER':24} {'CREATED':26} SESSIONS")
        for v in sorted(volumes, key=lambda v: v.attrs["Labels"].get(LABEL_USER, "")):
            sessions = ", ".join(self.users_of(client, v.name)) or "-"
            print(f"{v.name:40} {v.attrs['Labels'].get(LABEL_USER, '?'):24} "
                  f"{v.attrs.get('CreatedAt', '')[:25]:26} {sessions}")

    def remove(self, client, user: str) -> None:
        volumes = self.volumes(client, user)
        if not volumes:
            raise SystemExit(f"No volume of user {user!r} (binderlab volumes list shows them).")
        if not self.yes:
            names = ", ".join(v.name for v in volumes)
            raise SystemExit(f"This deletes every file of {user!r} ({names}). Run again with "
                             "--yes to do it.")
        for v in volumes:
            busy = self.users_of(client, v.name)
            if busy:
                raise SystemExit(f"Volume {v.name} is used by {', '.join(busy)}: stop "
                                 f"{user!r}'s sessions first, then remove it.")
            try:
                v.remove()
            except docker.errors.APIError as e:
                raise SystemExit(f"Could not remove {v.name}: {e.explanation}") from None
            print(f"Removed {v.name} (the files of {user}).")
