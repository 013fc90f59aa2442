# JupyterHub for binderlab on one machine behind a TLS reverse proxy:
# /etc/binderlab/jupyterhub_config.py (c.UpApp.hub_config_file in binderlab_config.py).
# The shipped wiring (DockerSpawner sessions, the binder service's role, idle culling),
# then two changes for nginx in front: the proxy listens on loopback, and JupyterHub is told
# its public URL instead of guessing it from requests.
import os

from binderlab.resources import hub_config_file

load_subconfig(str(hub_config_file()))  # noqa: F821 (provided by traitlets)
c = get_config()  # noqa: F821

# `binderlab up` passes c.HubLauncher.hub_url (the public URL) as BINDERLAB_HUB_PUBLIC_URL;
# the shipped file would listen on it. Here nginx does, and forwards to this address.
c.JupyterHub.bind_url = os.environ.get("BINDERLAB_PROXY_BIND_URL", "http://127.0.0.1:8000")
c.JupyterHub.public_url = os.environ["BINDERLAB_HUB_PUBLIC_URL"]
# Each session on an origin of its own, <user>.hub.example.org (nginx/binderlab.conf): a
# repository controls what its session serves, and on a shared origin one session's page
# could register a service worker or script the others (CVE-2024-28233's class). The hub
# is on hub.example.org, the binder service on a third name.
c.JupyterHub.subdomain_host = c.JupyterHub.public_url.rstrip("/")
