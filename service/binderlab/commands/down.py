"""``binderlab down``: stop what ``binderlab up`` left running on purpose.

With ``c.UpApp.keep_sessions_on_exit`` (the default) a stopped ``binderlab up`` leaves the
hub's proxy and the sessions running, so a restart takes them over. This stops them: the
proxy named by the hub's pid file and the session containers of this host's image prefix.
"""

import os
from pathlib import Path

import docker
from traitlets.config import catch_config_error

from binderlab.app import BinderLab
from binderlab.commands import processes
from binderlab.contract import LABEL_USER


def _pid_from(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


class DownApp(BinderLab):
    name = "binderlab-down"
    description = """Stop what `binderlab up` keeps running after it stops
    (c.UpApp.keep_sessions_on_exit): the hub's proxy and every session of this host.

    binderlab down [--config FILE]   (the same config file as `binderlab up`)"""

    @catch_config_error
    def initialize(self, argv=None):
        # only the settings: no engine index, no providers, nothing started
        super(BinderLab, self).initialize(argv)
        self.load_config_file(self.config_file)

    def start(self):
        hub_dir = Path(self.state_dir) / "hub"
        hub_pid = _pid_from(hub_dir / "jupyterhub.pid")
        if hub_pid is not None:
            raise SystemExit(f"JupyterHub still runs (pid {hub_pid}): stop `binderlab up` "
                             "first (Ctrl-C, or systemctl stop binderlab), then run this.")
        stopped = []
        proxy_pid = _pid_from(hub_dir / "proxy.pid")
        if proxy_pid is not None:
            try:
                command = Path(f"/proc/{proxy_pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                command = b""
            proxy = processes.Process(proxy_pid, command.decode(errors="replace"))
            if processes.is_proxy(proxy):  # a stale pid file may name another process
                processes.stop([proxy])
                stopped.append(f"the proxy (pid {proxy_pid})")
            (hub_dir / "proxy.pid").unlink(missing_ok=True)
        client = None
        if self.docker_url != "none":
            client = (docker.DockerClient(base_url=self.docker_url) if self.docker_url
                      else docker.from_env())
        sessions = 0
        if client is not None:
            for c in client.containers.list(all=True, filters={"label": LABEL_USER}):
                if (c.attrs["Config"]["Image"] or "").startswith(self.image_prefix):
                    c.remove(force=True)
                    sessions += 1
            client.close()
        if sessions:
            stopped.append(f"{sessions} session(s)")
        print("Stopped " + " and ".join(stopped) + "." if stopped else
              "Nothing of binderlab up was running.")
