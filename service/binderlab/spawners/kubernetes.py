"""The Kubernetes spawner for binderlab sessions (KubeSpawner, for the cluster tier).

Content overlay on Kubernetes: for an environment-keyed image an init container, running
the session image itself as the notebook user, copies the image's repository directory
into an emptyDir volume and then writes the requested commit's files over it; the notebook
container mounts the volume at the repository directory. The files come from the binder
service (``user_options["content_url"]``: the archive it made from the commit it fetched
through its SSRF guard), not from a `git fetch` of the repository URL inside the cluster,
which would bypass the guard and its pinned address. The URL reaches the init container as
an environment variable, never inside the shell text, and must match content_url_pattern.
"""

import re

from kubespawner import KubeSpawner
from tornado import web
from traitlets import Integer, Unicode

from binderlab.contract import OPT_CONTENT_URL, SessionOptions
from binderlab.spawners.kubestorage import KubeUserVolumeMixin
from binderlab.spawners.mixin import BinderLabSessionMixin

# The image's R2D_ENTRYPOINT (repo2docker's start script, expanded at build time) names a
# file in the repository directory: the commit's own script replaces the image's, and is
# made executable as repo2docker's build would have made it.
OVERLAY_SCRIPT = """set -eu
cp -a "$REPO_DIR/." /content/
exec python3 -c '
import os, sys, tarfile, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=300) as response:
    with tarfile.open(fileobj=response, mode="r|") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extraction_filter = tarfile.data_filter
        archive.extractall(sys.argv[2])
start, prefix = os.environ.get("R2D_ENTRYPOINT", ""), sys.argv[3].rstrip("/") + "/"
if start.startswith(prefix):
    path = os.path.join(sys.argv[2], start[len(prefix):])
    if os.path.isfile(path) and not os.path.islink(path):
        os.chmod(path, os.stat(path).st_mode | 0o111)
' "$BINDER_CONTENT_URL" /content "$REPO_DIR"
"""


class BinderLabKubeSpawner(KubeUserVolumeMixin, BinderLabSessionMixin, KubeSpawner):
    repo_dir = Unicode(
        "/home/jovyan",
        help="The repository directory in session images (repo2docker's REPO_DIR, the "
        "notebook user's home by default).",
    ).tag(config=True)

    notebook_uid = Integer(
        1000, help="UID of the notebook user in session images (repo2docker's --user-id)."
    ).tag(config=True)

    content_url_pattern = Unicode(
        r"^http://[0-9a-f.:\[\]]+:8586/content/[A-Za-z0-9_-]{43}\.tar$",
        help="""Regular expression a session's content URL must match: the binder
        service's content server (a pod IP and c.KubernetesBuilder.context_port, 8586) and
        a token. user_options can be sent by anyone allowed to start servers through the
        hub API; a URL elsewhere would make the init container fetch it inside the
        cluster.""",
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
        if self.has_volume:  # a logged-in user's named server: their claim, merged into
            self.add_user_volume(options.upstream,
                                 self.content_url() if options.upstream else "")

    def get_env(self):
        return self.session_env(super().get_env())

    def content_url(self) -> str:
        url = str(self.user_options.get(OPT_CONTENT_URL, ""))
        if not re.fullmatch(self.content_url_pattern, url):
            raise web.HTTPError(400, "user_options.content_url must be the binder service's "
                                "content URL for this launch.")
        return url

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
                {"name": "BINDER_CONTENT_URL", "value": self.content_url()},
                {"name": "HOME", "value": "/tmp"},
            ],
            "volumeMounts": [{"name": volume, "mountPath": "/content"}],
            "securityContext": {
                "runAsUser": self.notebook_uid, "runAsNonRoot": True,
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            },
            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
        }]
