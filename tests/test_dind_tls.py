"""The Kubernetes build daemon cannot be driven from a build step (issue 12).

No cluster here, but the parts are real: the daemon is Debian's dockerd started with the
arguments of deploy/kubernetes/manifests/dind.yaml and certificates from
deploy/kubernetes/dind-certs.sh, listening on the local engine's bridge gateway, which is
where a build step finds its daemon (the gateway of the build's network). The build step is
a real `docker build` on the local engine whose RUN tries the daemon's API the way a
hostile Dockerfile would; the build pod's client uses the environment the KubernetesBuilder
puts in build pods. What could not be run: the daemon inside a pod (privileged, with its
own bridge) and NetworkPolicy; the manifests are validated in test_deploy_kubernetes.py.

The test-only additions keep the daemon apart from the machine's shared engine: a network
namespace of its own (dockerd with --bridge=none deletes the host's docker0 otherwise, seen
here), its own data/exec roots and containerd namespace, no iptables changes.
"""

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from binderlab.builders.buildpod import DAEMON_CERTS
from binderlab.builders.kubernetes import KubernetesBuilder

TOP = Path(__file__).resolve().parent.parent
DIND = TOP / "deploy" / "kubernetes" / "manifests" / "dind.yaml"
CERTS_SCRIPT = TOP / "deploy" / "kubernetes" / "dind-certs.sh"
BASE_IMAGE = os.environ.get("BINDERLAB_TEST_BASE_IMAGE", "binderlab-test/base:latest")
CLIENT = "/usr/bin/docker"  # Debian's 20.10 client (see TESTING.md)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# what a repository's Dockerfile tries against its build daemon
PROBE = r"""
import json, socket, ssl, sys, urllib.request
host, port = sys.argv[1], int(sys.argv[2])
out = {}
with socket.create_connection((host, port), timeout=5):
    out["tcp"] = "connected"
try:
    out["http"] = urllib.request.urlopen(f"http://{host}:{port}/version", timeout=5).read().decode()
except Exception as e:
    out["http_error"] = f"{type(e).__name__}: {getattr(e, 'code', '')} {e}"
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
if len(sys.argv) > 3:  # the control: with the build pod's client certificate
    context.load_cert_chain(sys.argv[3], sys.argv[4])
try:
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /version HTTP/1.0\r\nHost: d\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    out["https"] = reply.decode(errors="replace")
except Exception as e:
    out["https_error"] = f"{type(e).__name__}: {e}"
print("PROBE " + json.dumps(out), flush=True)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def daemon_netns():
    """A network namespace of this test's own for the daemon, joined to the host by a veth
    pair on 198.18.<n>.0/30 (a benchmarking range no packet leaves the machine with): build
    steps of the local engine reach it through their gateway, as build steps reach their
    daemon, and whatever dockerd does to interfaces or firewall stays inside."""
    tag = uuid.uuid4().hex[:6]
    name, outer, inner = f"bl-dind-{tag}", f"bld{tag}h", f"bld{tag}n"
    subnet = int(tag[:2], 16)
    host_ip, daemon_ip = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", name)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        for cmd in (["addr", "add", f"{daemon_ip}/30", "dev", inner],
                    ["link", "set", inner, "up"], ["link", "set", "lo", "up"],
                    ["route", "add", "default", "via", host_ip]):
            sh("ip", "netns", "exec", name, "ip", *cmd)
        yield {"netns": name, "address": daemon_ip}
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def manifest_args(certs: Path, host: str, port: int, sock: Path) -> list[str]:
    """dind.yaml's dockerd arguments, pointed at this test's certificates and addresses."""
    docs = [d for d in yaml.safe_load_all(DIND.read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = []
    for arg in container["args"]:
        arg = arg.replace("/certs/", f"{certs}/")
        if arg.startswith("--host=tcp://"):
            assert arg.endswith(":2376") and "--tlsverify" in container["args"]
            arg = f"--host=tcp://{host}:{port}"
        arg = arg.replace("unix:///var/run/docker.sock", f"unix://{sock}")
        args.append(arg)
    return args


@pytest.fixture
def tls_daemon(tmp_path, daemon_netns):
    root = Path(f"/tmp/binderlab-dind-{uuid.uuid4().hex[:8]}")  # short: socket path limits
    certs = root / "certs"
    host, port, sock = daemon_netns["address"], 2376, root / "d.sock"
    args = manifest_args(certs, host, port, sock)
    assert args[0] == "dockerd"
    log = open(tmp_path / "dockerd.log", "wb")
    try:
        subprocess.run(["sh", str(CERTS_SCRIPT), str(certs)], check=True, capture_output=True)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(f"{root}-ca-key", ignore_errors=True)
        raise
    proc = subprocess.Popen(
        # nsenter, not `ip netns exec`: that one remounts /sys and hides the cgroups
        ["nsenter", f"--net=/run/netns/{daemon_netns['netns']}",
         shutil.which("dockerd") or "/usr/sbin/dockerd", *args[1:],
         f"--data-root={root}/data", f"--exec-root={root}/exec", f"--pidfile={root}/pid",
         "--bridge=none", "--iptables=false", "--ip6tables=false",
         f"--containerd-namespace=binderlab-test-{root.name}",
         f"--containerd-plugins-namespace=binderlab-test-{root.name}-plugins"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(300):
            assert proc.poll() is None, (tmp_path / "dockerd.log").read_text()[-3000:]
            if subprocess.run([CLIENT, "-H", f"unix://{sock}", "version"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError((tmp_path / "dockerd.log").read_text()[-3000:])
        yield {"host": host, "port": port, "certs": certs}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # dockerd makes its data root a private mount and leaves it behind
        subprocess.run(["umount", f"{root}/data"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(f"{root}-ca-key", ignore_errors=True)


def build_pod_client_env(certs: Path, url: str) -> dict[str, str]:
    """The env the KubernetesBuilder gives a build pod, with the Secret's mount path
    replaced by where this test keeps the same files."""
    config = Config()
    config.KubernetesBuilder.build_image = "b"
    config.KubernetesBuilder.daemon_url = url
    builder = KubernetesBuilder(engine=None, work_dir=Path("/nonexistent"), config=config)
    pod = builder.pod_manifest("registry.example.org/e/env-x:1", {}, "http://x/c.tar.gz")
    [build] = [c for c in pod["spec"]["containers"] if c["name"] == "build"]
    env = {e["name"]: e["value"] for e in build["env"] if "value" in e}
    assert env["DOCKER_CERT_PATH"] == DAEMON_CERTS
    env["DOCKER_CERT_PATH"] = str(certs)
    return {k: env[k] for k in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}


def probe_from_a_build(tmp_path, daemon, with_client_cert: bool) -> dict:
    context = tmp_path / ("with-cert" if with_client_cert else "hostile")
    context.mkdir()
    (context / "probe.py").write_text(PROBE)
    extra = ""
    if with_client_cert:
        shutil.copy(daemon["certs"] / "cert.pem", context / "cert.pem")
        shutil.copy(daemon["certs"] / "key.pem", context / "key.pem")
        extra = " /tmp/cert.pem /tmp/key.pem"
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY . /tmp/\n"
        f"RUN python3 /tmp/probe.py {daemon['host']} {daemon['port']}{extra}\n")
    tag = f"binderlab-test-dind-probe:{uuid.uuid4().hex[:10]}"
    try:
        result = subprocess.run(
            [CLIENT, "build", "--no-cache", "--rm", "--force-rm", "-t", tag, str(context)],
            capture_output=True, text=True, timeout=300, env={**os.environ,
                                                             "DOCKER_BUILDKIT": "0"})
    finally:
        subprocess.run([CLIENT, "rmi", "-f", tag], capture_output=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [line] = [x for x in result.stdout.splitlines() if x.startswith("PROBE ")]
    return json.loads(line[len("PROBE "):])


def client_as_in_the_cluster(tmp_path, daemon, env, *argv) -> subprocess.CompletedProcess:
    """The docker client with ``binderlab-dind`` (the Service's name, in the server
    certificate) resolving to the test's daemon, through a /etc/hosts of its own."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{daemon['host']} binderlab-dind\n")
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts), CLIENT, *argv],
        env=env, capture_output=True, text=True, timeout=60)


def test_a_build_step_cannot_use_the_daemon_but_the_build_pod_can(tmp_path, tls_daemon):
    # the build pod's client, configured as the KubernetesBuilder does with the manifests'
    # daemon_url: the daemon answers
    url = "tcp://binderlab-dind:2376"
    env = {**os.environ, **build_pod_client_env(tls_daemon["certs"], url)}
    version = client_as_in_the_cluster(tmp_path, tls_daemon, env, "version", "--format",
                                       "{{json .Server}}")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["Version"]
    # without the certificate, the same client is refused
    bare = {k: v for k, v in env.items() if not k.startswith("DOCKER_TLS")
            and k != "DOCKER_CERT_PATH"}
    refused = client_as_in_the_cluster(tmp_path, tls_daemon, bare, "version")
    assert refused.returncode != 0

    hostile = probe_from_a_build(tmp_path, tls_daemon, with_client_cert=False)
    assert hostile["tcp"] == "connected"  # the daemon is reachable from build steps
    assert "http" not in hostile and "400" in hostile["http_error"]  # plain HTTP: no API
    assert "https" not in hostile, hostile  # TLS without a client certificate: no API
    # the control: the same step holding the client certificate gets the daemon's version
    control = probe_from_a_build(tmp_path, tls_daemon, with_client_cert=True)
    assert '"ApiVersion"' in control.get("https", ""), control
