"""Strict validation of Kubernetes objects against the API models, without a cluster.

The models are kubernetes_asyncio's (generated from the Kubernetes OpenAPI spec, the same
as the `kubernetes` package's). Its own deserializer drops fields it does not know, so a
misspelt field would pass; this walks every field instead: unknown fields, wrong types and
missing required fields (the models' own client-side validation) all fail. Also checks that
the apiVersion's group serves the kind, and evaluates NetworkPolicy egress.
"""

import ipaddress
import re

import kubernetes_asyncio.client as k8s
import pytest
from kubernetes_asyncio.client import models

PRIMITIVES = {"str", "int", "float", "bool", "object", "datetime", "date"}


class Invalid(AssertionError):
    pass


def _check(data, type_name: str, path: str):
    """Check ``data`` (plain JSON) against an OpenAPI type; return the model object."""
    if data is None:
        return None
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise Invalid(f"{path}: expected a list, got {type(data).__name__}")
        return [_check(item, type_name[5:-1], f"{path}[{i}]") for i, item in enumerate(data)]
    if type_name.startswith("dict("):
        if not isinstance(data, dict):
            raise Invalid(f"{path}: expected a mapping, got {type(data).__name__}")
        value_type = re.match(r"dict\(([^,]*), (.*)\)", type_name).group(2)
        return {k: _check(v, value_type, f"{path}.{k}") for k, v in data.items()}
    if type_name in PRIMITIVES:
        ok = {
            # YAML numbers are fine where the API takes a string (quantities); booleans are
            # not (an unquoted `true` label value is rejected by the API server)
            "str": isinstance(data, (str, int, float)) and not isinstance(data, bool),
            "int": isinstance(data, int) and not isinstance(data, bool),
            "float": isinstance(data, (int, float)) and not isinstance(data, bool),
            "bool": isinstance(data, bool),
            "object": True,
            "datetime": isinstance(data, str),
            "date": isinstance(data, str),
        }[type_name]
        if not ok:
            raise Invalid(f"{path}: expected {type_name}, got {data!r}")
        return data
    cls = getattr(models, type_name)
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected a {type_name} object, got {data!r}")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise Invalid(f"{path}: {type_name} has no field(s) {unknown}")
    kwargs = {by_json[k]: _check(v, cls.openapi_types[by_json[k]], f"{path}.{k}")
              for k, v in data.items()}
    try:
        return cls(**kwargs)  # the model's own checks: required fields, allowed values
    except ValueError as e:
        raise Invalid(f"{path}: {e}") from None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def validate(obj: dict):
    """Validate one manifest object; return its model (e.g. a V1Deployment)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    group, _, version = api_version.rpartition("/")
    model = f"{version.capitalize()}{kind}"
    if not hasattr(models, model):
        raise Invalid(f"{kind} {api_version}: no such model {model}")
    api_name = "".join(p.capitalize() for p in group.replace(".k8s.io", "").split(".") if p)
    api = getattr(k8s, f"{api_name or 'Core'}{version.capitalize()}Api", None)
    if api is None or not (hasattr(api, f"create_namespaced_{_snake(kind)}")
                           or hasattr(api, f"create_{_snake(kind)}")):
        raise Invalid(f"{api_version} does not serve {kind}")
    name = (obj.get("metadata") or {}).get("name", "?")
    return _check(obj, model, f"{kind}/{name}")


def _labels_match(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or \
                (op == "NotIn" and value in expr.get("values", [])) or \
                (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _port_matches(rule: dict, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("protocol", "TCP") == protocol and
                            p.get("port") in (None, port) for p in ports)


def _peer_matches(peer: dict, ip: str | None, labels: dict | None) -> bool:
    """Does one from/to peer cover the address ``ip`` or a pod of this namespace with
    ``labels``? (Pod and namespace selectors only ever match pods, ipBlocks addresses.)"""
    block = peer.get("ipBlock")
    if block is not None:
        if ip is None:
            return False
        address = ipaddress.ip_address(ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if labels is None or "namespaceSelector" in peer:
        return False
    return _labels_match(peer.get("podSelector"), labels)


def _allowed(policies, direction, pod_labels, port, protocol, ip, peer_labels) -> bool:
    kind = direction.capitalize()
    selecting = [p for p in policies
                 if kind in (p["spec"].get("policyTypes") or [])
                 and _labels_match(p["spec"].get("podSelector", {}), pod_labels)]
    if not selecting:  # no policy of this direction selects the pod: all allowed
        return True
    peers_key = "to" if direction == "egress" else "from"
    for policy in selecting:
        for rule in policy["spec"].get(direction) or []:
            if not _port_matches(rule, port, protocol):
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer_matches(peer, ip, peer_labels) for peer in peers):
                return True
    return False


def egress_allowed(policies: list[dict], pod_labels: dict, ip: str | None = None, port=443,
                   protocol: str = "TCP", peer_labels: dict | None = None) -> bool:
    """Would NetworkPolicies ``policies`` let a pod with ``pod_labels`` reach ``ip`` (an
    address) or a pod of its namespace with ``peer_labels``, on ``port``?

    Kubernetes semantics: a pod selected by no Egress policy may go anywhere; otherwise
    the union of the rules of the policies selecting it applies.
    """
    return _allowed(policies, "egress", pod_labels, port, protocol, ip, peer_labels)


def ingress_allowed(policies: list[dict], pod_labels: dict, peer_labels: dict, port: int,
                    protocol: str = "TCP") -> bool:
    """Would a pod with ``peer_labels`` (same namespace) be let in to ``pod_labels``:port?"""
    return _allowed(policies, "ingress", pod_labels, port, protocol, None, peer_labels)


# ---- the validator itself must catch what it claims to catch ------------------------------

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
       "spec": {"containers": [{"name": "c", "image": "i",
                                "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}


def _variant(change):
    import copy

    pod = copy.deepcopy(POD)
    change(pod)
    return pod


def test_a_valid_pod_passes():
    pod = validate(POD)
    assert pod.spec.containers[0].resources.limits["cpu"] == 1


@pytest.mark.parametrize("change, message", [
    (lambda p: p["spec"]["containers"][0].update(imagePullPolicy="Always", comand=["x"]),
     "no field"),
    (lambda p: p["metadata"]["labels"].update(enabled=True), "expected str"),
    (lambda p: p["spec"]["containers"][0].pop("name"), "name"),
    (lambda p: p["spec"].update(activeDeadlineSeconds="600"), "expected int"),
    (lambda p: p.update(apiVersion="apps/v1"), "does not serve"),
    (lambda p: p.update(kind="Pods"), "no such model"),
])
def test_invalid_objects_are_refused(change, message):
    with pytest.raises(Invalid, match=message):
        validate(_variant(change))


def test_egress_evaluation():
    policy = {"spec": {"podSelector": {"matchLabels": {"app": "x"}},
                       "policyTypes": ["Egress"],
                       "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]},
                                  {"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                       "except": ["169.254.169.254/32",
                                                                  "10.0.0.0/8"]}}]}]}}
    assert egress_allowed([policy], {"app": "x"}, "93.184.216.34", 443)
    assert not egress_allowed([policy], {"app": "x"}, "169.254.169.254", 80)
    assert not egress_allowed([policy], {"app": "x"}, "10.1.2.3", 443)
    assert egress_allowed([policy], {"app": "x"}, "10.1.2.3", 53, "UDP")
    assert egress_allowed([policy], {"app": "other"}, "169.254.169.254", 80)  # not selected
    pods = {"spec": {"podSelector": {"matchLabels": {"app": "db"}},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "x"}}}],
                                  "ports": [{"port": 5432}]}]}}
    assert ingress_allowed([pods], {"app": "db"}, {"app": "x"}, 5432)
    assert not ingress_allowed([pods], {"app": "db"}, {"app": "x"}, 22)
    assert not ingress_allowed([pods], {"app": "db"}, {"app": "y"}, 5432)
    assert not egress_allowed([policy], {"app": "x"}, peer_labels={"app": "db"}, port=5432)
