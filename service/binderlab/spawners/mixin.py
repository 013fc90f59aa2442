"""What every binderlab spawner does, whatever runs the container (Docker, Kubernetes).

A mixin for JupyterHub spawners: the launch-token check, the session's environment and,
in anonymous mode, the command that starts the image's own Jupyter server with the launch
token instead of hub authentication (temporary users cannot log in to the hub; see
PROTOCOL.md, "How the session checks that token").
"""

import os
import re

from tornado import web
from traitlets import Bool, List, Unicode, default
from traitlets.config import Configurable

from binderlab.gpus.allocator import (
    LABEL_CLIENT,
    LABEL_GPUS,
    LABEL_REPO_KEY,
    LABEL_USER,
    check_gpu_signature,
)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
GPU_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class BinderLabSessionMixin(Configurable):
    image_prefix = Unicode(
        "binderlab/",
        help="Only images whose name starts with this prefix (built by binderlab) can be "
        "started. Must match c.BinderLab.image_prefix.",
    ).tag(config=True)

    anonymous = Bool(
        True,
        help="""Anonymous mode (default): run the image's Jupyter server with the launch token
        from user_options instead of jupyterhub-singleuser and hub login.""",
    ).tag(config=True)

    allow_origin = Unicode(
        "*",
        help="""Origins allowed to call the session's Jupyter API from a browser (CORS).

        '*' (default) lets course pages on any site run cells with thebe; set a single
        origin to restrict it.""",
    ).tag(config=True)

    server_command = List(
        Unicode(),
        default_value=["jupyter", "lab"],
        help="Command starting the session's Jupyter server in anonymous mode; binderlab "
        "adds --ip, --port, --ServerApp.base_url and the CORS options.",
    ).tag(config=True)

    gpu_signing_key = Unicode(
        help="""Key that proves a GPU assignment came from the binder service (its hub API
        token; `binderlab up` passes it as BINDERLAB_SERVICE_TOKEN). Users can reach the hub
        API, so unsigned GPU requests are refused.""",
    ).tag(config=True)

    @default("gpu_signing_key")
    def _default_gpu_signing_key(self):
        return os.environ.get("BINDERLAB_SERVICE_TOKEN", "")

    def session_gpus(self) -> list[str]:
        """The GPU devices the binder service assigned to this session ([] for CPU)."""
        gpus = self.user_options.get("gpus") or []
        if not gpus:
            return []
        if not isinstance(gpus, list) or not all(isinstance(g, str) and GPU_ID_RE.match(g)
                                                 for g in gpus):
            raise web.HTTPError(400, "user_options.gpus must be a list of device IDs.")
        if not check_gpu_signature(self.gpu_signing_key, self.user.name, gpus,
                                   str(self.user_options.get("gpu_signature", ""))):
            raise web.HTTPError(403, "GPUs are assigned by the binder service only.")
        return gpus

    def session_labels(self, gpus: list[str]) -> dict[str, str]:
        labels = {
            LABEL_USER: self.user.name,
            LABEL_REPO_KEY: str(self.user_options.get("repo_key", "")),
            LABEL_CLIENT: str(self.user_options.get("client", "")),
        }
        if gpus:
            labels[LABEL_GPUS] = ",".join(gpus)
        return labels

    def check_user_options(self) -> None:
        """Refuse a start without a binderlab image or (anonymous mode) a launch token."""
        image = self.user_options.get("image")
        if not isinstance(image, str) or not image.startswith(self.image_prefix):
            raise web.HTTPError(403, f"Image {image!r} was not built by binderlab.")
        if self.anonymous and not TOKEN_RE.match(str(self.user_options.get("token", ""))):
            raise web.HTTPError(400, "A launch token is required (16-128 URL-safe characters).")
        content = self.user_options.get("content")
        if content is not None and not COMMIT_RE.match(str(content)):
            raise web.HTTPError(400, "user_options.content must be a full commit SHA.")

    def session_env(self, env: dict[str, str]) -> dict[str, str]:
        if self.anonymous:
            # The session's own server checks the launch token; the container gets no hub
            # credentials at all (its code is whatever the repository holds).
            env = {k: v for k, v in env.items() if not k.startswith(("JUPYTERHUB_", "JPY_"))}
            env["JUPYTER_TOKEN"] = self.user_options["token"]
        env["BINDER_REPO_URL"] = str(self.user_options.get("repo_url", ""))
        env["BINDER_REF"] = str(self.user_options.get("ref", ""))
        # as BinderHub's spawner sets them: what a session needs to link to its own launch
        for key in ("binder_ref_url", "binder_launch_host", "binder_persistent_request",
                    "binder_request"):
            if isinstance(self.user_options.get(key), str):
                env[key.upper()] = self.user_options[key]
        return env

    def anonymous_command(self) -> list[str]:
        return [
            *self.server_command,
            "--ip=0.0.0.0",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            "--ServerApp.default_url=/lab",
            f"--ServerApp.allow_origin={self.allow_origin}",
            "--ServerApp.allow_credentials=False",
            "--ServerApp.trust_xheaders=True",
        ]
