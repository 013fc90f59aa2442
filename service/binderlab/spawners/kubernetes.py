"""The Kubernetes spawner for binderlab sessions (KubeSpawner, for the cluster tier).

Content overlay on Kubernetes: for an environment-keyed image an init container, running
the session image itself as the notebook user, copies the image's repository directory
into an emptyDir volume and then writes the requested commit's files over it (a shallow
`git fetch` of exactly that commit); the notebook container mounts the volume at the
repository directory. The repository URL and commit reach the init container as
environment variables, never inside the shell text, and git may use https only.
"""

from kubespawner import KubeSpawner
from traitlets import Integer, Unicode

from binderlab.contract import SessionOptions
from binderlab.spawners.mixin import BinderLabSessionMixin

OVERLAY_SCRIPT = """set -eu
cp -a "$REPO_DIR/." /content/
git init -q /tmp/content
git -C /tmp/content fetch -q --depth 1 -- "$BINDER_REPO_URL" "$BINDER_REF"
git -C /tmp/content archive FETCH_HEAD | tar -x -C /content
"""


class BinderLabKubeSpawner(BinderLabSessionMixin, KubeSpawner):
    repo_dir = Unicode(
        "/home/jovyan",
        help="The repository directory in session images (repo2docker's REPO_DIR, the "
        "notebook user's home by default).",
    ).tag(config=True)

    notebook_uid = Integer(
        1000, help="UID of the notebook user in session images (repo2docker's --user-id)."
    ).tag(config=True)

    async def start(self):
        self.configure_session()
        return await super().start()

    def configure_session(self) -> None:
        """Turn binderlab's user_options into the pod's image, command and overlay."""
        options = self.check_user_options()
        gpus = options.gpus
        # what the binder service's KubernetesSessionTracker reads (GPU holdings, quotas);
        # annotations, since label values cannot hold repository names
        labels = options.session_labels(self.user.name)
        self.extra_annotations = {**self.extra_annotations, **labels}
        if gpus:
            # the cluster schedules whole GPUs by count (node pools with the NVIDIA device
            # plugin); node_selector / tolerations for GPU nodes come from KubeSpawner config
            self.extra_resource_limits = {**self.extra_resource_limits,
                                          "nvidia.com/gpu": str(len(gpus))}
        self.image = options.image
        if self.anonymous:
            self.cmd = self.anonymous_command()
        if options.content:
            self.add_content_overlay(options)

    def get_env(self):
        return self.session_env(super().get_env())

    def add_content_overlay(self, options: SessionOptions) -> None:
        volume = "repo-content"
        self.volumes = [*self.volumes, {"name": volume, "emptyDir": {}}]
        self.volume_mounts = [*self.volume_mounts,
                              {"name": volume, "mountPath": self.repo_dir}]
        self.init_containers = [*self.init_containers, {
            "name": "content-overlay",
            "image": self.image,
            "command": ["/bin/sh", "-c", OVERLAY_SCRIPT],
            "env": [
                {"name": "REPO_DIR", "value": self.repo_dir},
                {"name": "BINDER_REPO_URL", "value": options.repo_url},
                {"name": "BINDER_REF", "value": options.content},
                {"name": "GIT_ALLOW_PROTOCOL", "value": "https"},
                {"name": "HOME", "value": "/tmp"},
            ],
            "volumeMounts": [{"name": volume, "mountPath": "/content"}],
            "securityContext": {
                "runAsUser": self.notebook_uid, "runAsNonRoot": True,
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            },
            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
        }]
