# binderlab on one GPU workstation, for production: /etc/binderlab/binderlab_config.py.
# Read by `binderlab up --config /etc/binderlab/binderlab_config.py` (binderlab.service).
# Secrets are not kept here: they come from /etc/binderlab/binderlab.env (mode 0600), which
# systemd reads for the service. Every option: `binderlab up --help-all`.
import os

c = get_config()  # noqa: F821 (provided by traitlets when the file is loaded)

# ---- where users reach it ------------------------------------------------------------------
# Behind nginx (nginx/binderlab.conf): the binder service on binder.example.org, JupyterHub
# on hub.example.org and each session on <user>.hub.example.org, an origin of its own (a
# session serves what its repository holds; it must not share an origin with the service's
# pages or other sessions). Both listen on loopback only; nginx terminates TLS.
PUBLIC_URL = "https://binder.example.org/"
HUB_URL = "https://hub.example.org/"

c.BinderLab.ip = "127.0.0.1"  # only nginx reaches it (it trusts X-Forwarded-For from it)
c.BinderLab.port = 8585  # nginx's upstream binderlab_service
c.BinderLab.base_url = "/"  # nginx passes every path through unchanged
c.BinderLab.public_url = PUBLIC_URL  # in badges, links and binder_launch_host
# nginx on this machine forwards the client's address; without this every user would share
# 127.0.0.1's rate limit
c.BinderLab.trusted_proxies = ["127.0.0.1/32", "::1/128"]
# /health fails while the session network or the egress rules are missing: binderlab.service
# runs `python -m binderlab.platform.isolation apply` as root before each start, which
# writes what it found here
c.BinderLab.isolation_status_file = "/run/binderlab-isolation.json"
# JupyterHub's public URL; session URLs come from the hub (https://<name>.hub.example.org/
# user/<name>/, jupyterhub_config.py sets c.JupyterHub.subdomain_host from this)
c.HubLauncher.hub_url = HUB_URL
# the hub's API through its proxy on loopback (nginx's upstream binderlab_hub), not
# through TLS and back
c.HubLauncher.hub_api_url = "http://127.0.0.1:8000/hub/api"
# JupyterHub's wiring for this layout: the shipped one, with its proxy on 127.0.0.1:8000
# and the public URL above (deploy/docker/jupyterhub_config.py, installed beside this file)
c.UpApp.hub_config_file = "/etc/binderlab/jupyterhub_config.py"
c.UpApp.hub_internal_url = "http://127.0.0.1:8081"  # the hub itself, behind its proxy
c.UpApp.proxy_api_url = "http://127.0.0.1:8001"  # the proxy's REST API

# ---- state and images ------------------------------------------------------------------------
c.BinderLab.state_dir = "/var/lib/binderlab"  # systemd's StateDirectory; back it up
c.BinderLab.image_prefix = "binderlab/"  # the session spawner starts nothing else
# disk for environment images (GB); least recently launched go first, never one in use
c.BinderLab.image_disk_budget_gb = 200
c.Repo2DockerBuilder.build_timeout = 3600  # seconds per build

# ---- repositories ----------------------------------------------------------------------------
c.BinderLab.repo_providers = ["gh", "gl", "git", "gist"]
c.GitRepoProvider.allowed_protocols = ["https"]
# repository hosts may not resolve into loopback, private, link-local (cloud metadata) or
# CGNAT ranges: the default; list your own networks here only if you must
# c.BinderLab.blocked_networks = [...]

# GitHub push webhook (prebuild each push) at https://binder.example.org/hooks/github;
# empty turns it off
c.BinderLab.github_webhook_secret = os.environ.get("BINDERLAB_WEBHOOK_SECRET", "")

# ---- GPUs (NVIDIA Container Toolkit, see README.md) ----------------------------------------
c.BinderLab.gpu_inventory_class = "nvidia-smi"  # none found: CPU sessions only
c.GPUAllocator.max_gpus_per_session = 1
c.GPUAllocator.max_gpus_per_user = 1
c.GPUAllocator.gpu_max_age = 4 * 3600  # seconds a GPU session may run
c.GPUAllocator.gpu_idle_timeout = 20 * 60  # seconds a GPU session may stay idle
