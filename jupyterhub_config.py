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
# c.BinderLab.authentication, passed on by `binderlab up` (binderlab.contract.HubSettings)
authentication = env("BINDERLAB_AUTHENTICATION", "none")
binder_service = {"name": "binderlab", "api_token": env("BINDERLAB_SERVICE_TOKEN")}
if authentication == "none":
    # Launches are anonymous: the binder service creates a temporary user per launch
    # through the API. Nobody logs in to the hub itself.
    c.JupyterHub.authenticator_class = "null"
else:
    # Logged-in mode: people log in with the operator's authenticator (set it in the file
    # c.UpApp.hub_config_overlay names, loaded last); the binder service is an OAuth client
    # of the hub, as BinderHub's authenticated mode is, and each user gets one named
    # server per repository.
    binder_service.update(
        oauth_client_id="service-binderlab",
        oauth_redirect_uri=env("BINDERLAB_SERVICE_URL", "http://127.0.0.1:8585/").rstrip("/")
        + "/oauth_callback",
        # logging in to the hub is consent enough to use its binder service
        oauth_no_confirm=True,
    )
    c.JupyterHub.allow_named_servers = True
c.JupyterHub.services = [
    binder_service,
    {"name": "idle-culler",
     # JupyterHub gives services a clean environment: pass on the BINDERLAB_MARK_* markers,
     # by which `binderlab up` (and a test run) finds every process it started, even one
     # whose parent died (binderlab/commands/processes.py)
     "environment": {k: v for k, v in os.environ.items() if k.startswith("BINDERLAB_MARK_")},
     "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                 f"--timeout={env('BINDERLAB_CULL_TIMEOUT', '3600')}",
                 f"--max-age={env('BINDERLAB_MAX_AGE', '21600')}",
                 # how often it looks; unset: the culler's own default, half the timeout
                 *([f"--cull-every={env('BINDERLAB_CULL_EVERY')}"]
                   if env("BINDERLAB_CULL_EVERY") else []),
                 # anonymous mode: every hub user is a temporary one and goes with its
                 # server. Logged-in mode: people stay (their identity and volume outlive a
                 # culled session); the binder service removes its temporary users itself
                 f"--cull-users={'true' if authentication == 'none' else 'false'}"]},
]
c.JupyterHub.load_roles = [
    # only what the binder service needs: create/delete users, start/stop their servers,
    # follow spawn progress
    {"name": "binderlab-service", "services": ["binderlab"],
     "scopes": ["admin:users", "admin:servers",
                # logged-in claims of warm sessions share them with their user
                "shares"]},
    # users: their own servers, and the binder service's login (its OAuth access scope)
    {"name": "user", "scopes": ["self", "access:services!service=binderlab"]},
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
# containers are named by DockerSpawner's default template: binderlab-<user> for a default
# server, binderlab-<user>--<server> for a logged-in user's named one (one per repository)
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
# A session's writable layer can fill the engine's disk. The engine bounds it only where its
# storage driver can (overlay2 over xfs mounted with pquota, btrfs, zfs); elsewhere (overlay2
# over ext4) the engine refuses the option, so it stays off unless the operator sets it.
if env("BINDERLAB_SESSION_DISK_LIMIT"):
    c.DockerSpawner.extra_host_config["storage_opt"] = {
        "size": env("BINDERLAB_SESSION_DISK_LIMIT")}
c.DockerSpawner.volumes = {}
c.Spawner.start_timeout = int(env("BINDERLAB_START_TIMEOUT", "120"))
c.Spawner.http_timeout = int(env("BINDERLAB_HTTP_TIMEOUT", "60"))

# --- the operator's additions (c.UpApp.hub_config_overlay): the authenticator, above all -----
if env("BINDERLAB_HUB_CONFIG_OVERLAY"):
    load_subconfig(env("BINDERLAB_HUB_CONFIG_OVERLAY"))  # noqa: F821 (provided by traitlets)
