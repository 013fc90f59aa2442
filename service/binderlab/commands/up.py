"""``binderlab up``: JupyterHub (with its proxy) and the binder service on one box."""

import asyncio
import os
import secrets
import signal
import sys
import uuid
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Float, Unicode, default

from binderlab import contract
from binderlab.app import BinderLab
from binderlab.builders.preflight import builder_checks
from binderlab.commands import processes
from binderlab.commands.preflight import EngineFirst, require
from binderlab.contract import HubSettings
from binderlab.resources import hub_config_file
from binderlab.sessions.poolmounts import pool_mounts_root


def _secret(path: Path) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


class UpApp(EngineFirst, BinderLab):
    name = "binderlab-up"
    description = """Start everything for one box: JupyterHub (DockerSpawner,
    configurable-http-proxy, SQLite) and the binder service; print their URLs."""

    hub_config_file = Unicode(
        help="JupyterHub config file. Default: the jupyterhub_config.py shipped with binderlab.",
    ).tag(config=True)

    @default("hub_config_file")
    def _default_hub_config(self):
        return str(hub_config_file())

    hub_config_overlay = Unicode(
        "",
        help="""A JupyterHub config file loaded after hub_config_file (default: none).

        Where an operator adds to binderlab's hub wiring without copying it; above all the
        authenticator for logged-in mode (c.BinderLab.authentication), e.g.
        `c.JupyterHub.authenticator_class = "dummy"` to try it, or an oauthenticator.""",
    ).tag(config=True)

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
        a restart or upgrade does not end them (default); it says so and names the command
        that stops them (`binderlab down`). Every other process it started ends either way.
        False: stop every session and the proxy too, leaving nothing running.""",
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
                          signing_key=self.launcher.api_token,
                          authentication=self.authentication,
                          pool_mounts=str(pool_mounts_root(self) or "")).to_env(),
            contract.ENV_INSTRUCTOR_GROUP: self.instructor_group,
            "BINDERLAB_HUB_CONFIG_OVERLAY": os.path.abspath(self.hub_config_overlay)
            if self.hub_config_overlay else "",
            "CONFIGPROXY_AUTH_TOKEN": _secret(state / "proxy-token"),
            "BINDERLAB_HUB_CLEANUP": "0" if self.keep_sessions_on_exit else "1",
            # every process this run starts carries it (see commands/processes.py)
            processes.UP_MARK: self.up_id,
        }

    async def start_hub(self) -> asyncio.subprocess.Process:
        log_path = self.state_path / "jupyterhub.log"
        log = open(log_path, "ab")
        env = self.hub_env()
        self.log.info("Starting JupyterHub (log: %s)", log_path)
        # in binderlab's process group: a SIGKILL of the group (the last resort of a
        # supervisor) reaches the hub too; a terminal's Ctrl-C reaches both, which is fine
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jupyterhub", "-f", self.hub_config_file,
            cwd=env["BINDERLAB_HUB_STATE_DIR"], env=env, stdout=log, stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        self.hub = proc
        client = AsyncHTTPClient()
        deadline = asyncio.get_running_loop().time() + self.hub_start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if proc.returncode is not None or self.stopping.is_set():
                break
            try:
                await client.fetch(self.launcher.api_url("/"), request_timeout=2)
                return proc
            except Exception:
                await asyncio.sleep(0.5)
        if self.stopping.is_set():
            return proc
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit("JupyterHub did not start. The end of its log:\n" + "\n".join(tail))

    async def serve(self):
        # handlers first: a stop while the hub is still starting must stop it too (before,
        # a SIGTERM then killed this process and left the hub and its children running)
        self.up_id = uuid.uuid4().hex
        self.hub = None
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            require(await builder_checks(self.builder, self.engine), self.log)
            if not self.stopping.is_set():
                await self.start_hub()
            if not self.stopping.is_set():
                await self.run_until_stopped()
        finally:
            if getattr(self, "pool", None) is not None:
                await self.pool.close()  # through the hub API: before the hub stops
            await self.stop_everything()
            await self.shutdown()

    async def run_until_stopped(self):
        self.listen()
        print(
            "\nbinderlab is running:\n"
            f"  binder service  {self.public_url}\n"
            f"  JupyterHub      {self.launcher.hub_url.rstrip('/')}/\n"
            f"  launch a repo   {self.public_url}v2/gh/<owner>/<repo>/<ref>\n",
            flush=True,
        )
        try:
            stopped = asyncio.ensure_future(self.stopping.wait())
            hub_exit = asyncio.ensure_future(self.hub.wait())
            await asyncio.wait({stopped, hub_exit}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if hub_exit.done():
                self.log.error("JupyterHub exited (code %s); stopping.", self.hub.returncode)
        finally:
            self.http_server.stop()

    async def stop_everything(self):
        """Stop the hub, then whatever this run started that outlived it (the hub's services
        after a hub crash, say); keep only the proxy when sessions are kept on purpose."""
        hub = self.hub
        if hub is not None and hub.returncode is None:
            hub.terminate()
            try:
                await asyncio.wait_for(hub.wait(), 30)
            except TimeoutError:
                self.log.warning("JupyterHub did not stop within 30 s; killing it.")
                hub.kill()
                await hub.wait()
        left = await asyncio.to_thread(processes.marked, processes.UP_MARK, self.up_id)
        kept = [p for p in left if self.keep_sessions_on_exit and processes.is_proxy(p)]
        orphans = [p for p in left if p not in kept]
        if orphans:
            self.log.info("Stopping %d processes the hub left: %s", len(orphans),
                          "; ".join(f"{p.pid} {p.command[:80]}" for p in orphans))
            await asyncio.to_thread(processes.stop, orphans)
        if self.keep_sessions_on_exit and hub is not None:
            await self.say_what_is_kept(kept)

    async def say_what_is_kept(self, kept: list[processes.Process]) -> None:
        try:
            sessions = [s for s in await self.sessions.sessions()
                        if s.image.startswith(self.image_prefix)]
        except Exception:
            sessions = []
        if not kept and not sessions:
            return
        what = [f"the proxy (pid {', '.join(str(p.pid) for p in kept)})"] if kept else []
        if sessions:
            what.append(f"{len(sessions)} session(s)")
        config = f" --config {os.path.abspath(self.config_file)}" if os.path.exists(
            self.config_file) else ""
        print(f"binderlab stopped. Left running on purpose (c.UpApp.keep_sessions_on_exit): "
              f"{' and '.join(what)}; the next `binderlab up` takes them over. To stop them "
              f"too: binderlab down{config}", flush=True)
