"""deploy/kubernetes without a cluster and without helm.

- Every object of every manifest is checked field by field against the Kubernetes API
  models (tests/test_deploy_k8s_validate.py); the pieces must also agree with each other
  (names, labels, ports, secrets, URLs) and with binderlab's options.
- The Zero to JupyterHub values: the keys must be ones the chart documents, the
  hub.extraConfig Python compiles and, run as the chart runs it, makes the hub use
  BinderLabKubeSpawner. `z2jh.get_secret_value` (the chart's helper module, in the hub image)
  is stood in for by a one-line function.
- Session pods come from KubeSpawner's own manifest code with that config; build pods from
  KubernetesBuilder.pod_manifest with the service's config from the ConfigMap.
- NetworkPolicies are evaluated for the traffic that matters (cloud metadata, private
  ranges, the build daemon). The sessions' policy is rendered from the values the way the
  chart's `jupyterhub.networkPolicy.renderEgressRules` helper does (mirrored below).
"""

import ipaddress
import os
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from ruamel.yaml import YAML
from traitlets.config import Config, PyFileConfigLoader

from binderlab.builders.kubernetes import KubernetesBuilder
from binderlab.spawners.kubernetes import BinderLabKubeSpawner
from tests.test_deploy_k8s_validate import (
    egress_allowed,
    ingress_allowed,
    validate,
)
from tests.test_kubespawner import KUBECONFIG

TOP = Path(__file__).resolve().parent.parent
K8S = TOP / "deploy" / "kubernetes"
HUB_TOKEN = "token-from-the-hub-secret"
COMMIT = "c" * 40


def load_all(path: Path) -> list[dict]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc is not None]


def manifest_files() -> list[Path]:
    # values*.yaml are Zero to JupyterHub values (tested below), not Kubernetes objects
    return sorted(p for p in K8S.rglob("*.yaml") if not p.name.startswith("values"))


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    found = {}
    for path in manifest_files():
        for obj in load_all(path):
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = obj
    return found


@pytest.fixture(scope="module")
def values() -> dict:
    return YAML(typ="safe").load((K8S / "values.yaml").read_text())


# ---- every manifest object is a valid Kubernetes object -----------------------------------

@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_object_validates(path):
    docs = load_all(path)
    assert docs, f"{path} holds no objects"
    for obj in docs:
        validate(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "binderlab"
        assert "namespace" not in obj["metadata"]  # kubectl apply -n <the z2jh namespace>


def test_the_manifests_hold_what_the_service_needs(objects):
    kinds = {kind for kind, _ in objects}
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service",
            "NetworkPolicy", "Ingress"} <= kinds
    assert "Secret" not in kinds  # secrets are referenced, never committed


# ---- the service's configuration ----------------------------------------------------------

@pytest.fixture(scope="module")
def service_config(objects, tmp_path_factory) -> Config:
    """The ConfigMap's binderlab_config.py, loaded the way `binderlab serve --config` does."""
    code = objects[("ConfigMap", "binderlab-config")]["data"]["binderlab_config.py"]
    compile(code, "binderlab_config.py", "exec")
    path = tmp_path_factory.mktemp("config") / "binderlab_config.py"
    path.write_text(code)
    old = os.environ.get("JUPYTERHUB_API_TOKEN")
    os.environ["JUPYTERHUB_API_TOKEN"] = HUB_TOKEN  # from the hub Secret in the pod
    try:
        return PyFileConfigLoader(path.name, str(path.parent)).load_config()
    finally:
        if old is None:
            os.environ.pop("JUPYTERHUB_API_TOKEN")
        else:
            os.environ["JUPYTERHUB_API_TOKEN"] = old


def deployment(objects) -> dict:
    return objects[("Deployment", "binderlab")]


def container(objects) -> dict:
    [main] = deployment(objects)["spec"]["template"]["spec"]["containers"]
    return main


def test_service_config_selects_the_kubernetes_builder(service_config, tmp_path):
    from binderlab.app import BinderLab

    app = BinderLab(config=service_config)
    assert app.builder_class is KubernetesBuilder
    assert app.base_url == "/"
    builder = KubernetesBuilder(engine=None, work_dir=tmp_path, config=service_config)
    assert builder.daemon == "docker" and builder.build_timeout == 3600
    assert service_config.HubLauncher.api_token == HUB_TOKEN


def test_service_config_agrees_with_the_manifests_and_values(service_config, objects, values):
    cfg = service_config
    main = container(objects)
    # the command reads the ConfigMap where it is mounted
    assert main["command"][:2] == ["binderlab", "serve"]
    config_path = main["command"][main["command"].index("--config") + 1]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts[config_path]["name"] == "config"
    # the service listens where the Service and probes send traffic
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["http"] == cfg.BinderLab.port
    builder = KubernetesBuilder(engine=None, work_dir=Path("."), config=cfg)
    assert ports["context"] == builder.context_port
    assert cfg.BinderLab.ip == "0.0.0.0"
    # state on the emptyDir
    assert mounts[cfg.BinderLab.state_dir]["name"] == "state"
    # one image for the hub, the service and the build pods
    hub_image = f"{values['hub']['image']['name']}:{values['hub']['image']['tag']}"
    assert main["image"] == hub_image == cfg.KubernetesBuilder.build_image
    # the build daemon is the dind Service
    dind = urlparse(cfg.KubernetesBuilder.daemon_url)
    service = objects[("Service", dind.hostname)]
    assert dind.port in [p["port"] for p in service["spec"]["ports"]]
    # the service has no engine of its own on the cluster: sessions are read from pods
    assert cfg.BinderLab.docker_url == "none"
    assert cfg.BinderLab.session_tracker_class == "kubernetes"
    # the hub API in-cluster: z2jh's Service "hub", port 8081
    hub_api = urlparse(cfg.HubLauncher.hub_api_url)
    assert (hub_api.hostname, hub_api.port, hub_api.path) == ("hub", 8081, "/hub/api")
    # the token the hub generated for the service named in values.yaml
    env = {e["name"]: e for e in main["env"]}
    ref = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "hub", "key": "hub.services.binderlab.apiToken"}
    assert "binderlab" in values["hub"]["services"]
    # registry credentials: one dockerconfigjson Secret for push, pull and look-ups
    secret = cfg.KubernetesBuilder.registry_secret
    volumes = {v["name"]: v for v in deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["registry"]["secret"]["secretName"] == secret
    assert mounts[env["DOCKER_CONFIG"]["value"]]["name"] == "registry"
    assert secret in values["imagePullSecrets"]
    assert secret in cfg.KubernetesBuilder.image_pull_secrets
    # build pods are created in the service's own namespace (downward API)
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # the webhook secret is optional
    assert env["BINDERLAB_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_image_prefix_is_the_same_for_service_and_spawner(service_config, hub_config):
    prefix = service_config.BinderLab.image_prefix
    assert hub_config.BinderLabKubeSpawner.image_prefix == prefix
    # the binderlab image itself is not under the prefix: sessions cannot run it
    assert not service_config.KubernetesBuilder.build_image.startswith(prefix)


def test_rbac_allows_exactly_what_the_builder_calls(objects):
    """The builder calls create/read/delete pod and read its log (see FakeCoreV1Api)."""
    role = objects[("Role", "binderlab-builds")]
    grants = {(res, verb) for rule in role["rules"] for res in rule["resources"]
              for verb in rule["verbs"]}
    assert {("pods", "create"), ("pods", "get"), ("pods", "delete"),
            ("pods/log", "get")} <= grants
    assert {res for res, _ in grants} == {"pods", "pods/log"}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    binding = objects[("RoleBinding", "binderlab-builds")]
    assert binding["roleRef"]["name"] == "binderlab-builds"
    [subject] = binding["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "binderlab"}
    spec = deployment(objects)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "binderlab"
    assert ("ServiceAccount", "binderlab") in objects


def test_service_pod_is_locked_down(objects):
    spec = deployment(objects)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    ctx = container(objects)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"]
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert container(objects)["resources"]["limits"]["memory"]
    # may reach the hub API through z2jh's hub NetworkPolicy
    labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"


def test_ingress_gives_service_hub_and_sessions_origins_of_their_own(objects, service_config,
                                                                     values):
    ingress = objects[("Ingress", "binderlab")]
    routes = {r["host"]: {p["path"]: p["backend"]["service"]["name"]
                          for p in r["http"]["paths"]} for r in ingress["spec"]["rules"]}
    public = urlparse(service_config.BinderLab.public_url)
    hub = urlparse(service_config.HubLauncher.hub_url)
    subdomain_host = urlparse(values["hub"]["config"]["JupyterHub"]["subdomain_host"])
    assert public.scheme == hub.scheme == subdomain_host.scheme == "https"
    assert hub.hostname == subdomain_host.hostname != public.hostname
    # the service's name serves nothing of the hub's (no /hub/, no /user/)
    assert routes == {public.hostname: {"/": "binderlab"},
                      hub.hostname: {"/": "proxy-public"},
                      f"*.{hub.hostname}": {"/": "proxy-public"}}
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert tls_hosts == set(routes)
    assert objects[("Service", "binderlab")]["spec"]["ports"][0]["name"] == "http"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE


# ---- the Zero to JupyterHub values ----------------------------------------------------------

# the keys used, as documented in the chart's values.schema.yaml (chart 4.x); maps under
# FREE are the chart's own free-form ones (traitlets config, service and role definitions)
Z2JH_KEYS = {
    "imagePullSecrets", "hub", "hub.image", "hub.image.name", "hub.image.tag", "hub.config",
    "hub.services", "hub.loadRoles", "hub.extraConfig", "proxy", "proxy.service",
    "proxy.service.type", "singleuser", "singleuser.storage", "singleuser.storage.type",
    "singleuser.memory", "singleuser.memory.limit", "singleuser.memory.guarantee",
    "singleuser.cpu", "singleuser.cpu.limit", "singleuser.cpu.guarantee",
    "singleuser.networkPolicy", "singleuser.networkPolicy.enabled",
    "singleuser.networkPolicy.egressAllowRules", "singleuser.networkPolicy.egress",
    "singleuser.networkPolicy.egressAllowRules.cloudMetadataServer",
    "singleuser.networkPolicy.egressAllowRules.privateIPs",
    "singleuser.networkPolicy.egressAllowRules.nonPrivateIPs",
    "singleuser.networkPolicy.egressAllowRules.dnsPortsPrivateIPs",
    "singleuser.networkPolicy.egressAllowRules.dnsPortsKubeSystemNamespace",
    "singleuser.networkPolicy.egressAllowRules.dnsPortsCloudMetadataServer",
    "singleuser.cloudMetadata", "singleuser.cloudMetadata.blockWithIptables",
    "cull", "cull.enabled", "cull.users", "cull.timeout", "cull.maxAge", "cull.every",
    "prePuller", "prePuller.hook", "prePuller.hook.enabled", "prePuller.continuous",
    "prePuller.continuous.enabled", "scheduling", "scheduling.userScheduler",
    "scheduling.userScheduler.enabled",
}
FREE = ("hub.config.", "hub.services.", "hub.loadRoles.", "hub.extraConfig.")


def _paths(data: dict, prefix: str = ""):
    for key, value in data.items():
        path = prefix + key
        yield path
        if isinstance(value, dict) and not path.startswith(FREE) and path + "." not in FREE:
            yield from _paths(value, path + ".")


def test_values_use_only_keys_the_chart_knows(values):
    unknown = [p for p in _paths(values) if p not in Z2JH_KEYS and not p.startswith(FREE)]
    assert unknown == []


def test_values_stay_small_enough_to_review():
    assert len((K8S / "values.yaml").read_text().splitlines()) <= 120


def test_values_register_the_service_with_its_roles_and_the_culler(values):
    hub = values["hub"]
    assert hub["loadRoles"]["binderlab"] == {"services": ["binderlab"],
                                             "scopes": ["admin:users", "admin:servers"]}
    assert hub["config"]["JupyterHub"]["authenticator_class"] == "null"  # a string, not None
    cull = values["cull"]
    assert cull["enabled"] is True and cull["users"] is True
    assert cull["timeout"] == 3600 and cull["maxAge"] == 21600
    assert values["singleuser"]["storage"]["type"] == "none"


@pytest.fixture(scope="module")
def hub_config(values) -> Config:
    """hub.extraConfig run as the chart runs it: in the hub's jupyterhub_config.py, with
    ``c`` and the chart's z2jh helper module importable."""
    code = values["hub"]["extraConfig"]["binderlab.py"]
    compiled = compile(code, "values.yaml:hub.extraConfig.binderlab.py", "exec")
    z2jh = types.ModuleType("z2jh")
    z2jh.get_secret_value = {"hub.services.binderlab.apiToken": HUB_TOKEN}.__getitem__
    saved = sys.modules.get("z2jh")
    sys.modules["z2jh"] = z2jh
    try:
        c = Config()
        exec(compiled, {"c": c})
    finally:
        if saved is None:
            sys.modules.pop("z2jh")
        else:
            sys.modules["z2jh"] = saved
    return c


def test_extra_config_makes_the_hub_use_binderlabs_spawner(hub_config):
    # resolved the way the hub does it (its spawner_class trait looks up entry points)
    from jupyterhub.app import JupyterHub

    hub = JupyterHub(spawner_class=hub_config.JupyterHub.spawner_class)
    assert hub.spawner_class is BinderLabKubeSpawner
    assert hub_config.BinderLabKubeSpawner.gpu_signing_key == HUB_TOKEN
    assert callable(hub_config.KubeSpawner.modify_pod_hook)


# ---- the session pod (KubeSpawner's own manifest code) -----------------------------------

@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)  # never contacted: generating a manifest needs no API call
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


async def session_pod(hub_config: Config, values: dict, options: dict) -> dict:
    config = Config(hub_config)
    # what z2jh's jupyterhub_config.py does with the singleuser keys used in values.yaml
    singleuser = values["singleuser"]
    config.KubeSpawner.mem_limit = singleuser["memory"]["limit"]
    config.KubeSpawner.mem_guarantee = singleuser["memory"]["guarantee"]
    config.KubeSpawner.cpu_limit = float(singleuser["cpu"]["limit"])
    config.KubeSpawner.cpu_guarantee = float(singleuser["cpu"]["guarantee"])
    spawner = BinderLabKubeSpawner(_mock=True, config=config)
    spawner.server = SimpleNamespace(base_url="/user/binder-0123/")
    spawner.user_options = dict(options)
    spawner.configure_session()  # what start() does before KubeSpawner makes the pod
    pod = await spawner.get_pod_manifest()
    pod = spawner.modify_pod_hook(spawner, pod)  # what KubeSpawner._start does next
    data = ApiClient().sanitize_for_serialization(pod)
    validate({"apiVersion": "v1", "kind": "Pod", **data})
    return data


CONTENT_URL = "http://10.0.0.5:8586/content/" + "t" * 43 + ".tar"


def options(hub_config, gpus: list[str] | None = None) -> dict:
    from binderlab.contract import sign_gpus

    prefix = hub_config.BinderLabKubeSpawner.image_prefix
    opts = {"image": f"{prefix}env-{'b' * 64}", "token": "a-launch-token-of-enough-length",
            "repo_url": "https://github.com/o/r", "ref": COMMIT, "content": COMMIT,
            "content_url": CONTENT_URL}
    if gpus:
        opts["gpus"] = gpus
        opts["gpu_signature"] = sign_gpus(HUB_TOKEN, "mock@name", gpus)
    return opts


@pytest.mark.parametrize("url", ["", "http://169.254.169.254:8586/latest/meta-data",
                                 "https://github.com/o/r.git",
                                 "http://10.0.0.5:8586/content/x.tar",
                                 "http://10.0.0.5:80/content/" + "a" * 43 + ".tar"])
async def test_session_pod_refuses_content_from_elsewhere(kubeconfig, hub_config, values, url):
    from tornado import web

    with pytest.raises(web.HTTPError) as info:
        await session_pod(hub_config, values, {**options(hub_config), "content_url": url})
    assert info.value.status_code == 400


def test_sessions_reach_the_content_port_and_nothing_else_of_the_service(values, objects):
    policies = [session_policy(values)]
    service = objects[("Deployment", "binderlab")]["spec"]["template"]["metadata"]["labels"]
    assert egress_allowed(policies, SESSION, peer_labels=service, port=8586)
    assert not egress_allowed(policies, SESSION, peer_labels=service, port=8585)
    service_policies = [o for (kind, _), o in objects.items() if kind == "NetworkPolicy"]
    assert ingress_allowed(service_policies, service, SESSION, 8586)


async def test_gpu_session_pod_gets_the_gpu_and_the_gpu_pool(kubeconfig, hub_config, values):
    pod = await session_pod(hub_config, values, options(hub_config, ["0"]))
    notebook = pod["spec"]["containers"][0]
    assert notebook["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert int(notebook["resources"]["limits"]["memory"]) == 2 * 1024**3  # singleuser 2G
    assert pod["spec"]["nodeSelector"] == {"binderlab/gpu": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["spec"]["tolerations"]


async def test_cpu_session_pod_stays_off_the_gpu_pool(kubeconfig, hub_config, values):
    pod = await session_pod(hub_config, values, options(hub_config))
    notebook = pod["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in notebook["resources"].get("limits", {})
    assert "binderlab/gpu" not in (pod["spec"].get("nodeSelector") or {})
    assert not any(t.get("key") == "nvidia.com/gpu" for t in pod["spec"].get("tolerations", []))


async def test_session_pod_has_the_content_init_container_locked_down(kubeconfig, hub_config,
                                                                      values):
    pod = await session_pod(hub_config, values, options(hub_config))
    init = {c["name"]: c for c in pod["spec"]["initContainers"]}["content-overlay"]
    ctx = init["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["value"] for e in init["env"]}
    # the files the service fetched through its guard, not a git fetch inside the cluster
    assert env["BINDER_CONTENT_URL"] == CONTENT_URL
    assert "git" not in init["command"][-1] and "BINDER_REPO_URL" not in env
    notebook = pod["spec"]["containers"][0]
    assert pod["spec"]["containers"][0]["image"].startswith(
        hub_config.BinderLabKubeSpawner.image_prefix)
    assert notebook["securityContext"].get("allowPrivilegeEscalation") is False
    assert not any(e["name"].startswith("JUPYTERHUB_") for e in notebook["env"])


# ---- network policies ----------------------------------------------------------------------

METADATA = "169.254.169.254"
SESSION = {"component": "singleuser-server", "app": "jupyterhub", "release": "hub"}


def render_egress_rules(netpol: dict, metadata_ip: str = METADATA) -> list[dict]:
    """z2jh's `jupyterhub.networkPolicy.renderEgressRules` (templates/_helpers-netpol.tpl,
    chart 3.x/4.x), mirrored: no helm binary here to render the chart itself."""
    rules = netpol.get("egressAllowRules", {})
    private = [{"ipBlock": {"cidr": c}} for c in ("10.0.0.0/8", "172.16.0.0/12",
                                                  "192.168.0.0/16")]
    out = []
    if rules.get("dnsPortsCloudMetadataServer") or rules.get("dnsPortsKubeSystemNamespace") \
            or rules.get("dnsPortsPrivateIPs"):
        to = []
        if rules.get("dnsPortsCloudMetadataServer"):
            to.append({"ipBlock": {"cidr": f"{metadata_ip}/32"}})
        if rules.get("dnsPortsKubeSystemNamespace"):
            to.append({"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "kube-system"}}})
        if rules.get("dnsPortsPrivateIPs"):
            to += private
        out.append({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    "to": to})
    if rules.get("nonPrivateIPs"):
        out.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [
            "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", f"{metadata_ip}/32"]}}]})
    if rules.get("privateIPs"):
        out.append({"to": private})
    if rules.get("cloudMetadataServer"):
        out.append({"to": [{"ipBlock": {"cidr": f"{metadata_ip}/32"}}]})
    out += netpol.get("egress", [])
    return out


def session_policy(values) -> dict:
    netpol = values["singleuser"]["networkPolicy"]
    assert netpol["enabled"] is True
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "singleuser"},
        "spec": {
            "podSelector": {"matchLabels": {"component": "singleuser-server",
                                            "app": "jupyterhub", "release": "hub"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"port": "notebook-port"}], "from": [{"podSelector": {
                "matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}}]}],
            # the chart's fixed rule (to the hub), then the rendered ones
            "egress": [{"ports": [{"port": 8081}], "to": [{"podSelector": {"matchLabels": {
                "component": "hub", "app": "jupyterhub", "release": "hub"}}}]},
                *render_egress_rules(netpol)],
        },
    }
    validate(policy)
    return policy


def test_sessions_cannot_reach_the_metadata_server_or_private_ranges(values, objects):
    policies = [session_policy(values)]
    # cloud metadata: its HTTP API is blocked (z2jh lets DNS through to it, as it documents
    # for clusters whose DNS lives there: dnsPortsCloudMetadataServer)
    for port in (80, 443, 8080):
        assert not egress_allowed(policies, SESSION, METADATA, port)
    assert egress_allowed(policies, SESSION, METADATA, 53, "UDP")
    # the internet
    assert egress_allowed(policies, SESSION, "140.82.112.3", 443)  # e.g. a git host
    # private ranges: other pods, node addresses, the build daemon's Docker API
    for ip in ("10.0.3.7", "172.20.0.5", "192.168.1.10"):
        assert not egress_allowed(policies, SESSION, ip, 2376)
        assert not egress_allowed(policies, SESSION, ip, 443)
    # and the build daemon refuses sessions from its side too
    all_policies = [o for (kind, _), o in objects.items() if kind == "NetworkPolicy"]
    dind = objects[("Deployment", "binderlab-dind")]["spec"]["template"]["metadata"]["labels"]
    assert not ingress_allowed(all_policies, dind, SESSION, 2376)


def test_iptables_block_stays_on(values):
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is True


def test_build_pods_reach_what_they_need_and_nothing_private(objects, service_config,
                                                              tmp_path):
    policies = [o for (kind, _), o in objects.items() if kind == "NetworkPolicy"]
    builder = KubernetesBuilder(engine=None, work_dir=tmp_path, config=service_config)
    image = f"{service_config.BinderLab.image_prefix}env-{'d' * 64}"
    pod = builder.pod_manifest(image, {"binderlab.key": "d" * 64}, "http://10.0.0.5:8586/x")
    validate(pod)
    build = pod["metadata"]["labels"]
    service = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    dind = objects[("Deployment", "binderlab-dind")]["spec"]["template"]["metadata"]["labels"]
    # selected by the build policy at all
    assert any(p["metadata"]["name"] == "binderlab-build" for p in policies)
    assert egress_allowed(policies, build, peer_labels=service, port=builder.context_port)
    assert ingress_allowed(policies, service, build, builder.context_port)
    assert egress_allowed(policies, build, peer_labels=dind, port=2376)
    assert ingress_allowed(policies, dind, build, 2376)
    assert ingress_allowed(policies, dind, service, 2376)  # the service's engine calls
    assert egress_allowed(policies, build, "10.0.0.53", 53, "UDP")
    assert egress_allowed(policies, build, "151.101.0.223", 443)  # a public registry
    for labels in (build, dind):  # build steps run in the daemon: same limits there
        assert not egress_allowed(policies, labels, METADATA, 80)
        assert not egress_allowed(policies, labels, "10.0.3.7", 443)
        assert not egress_allowed(policies, labels, "100.100.100.200", 80)  # Alibaba's
    # nothing gets into a build pod; build pods and sessions (their content) get the
    # context port, at unguessable URLs
    assert not ingress_allowed(policies, build, service, 8585)
    assert ingress_allowed(policies, service, SESSION, builder.context_port)
    assert not ingress_allowed(policies, service, {"app": "other"}, builder.context_port)
    assert ingress_allowed(policies, service, {"app": "ingress-nginx"}, 8585)


def test_private_ranges_in_policies_are_real_private_ranges(objects):
    for (kind, _name), obj in objects.items():
        if kind != "NetworkPolicy":
            continue
        for rule in obj["spec"].get("egress", []):
            for peer in rule.get("to", []):
                for cidr in peer.get("ipBlock", {}).get("except", []):
                    net = ipaddress.ip_network(cidr)
                    assert net.is_private or net.subnet_of(ipaddress.ip_network(
                        "100.64.0.0/10")), cidr


# ---- the service with the ConfigMap's configuration, up to the cluster's door ---------------

@pytest.mark.docker
@pytest.mark.slow
def test_service_runs_the_cluster_path_up_to_the_api_server(objects, git_server, tmp_path,
                                                           docker_client):
    """`binderlab serve` with the ConfigMap's binderlab_config.py (ports, state, engine and
    registry moved to this machine) resolves, fingerprints with the KubernetesBuilder's
    repo2docker options, asks the real registry (docker-registry, credentials from
    DOCKER_CONFIG as the Deployment mounts them), prepares the context and tries to create
    the build pod: with no cluster (a kubeconfig naming 127.0.0.1:9) the launch fails with
    that reason, which is what a user would see."""
    import subprocess
    import time

    import requests

    from tests.harness.sse import follow
    from tests.test_kubebuilder import Registry, free_port

    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry")
    try:
        port = free_port()
        config = tmp_path / "binderlab_config.py"
        code = objects[("ConfigMap", "binderlab-config")]["data"]["binderlab_config.py"]
        config.write_text(code + f"""
# ---- test overrides: this machine instead of the cluster ----
c.BinderLab.ip = "127.0.0.1"
c.BinderLab.port = {port}
c.BinderLab.state_dir = {str(tmp_path / 'state')!r}
c.BinderLab.docker_url = ""
c.BinderLab.image_prefix = "{registry.host}/binderlab-envs-test/"
c.BinderLab.allow_build_only = True
c.BinderLab.blocked_networks = []
c.GitRepoProvider.allowed_protocols = ["https", "http"]
c.GitHubRepoProvider.host = {git_server.url!r}
c.LaunchLimits.per_client = 0
c.LaunchLimits.per_client_with_page = 0
c.HubLauncher.hub_api_url = "http://127.0.0.1:{free_port()}/hub/api"
c.KubernetesBuilder.context_ip = "127.0.0.1"
c.KubernetesBuilder.context_port = 0
c.KubernetesBuilder.insecure_registries = ["{registry.host}"]
""")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG)
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        env.update(JUPYTERHUB_API_TOKEN=HUB_TOKEN, POD_NAMESPACE="binderlab",
                   POD_IP="127.0.0.1", KUBECONFIG=str(kubeconfig),
                   DOCKER_CONFIG=str(registry.docker_config))
        log = open(tmp_path / "serve.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "binderlab", "serve", "--config",
                                 str(config)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline
                try:
                    requests.get(f"http://127.0.0.1:{port}/versions", timeout=2)
                    break
                except requests.RequestException:
                    time.sleep(0.3)
            repo = git_server.create("dockerfile")
            events = follow(f"http://127.0.0.1:{port}/build/gh/{repo.gh_spec}/main",
                            timeout=120, params={"build_only": "true"})
            messages = "".join(e.get("message", "") for e in events)
            assert events[-1]["phase"] == "failed", events
            assert "keyed by" in messages or "Environment defined by" in messages
            final = events[-1]["message"]
            assert final.startswith("The Kubernetes API server is not reachable"), final
            assert "127.0.0.1:9" in final
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    finally:
        registry.close()


@pytest.mark.docker
@pytest.mark.slow
def test_image_dockerfile_builds_and_holds_what_hub_service_and_builds_run(docker_client,
                                                                           tmp_path):
    """image/Dockerfile, built from the repository root as documented, with its two base
    images swapped through its build arguments for ones made here (no registry to pull
    k8s-hub or docker:cli from): the local test base image (Debian, Python, git) for
    k8s-hub, and an image holding this machine's docker client and binderlab's BuildKit bridge
    (the buildx stand-in) at the paths Docker's image uses."""
    import subprocess

    from tests.harness.service import BASE_IMAGE

    cli_root = tmp_path / "docker-cli"
    (cli_root / "usr/local/bin").mkdir(parents=True)
    (cli_root / "usr/local/libexec/docker/cli-plugins").mkdir(parents=True)
    shutil.copy("/usr/bin/docker", cli_root / "usr/local/bin/docker")
    # binderlab's BuildKit bridge as the buildx stand-in, calling the client where Docker's
    # image has it (the 20.10 client copied above)
    bridge = (TOP / "deploy/docker/docker-buildx-bridge").read_text()
    default_client = "${BINDERLAB_BUILDKIT_CLIENT:-/usr/bin/docker}"
    assert default_client in bridge
    plugin = cli_root / "usr/local/libexec/docker/cli-plugins/docker-buildx"
    plugin.write_text(bridge.replace(default_client,
                                     "${BINDERLAB_BUILDKIT_CLIENT:-/usr/local/bin/docker}"))
    plugin.chmod(0o755)
    tag = f"binderlab-deploy-test/image:{os.getpid()}"
    cli_tag = f"binderlab-deploy-test/docker-cli:{os.getpid()}"
    tar = subprocess.run(["tar", "-C", str(cli_root), "-c", "."], capture_output=True,
                         check=True).stdout
    subprocess.run(["docker", "import", "-", cli_tag], input=tar, check=True,
                   capture_output=True)
    try:
        build = subprocess.run(
            ["/usr/bin/docker", "build", "-f", str(K8S / "image" / "Dockerfile"),
             "--build-arg", f"K8S_HUB_IMAGE={BASE_IMAGE}",
             "--build-arg", f"DOCKER_CLI_IMAGE={cli_tag}", "-t", tag, str(TOP)],
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True,
            timeout=900)
        assert build.returncode == 0, build.stderr[-4000:]
        script = ("id -u; binderlab --version; repo2docker --version; docker buildx version;"
                  " git --version; python3 -c 'import binderlab.spawners.kubernetes,"
                  " binderlab.builders.kubernetes; print(\"imports ok\")'")
        run = subprocess.run(["docker", "run", "--rm", tag, "sh", "-c", script],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        from repo2docker import __version__ as repo2docker_version

        from binderlab._version import __version__

        assert lines[0] == "1000"  # not root
        assert lines[1] == __version__
        assert lines[2] == repo2docker_version  # the fingerprint's repo2docker, in builds
        assert "buildx" in lines[3] and lines[4].startswith("git version")
        assert lines[5] == "imports ok"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, cli_tag], capture_output=True)
