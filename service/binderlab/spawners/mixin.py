"""What every binderlab spawner does, whatever runs the container (Docker, Kubernetes).

A mixin for JupyterHub spawners: the launch-token check, the session's environment and,
in anonymous mode, the command that starts the image's own Jupyter server with the launch
token instead of hub authentication (temporary users cannot log in to the hub; see
PROTOCOL.md, "How the session checks that token").
"""

from tornado import web
from traitlets import Bool, List, Unicode, default
from traitlets.config import Configurable

from binderlab.contract import HubSettings, OptionsError, SessionOptions, image_prefix_trait


class BinderLabSessionMixin(Configurable):
    image_prefix = image_prefix_trait()

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

    @default("image_prefix")
    def _default_image_prefix(self):
        return HubSettings.from_env().image_prefix

    @default("gpu_signing_key")
    def _default_gpu_signing_key(self):
        return HubSettings.from_env().signing_key

    def check_user_options(self) -> SessionOptions:
        """binderlab's user_options, checked (image prefix, launch token in anonymous mode,
        content commit, signed GPUs); a refusal becomes the hub's HTTP answer."""
        try:
            self.binder_options = SessionOptions.from_user_options(
                self.user_options, image_prefix=self.image_prefix, username=self.user.name,
                signing_key=self.gpu_signing_key, need_token=self.anonymous)
        except OptionsError as e:
            raise web.HTTPError(e.status, str(e)) from None
        return self.binder_options

    def session_env(self, env: dict[str, str]) -> dict[str, str]:
        options = self.check_user_options()
        if self.anonymous:
            # The session's own server checks the launch token; the container gets no hub
            # credentials at all (its code is whatever the repository holds).
            env = {k: v for k, v in env.items() if not k.startswith(("JUPYTERHUB_", "JPY_"))}
            env["JUPYTER_TOKEN"] = options.token
        env["BINDER_REPO_URL"] = options.repo_url
        env["BINDER_REF"] = options.ref
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
