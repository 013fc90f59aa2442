# JupyterHub wiring for binderlab, one box: DockerSpawner sessions, the binder service's API
# access, idle culling. `binderlab up` starts the hub with this file and passes its
# settings in BINDERLAB_* environment variables; run by hand, the defaults below apply.
import os
import sys

env = os.environ.get
c = get_config()  # noqa: F821 (provided by JupyterHub)

state_dir = env("BINDERLAB_HUB_STATE_DIR", os.getcwd())

# --- where things listen ------------------------------------------------------------------
c.JupyterHub.bind_url = env("BINDERLAB_HUB_PUBLIC_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_bind_url = env("BINDERLAB_HUB_INTERNAL_URL", "http://127.0.0.1:8081")
c.ConfigurableHTTPProxy.api_url = env("BINDERLAB_PROXY_API_URL", "http://127.0.0.1:8001")
c.ConfigurableHTTPProxy.pid_file = os.path.join(state_dir, "proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state_dir, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state_dir, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(state_dir, "jupyterhub.pid")

# --- who can do what ----------------------------------------------------------------------
# Launches are anonymous: the binder service creates a temporary user per launch through the
# API. Nobody logs in to the hub itself.
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.services = [
    {"name": "binderlab", "api_token": env("BINDERLAB_SERVICE_TOKEN"),
     "url": None},
    {"name": "idle-culler",
     "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                 f"--timeout={env('BINDERLAB_CULL_TIMEOUT', '3600')}",
                 f"--max-age={env('BINDERLAB_MAX_AGE', '21600')}",
                 "--cull-users=true"]},
]
c.JupyterHub.services[0].pop("url")
c.JupyterHub.load_roles = [
    # only what the binder service needs: create/delete users, start/stop their servers,
    # follow spawn progress
    {"name": "binderlab-service", "services": ["binderlab"],
     "scopes": ["admin:users", "admin:servers"]},
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers",
                "delete:servers", "admin:users"]},
]
# A hub restart (upgrade, crash) leaves sessions running and reachable: the restarted hub
# finds its proxy by the pid file and takes over the routes. `binderlab up` started with
# c.UpApp.keep_sessions_on_exit = False sets BINDERLAB_HUB_CLEANUP=1 to stop them instead.
cleanup = env("BINDERLAB_HUB_CLEANUP", "0") == "1"
c.JupyterHub.cleanup_servers = cleanup
c.JupyterHub.cleanup_proxy = cleanup
c.JupyterHub.concurrent_spawn_limit = int(env("BINDERLAB_CONCURRENT_SPAWN_LIMIT", "50"))

# --- sessions -----------------------------------------------------------------------------
# the entry point binderlab.spawners.docker:BinderLabSpawner; it reads the image prefix, the
# content folder and the GPU signing key from the BINDERLAB_* variables `binderlab up` sets
c.JupyterHub.spawner_class = "binderlab"
c.DockerSpawner.remove = True
# images are built here; with a registry (c.Repo2DockerBuilder.push) they are pulled from it
# when missing, only after their name passed the image_prefix check
c.DockerSpawner.pull_policy = "ifnotpresent"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.network_name = env("BINDERLAB_SESSION_NETWORK", "bridge")
c.DockerSpawner.name_template = "binderlab-{username}"
c.DockerSpawner.prefix = "binderlab"
c.DockerSpawner.mem_limit = env("BINDERLAB_SESSION_MEM_LIMIT", "2G")
c.DockerSpawner.cpu_limit = float(env("BINDERLAB_SESSION_CPU_LIMIT", "1"))
# Sessions run whatever code a repository holds: a non-root user (repo2docker's), no Linux
# capabilities (Jupyter needs none: it listens on 8888 as that user), no privilege gain
# through setuid binaries, a bound on processes (fork bombs), no host mounts, no Docker
# socket (DockerSpawner mounts nothing unless volumes are configured).
c.DockerSpawner.extra_host_config = {
    # DockerSpawner removes stopped sessions itself; Docker's own auto-remove would also
    # remove them while the engine restores them after an engine restart (engines before
    # 24.0.8, moby/moby#46308), killing sessions that --live-restore should keep
    "auto_remove": False,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "pids_limit": int(env("BINDERLAB_SESSION_PIDS_LIMIT", "1024")),
}
c.DockerSpawner.volumes = {}
c.Spawner.start_timeout = int(env("BINDERLAB_START_TIMEOUT", "120"))
c.Spawner.http_timeout = int(env("BINDERLAB_HTTP_TIMEOUT", "60"))
