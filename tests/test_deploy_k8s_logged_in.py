"""deploy/kubernetes/values-logged-in.yaml: logged-in mode's Zero to JupyterHub values,
layered over values.yaml the way helm merges value files, without a cluster.

The merged values use only keys the chart documents; their hub.config makes a real
JupyterHub config with the authenticator and named servers; the binder service's OAuth
client and the user role agree with what the service asks for (binderlab.web.auth,
binderlab.contract); the session pods and the person's PersistentVolumeClaim come from
BinderLabKubeSpawner (KubeSpawner's own manifest code) with the hub.config and hub.extraEnv
of these values, and validate against the Kubernetes models.
"""

from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from kubernetes_asyncio.client import ApiClient
from ruamel.yaml import YAML
from traitlets.config import Config

from binderlab import contract
from binderlab.spawners.kubernetes import BinderLabKubeSpawner
from binderlab.web.auth import OAUTH_CLIENT_ID
from tests.test_deploy_k8s_validate import validate
from tests.test_deploy_kubernetes import (
    COMMIT,
    FREE,
    K8S,
    Z2JH_KEYS,
    hub_config,  # noqa: F401 (a fixture: hub.extraConfig run as the chart runs it)
    kubeconfig,  # noqa: F401 (a fixture)
    objects,  # noqa: F401 (a fixture: the manifests' objects)
    options,
    service_config,  # noqa: F401 (a fixture: the service's config from its ConfigMap)
)

# keys this file adds, as documented in the chart's values.schema.yaml (chart 4.x)
LOGGED_IN_KEYS = {"hub.extraEnv"}


def helm_merge(base, overlay):
    """helm's coalescing of value files: maps merge key by key, anything else (lists
    included) is replaced by the later file; null deletes a key."""
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return overlay
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(base.get(key), value)
    return merged


@pytest.fixture(scope="module")
def values() -> dict:
    base = YAML(typ="safe").load((K8S / "values.yaml").read_text())
    overlay = YAML(typ="safe").load((K8S / "values-logged-in.yaml").read_text())
    return helm_merge(base, overlay)


def _paths(data: dict, prefix: str = ""):
    for key, value in data.items():
        path = prefix + key
        yield path
        free = path.startswith(FREE) or path + "." in FREE or path == "hub.extraEnv"
        if isinstance(value, dict) and not free:
            yield from _paths(value, path + ".")


def test_merged_values_use_only_keys_the_chart_knows(values):
    known = Z2JH_KEYS | LOGGED_IN_KEYS
    assert [p for p in _paths(values) if p not in known and not p.startswith(FREE)] == []


def test_anonymous_parts_stay_and_the_overlay_replaces_the_null_authenticator(values):
    hub = values["hub"]
    # the binder service's own role and the culler come from values.yaml unchanged
    assert hub["loadRoles"]["binderlab"] == {"services": ["binderlab"],
                                             "scopes": ["admin:users", "admin:servers"]}
    assert values["cull"]["enabled"] is True
    assert hub["config"]["JupyterHub"]["subdomain_host"] == "https://hub.example.org"
    assert hub["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"


def test_hub_config_makes_a_hub_with_the_authenticator_and_named_servers(values):
    from jupyterhub.app import JupyterHub
    from oauthenticator.generic import GenericOAuthenticator

    # z2jh hands hub.config to the hub as traitlets config, section by section
    config = Config(values["hub"]["config"])
    hub = JupyterHub(config=config)
    assert hub.authenticator_class is GenericOAuthenticator
    assert hub.allow_named_servers is True
    auth = GenericOAuthenticator(config=config)
    hub_host = values["hub"]["config"]["JupyterHub"]["subdomain_host"]
    assert auth.oauth_callback_url == hub_host + "/hub/oauth_callback"
    assert auth.username_claim == "preferred_username"
    assert auth.allow_all is True and auth.admin_users == {"teacher"}
    assert "openid" in auth.scope
    assert auth.client_secret == ""  # never in the values: the Secret, through the env
    [secret] = [e for name, e in values["hub"]["extraEnv"].items()
                if name == "OAUTH_CLIENT_SECRET"]
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hub"},
              "spec": {"containers": [{"name": "hub", "image": "hub",
                                       "env": [{"name": "OAUTH_CLIENT_SECRET", **secret}]}]}})


def test_service_oauth_client_matches_what_the_service_asks_for(values, service_config):  # noqa: F811
    service = values["hub"]["services"]["binderlab"]
    assert service["oauth_client_id"] == OAUTH_CLIENT_ID
    public_url = service_config.BinderLab.public_url
    assert service["oauth_redirect_uri"] == contract.oauth_callback_url(public_url)
    assert urlparse(service["oauth_redirect_uri"]).hostname != urlparse(
        values["hub"]["config"]["JupyterHub"]["subdomain_host"]).hostname
    # people may use the service: the access scope HubOAuth checks (binderlab.web.auth)
    scopes = values["hub"]["loadRoles"]["user"]["scopes"]
    assert f"access:services!service={contract.SERVICE_NAME}" in scopes
    assert "self" in scopes


class NamedServer(BinderLabKubeSpawner):
    """A mock spawner of a named server (JupyterHub's name comes from its database)."""

    server_name = ""

    @property
    def name(self):
        return self.server_name


async def test_session_pod_mounts_the_persons_claim(kubeconfig, hub_config, values,  # noqa: F811
                                                    monkeypatch):
    # the chart's own storage stays off (it would mount a claim per server over the home,
    # anonymous sessions included); the spawner makes the claims, told the mode by the env
    assert values["singleuser"]["storage"]["type"] == "none"
    assert values["cull"]["users"] is False
    monkeypatch.setenv("BINDERLAB_AUTHENTICATION",
                       values["hub"]["extraEnv"]["BINDERLAB_AUTHENTICATION"])
    config = Config(hub_config)
    config.KubeSpawner.update(values["hub"]["config"]["KubeSpawner"])
    claims = set()
    for server in ("gh-o-r-1a2b3c4d", "gh-o-other-5e6f7a8b"):
        spawner = NamedServer(_mock=True, config=config)
        spawner.server_name = server
        spawner.server = SimpleNamespace(base_url=f"/user/mock/{server}/")
        spawner.user_options = {**options(hub_config), "upstream": COMMIT}
        spawner.configure_session()
        pod = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
        validate({"apiVersion": "v1", "kind": "Pod", **pod})
        pvc = ApiClient().sanitize_for_serialization(spawner.get_pvc_manifest())
        validate({"apiVersion": "v1", "kind": "PersistentVolumeClaim", **pvc})
        assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert pvc["spec"]["storageClassName"] == "standard"
        [vol] = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        mounts = pod["spec"]["containers"][0]["volumeMounts"]
        assert {"name": vol["name"], "mountPath": "/persistent"} in [
            {k: m[k] for k in ("name", "mountPath")} for m in mounts]
        claims.add(pvc["metadata"]["name"])
    # one claim per person, shared by their servers (one per repository)
    assert len(claims) == 1
