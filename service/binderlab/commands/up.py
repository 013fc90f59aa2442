"""``binderlab up``: JupyterHub (with its proxy) and the binder service on one box."""

import asyncio
import os
import secrets
import sys
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Float, Unicode, default

from binderlab.app import BinderLab
from binderlab.contract import HubSettings
from binderlab.resources import hub_config_file


def _secret(path: Path) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


class UpApp(BinderLab):
    name = "binderlab-up"
    description = """Start everything for one box: JupyterHub (DockerSpawner,
    configurable-http-proxy, SQLite) and the binder service; print their URLs."""

    hub_config_file = Unicode(
        help="JupyterHub config file. Default: the jupyterhub_config.py shipped with binderlab.",
    ).tag(config=True)

    @default("hub_config_file")
    def _default_hub_config(self):
        return str(hub_config_file())

    hub_internal_url = Unicode(
        "http://127.0.0.1:8081",
        help="Where the hub itself listens (behind its proxy). Default http://127.0.0.1:8081.",
    ).tag(config=True)

    proxy_api_url = Unicode(
        "http://127.0.0.1:8001",
        help="The proxy's REST API (configurable-http-proxy). Default http://127.0.0.1:8001.",
    ).tag(config=True)

    keep_sessions_on_exit = Bool(
        True,
        help="""When `binderlab up` stops, leave running sessions (and the hub's proxy) up, so
        a restart or upgrade does not end them (default). False: stop every session.""",
    ).tag(config=True)

    hub_start_timeout = Float(
        60, help="Seconds JupyterHub may take to answer after it starts (default 60)."
    ).tag(config=True)

    def hub_env(self) -> dict[str, str]:
        state = self.state_path / "hub"
        state.mkdir(exist_ok=True, mode=0o700)
        if not self.launcher.api_token:
            self.launcher.api_token = _secret(state / "binderlab-service-token")
        return {
            **os.environ,
            "BINDERLAB_HUB_STATE_DIR": str(state),
            "BINDERLAB_HUB_PUBLIC_URL": self.launcher.hub_url,
            "BINDERLAB_HUB_INTERNAL_URL": self.hub_internal_url,
            "BINDERLAB_PROXY_API_URL": self.proxy_api_url,
            "BINDERLAB_SERVICE_URL": self.public_url,
            # what the spawners must share with this service (binderlab.contract)
            **HubSettings(image_prefix=self.image_prefix,
                          content_dir=str(self.state_path / "content"),
                          signing_key=self.launcher.api_token).to_env(),
            "CONFIGPROXY_AUTH_TOKEN": _secret(state / "proxy-token"),
            "BINDERLAB_HUB_CLEANUP": "0" if self.keep_sessions_on_exit else "1",
        }

    async def start_hub(self) -> asyncio.subprocess.Process:
        log_path = self.state_path / "jupyterhub.log"
        log = open(log_path, "ab")
        env = self.hub_env()
        self.log.info("Starting JupyterHub (log: %s)", log_path)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jupyterhub", "-f", self.hub_config_file,
            cwd=env["BINDERLAB_HUB_STATE_DIR"], env=env, stdout=log, stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        client = AsyncHTTPClient()
        deadline = asyncio.get_running_loop().time() + self.hub_start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if proc.returncode is not None:
                break
            try:
                await client.fetch(self.launcher.api_url("/"), request_timeout=2)
                return proc
            except Exception:
                await asyncio.sleep(0.5)
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        if proc.returncode is None:
            proc.terminate()
        raise SystemExit("JupyterHub did not start. The end of its log:\n" + "\n".join(tail))

    async def serve(self):
        hub = await self.start_hub()
        self.listen()
        print(
            "\nbinderlab is running:\n"
            f"  binder service  {self.public_url}\n"
            f"  JupyterHub      {self.launcher.hub_url.rstrip('/')}/\n"
            f"  launch a repo   {self.public_url}v2/gh/<owner>/<repo>/<ref>\n",
            flush=True,
        )
        try:
            stopped = asyncio.ensure_future(super().serve_until_stopped())
            hub_exit = asyncio.ensure_future(hub.wait())
            await asyncio.wait({stopped, hub_exit}, return_when=asyncio.FIRST_COMPLETED)
            if hub_exit.done():
                self.log.error("JupyterHub exited (code %s); stopping.", hub.returncode)
        finally:
            await self.shutdown()
            if hub.returncode is None:
                hub.terminate()
                try:
                    await asyncio.wait_for(hub.wait(), 30)
                except TimeoutError:
                    hub.kill()
