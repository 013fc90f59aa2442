"""Persistent work of logged-in users on Kubernetes: one PersistentVolumeClaim per hub user.

The same layout as on one box (spawners/persistent.py): the claim is mounted at
``volume_mount_path`` (``/persistent``), a folder per repository in it named like the
user's named server, the session starting in that folder. The claim is KubeSpawner's own
(``storage_pvc_ensure``, ``pvc_name_template``, ``storage_capacity``, ``storage_class``,
``storage_access_modes``), one per *user* (the template has no server name) so that all
their named servers share it, and it is never deleted with a server or a user
(``delete_pvc`` off): only an operator removes one (kubectl delete pvc).

The merge runs as an init container of the session pod, after the content overlay: the
session image as the notebook user, the merge script (spawners/contentmerge.py) given as
program text, the commit's files downloaded from the binder service's content server (the
URL checked against content_url_pattern and passed in the environment, as for the overlay).
A failed merge fails the pod's start, and the hub reports it.
"""

from pathlib import Path

from traitlets import Bool, Integer, Unicode, default
from traitlets.config import Configurable

from binderlab.contract import LABEL_STORAGE, LABEL_USER, STORAGE_USER, HubSettings
from binderlab.spawners import contentmerge

MERGE_SCRIPT = Path(contentmerge.__file__).read_text()
# KubeSpawner fills {username}-style templates in init containers' fields: the program's
# own braces are doubled so that they come out as written
TEMPLATE_SAFE_SCRIPT = MERGE_SCRIPT.replace("{", "{{").replace("}", "}}")
VOLUME = "persistent"


class KubeUserVolumeMixin(Configurable):
    persistent_storage = Bool(
        help="""Give logged-in users' sessions (their named servers) a persistent claim.

        Default: on when the binder service runs in logged-in mode (BINDERLAB_AUTHENTICATION
        'required' or 'optional'). Anonymous sessions never get one. Set
        c.KubeSpawner.storage_capacity (and storage_class) for the claims.""",
    ).tag(config=True)

    volume_mount_path = Unicode(
        "/persistent",
        help="Where the claim is mounted in sessions (default '/persistent'); a folder per "
        "repository in it.",
    ).tag(config=True)

    merge_timeout = Integer(
        120,
        help="Seconds the merge init container may run (default 120); longer, it is "
        "stopped and the session does not start (the user's files stay as they were).",
    ).tag(config=True)

    @default("persistent_storage")
    def _default_persistent_storage(self):
        return HubSettings.from_env().authentication != "none"

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        return "claim-{username}"  # per user: all their named servers share one claim

    @default("delete_pvc")
    def _default_delete_pvc(self):
        return False  # a user's work outlives a deleted server or user

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    @property
    def has_volume(self) -> bool:
        return bool(self.persistent_storage and self.name)

    def add_user_volume(self, upstream: str | None, content_url: str) -> None:
        """Mount the user's claim and merge ``upstream`` (a commit) into their folder."""
        work_dir = f"{self.volume_mount_path.rstrip('/')}/{self.name}"
        self.storage_pvc_ensure = True
        self.pvc_name = self._expand_user_properties(self.pvc_name_template)
        self.storage_extra_labels = {**self.storage_extra_labels,
                                     LABEL_STORAGE: STORAGE_USER}
        self.storage_extra_annotations = {**self.storage_extra_annotations,
                                          LABEL_USER: self.user.name}
        # the claim's files belong to the notebook user's group (repo2docker gives the
        # user a group of its own id); the pod's fsGroup makes a new claim writable
        self.fs_gid = self.notebook_uid
        self.volumes = [*self.volumes, {"name": VOLUME,
                                        "persistentVolumeClaim": {"claimName": self.pvc_name}}]
        self.volume_mounts = [*self.volume_mounts,
                              {"name": VOLUME, "mountPath": self.volume_mount_path}]
        self.working_dir = work_dir
        if not upstream:
            return
        self.init_containers = [*self.init_containers, {
            "name": "content-merge",
            "image": self.image,
            "command": ["timeout", str(self.merge_timeout), "python3", "-c", TEMPLATE_SAFE_SCRIPT],
            # $(VAR) is Kubernetes' own expansion from the container's environment: the URL
            # never goes through a shell
            "args": ["--upstream-url", "$(BINDER_CONTENT_URL)",
                     "--volume", self.volume_mount_path, "--folder", self.name,
                     "--commit", upstream],
            "env": [{"name": "BINDER_CONTENT_URL", "value": content_url},
                    {"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [{"name": VOLUME, "mountPath": self.volume_mount_path}],
            "securityContext": {
                "runAsUser": self.notebook_uid, "runAsGroup": self.notebook_uid,
                "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
        }]
