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
