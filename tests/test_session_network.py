"""One-box session isolation (issue 12): the session network and the egress rules.

- The session network, on the real engine: two containers on it cannot talk to each other;
  on a network with Docker's defaults (the control) they can.
- The egress rules, in network namespaces of the test's own (nothing here touches the
  machine's firewall): a "host" namespace with the session bridge and the build bridge, a
  hub port and another service (a registry) on the gateway, a metadata server at
  169.254.169.254 and a public stand-in behind it. The same probes run before the rules
  (everything answers: the control) and after.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest

from binderlab.platform import isolation

BASE_IMAGE = os.environ.get("BINDERLAB_TEST_BASE_IMAGE", "binderlab-test/base:latest")

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("open")
except OSError as e:
    print(type(e).__name__)
"""


# ---- the session network, on the real engine -------------------------------------------------

def _reach(docker_client, network: str, target_ip: str) -> str:
    return docker_client.containers.run(
        BASE_IMAGE, ["python3", "-c", CONNECT, target_ip, "8000"], network=network,
        remove=True, labels={"binderlab.test": "session-network"}).decode().strip()


@pytest.mark.docker
def test_sessions_on_the_session_network_cannot_reach_each_other(docker_client):
    tag = uuid.uuid4().hex[:6]
    name, bridge = f"binderlab-test-sessions-{tag}", f"blt{tag}"
    control = docker_client.networks.create(f"binderlab-test-default-{tag}", driver="bridge")
    server = None
    try:
        attrs = isolation.ensure_session_network(docker_client, name, bridge)
        assert attrs["Options"][isolation.ICC] == "false"
        # the same call again finds it and keeps it
        assert isolation.ensure_session_network(docker_client, name, bridge)["Id"] == attrs["Id"]
        server = docker_client.containers.run(
            BASE_IMAGE, ["python3", "-m", "http.server", "8000"], network=name, detach=True,
            labels={"binderlab.test": "session-network"})
        docker_client.networks.get(control.id).connect(server)
        server.reload()
        networks = server.attrs["NetworkSettings"]["Networks"]
        for _ in range(50):  # the server is up once it answers on the control network
            if _reach(docker_client, control.name, networks[control.name]["IPAddress"]) \
                    == "open":
                break
            time.sleep(0.2)
        else:
            raise AssertionError(server.logs().decode())
        assert _reach(docker_client, name, networks[name]["IPAddress"]) != "open"
    finally:
        if server is not None:
            server.remove(force=True)
        for net in docker_client.networks.list(names=[name]):
            net.remove()
        control.remove()


@pytest.mark.docker
def test_a_session_network_that_lets_containers_talk_is_refused(docker_client):
    name = f"binderlab-test-open-{uuid.uuid4().hex[:6]}"
    net = docker_client.networks.create(name, driver="bridge")
    try:
        with pytest.raises(ValueError, match="allows traffic between containers"):
            isolation.ensure_session_network(docker_client, name)
    finally:
        net.remove()


# ---- the egress rules, in namespaces of the test's own ---------------------------------------

def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


class Lab:
    """host: bridges binderlab0 (sessions, 172.31.<n>.0/24) and docker0 (build steps,
    172.30.<n>.0/24), gateway .1 on each, forwarding on, FORWARD -> DOCKER-USER as Docker
    sets it; outside: 169.254.169.254 (metadata) and 100.128.0.1 (a public stand-in) in a
    namespace behind the host. Nothing has a route off the machine."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:5]
        n = int(self.tag[:2], 16)
        self.ns = {role: f"bl-{role}-{self.tag}" for role in ("host", "out", "sess", "build")}
        self.gw = {"binderlab0": f"172.31.{n}.1", "docker0": f"172.30.{n}.1"}
        self.procs: list[subprocess.Popen] = []

    def ex(self, role: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns[role], *argv],
                              capture_output=True, text=True, timeout=30)

    def up(self):
        for name in self.ns.values():
            sh("ip", "netns", "add", name)
        host = self.ns["host"]
        n = self.gw["binderlab0"].split(".")[2]
        for bridge, (client, address) in {"binderlab0": ("sess", f"172.31.{n}.2"),
                                          "docker0": ("build", f"172.30.{n}.2")}.items():
            self.ex("host", "ip", "link", "add", bridge, "type", "bridge")
            self.ex("host", "ip", "addr", "add", f"{self.gw[bridge]}/24", "dev", bridge)
            self.ex("host", "ip", "link", "set", bridge, "up")
            sh("ip", "link", "add", f"v{client}{self.tag}", "netns", host, "type", "veth",
               "peer", "name", "eth0", "netns", self.ns[client])
            self.ex("host", "ip", "link", "set", f"v{client}{self.tag}", "master", bridge)
            self.ex("host", "ip", "link", "set", f"v{client}{self.tag}", "up")
            self.ex(client, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            self.ex(client, "ip", "link", "set", "eth0", "up")
            self.ex(client, "ip", "link", "set", "lo", "up")
            self.ex(client, "ip", "route", "add", "default", "via", self.gw[bridge])
        sh("ip", "link", "add", f"vout{self.tag}", "netns", host, "type", "veth", "peer",
           "name", "eth0", "netns", self.ns["out"])
        self.ex("host", "ip", "addr", "add", "192.0.0.1/30", "dev", f"vout{self.tag}")
        self.ex("host", "ip", "link", "set", f"vout{self.tag}", "up")
        for address in ("192.0.0.2/30", "169.254.169.254/32", "100.128.0.1/32"):
            self.ex("out", "ip", "addr", "add", address, "dev", "eth0")
        self.ex("out", "ip", "link", "set", "eth0", "up")
        self.ex("out", "ip", "link", "set", "lo", "up")
        self.ex("out", "ip", "route", "add", "default", "via", "192.0.0.1")
        for address in ("169.254.169.254/32", "100.128.0.1/32"):
            self.ex("host", "ip", "route", "add", address, "via", "192.0.0.2")
        self.ex("host", "sysctl", "-w", "net.ipv4.ip_forward=1")
        self.ex("host", "ip", "link", "set", "lo", "up")
        assert self.ex("host", "iptables", "-w", "-N", "DOCKER-USER").returncode == 0
        assert self.ex("host", "iptables", "-w", "-A", "FORWARD", "-j",
                       "DOCKER-USER").returncode == 0
        # listeners: the hub and a registry on the session gateway, the same on the build
        # gateway, the metadata server and the public stand-in outside
        for role, address, port in [("host", self.gw["binderlab0"], 8081),
                                    ("host", self.gw["binderlab0"], 5000),
                                    ("host", self.gw["docker0"], 8081),
                                    ("out", "169.254.169.254", 80),
                                    ("out", "100.128.0.1", 80)]:
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.ns[role], sys.executable, "-m", "http.server",
                 "--bind", address, str(port)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        listening = [("sess", self.gw["binderlab0"], 8081), ("sess", self.gw["binderlab0"], 5000),
                     ("build", self.gw["docker0"], 8081), ("sess", "169.254.169.254", 80),
                     ("sess", "100.128.0.1", 80)]
        for _ in range(100):  # until every listener is up (not yet a test of anything)
            if all(self.reach(*where) == "open" for where in listening):
                break
            time.sleep(0.1)
        return self

    def reach(self, role: str, address: str, port: int) -> str:
        return self.ex(role, sys.executable, "-c", CONNECT, address, str(port)).stdout.strip()

    def iptables(self, args):
        return subprocess.run(["ip", "netns", "exec", self.ns["host"], "iptables", "-w", *args],
                              capture_output=True, text=True)

    def down(self):
        for proc in self.procs:
            proc.terminate()
            proc.wait(10)
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.fail("needs root for network namespaces (the harness runs as root)")
    lab = Lab()
    try:
        yield lab.up()
    finally:
        lab.down()


def probes(lab) -> dict[str, str]:
    s, b = lab.gw["binderlab0"], lab.gw["docker0"]
    return {
        "session -> hub": lab.reach("sess", s, 8081),
        "session -> registry on the gateway": lab.reach("sess", s, 5000),
        "session -> metadata": lab.reach("sess", "169.254.169.254", 80),
        "session -> public": lab.reach("sess", "100.128.0.1", 80),
        "build -> gateway": lab.reach("build", b, 8081),
        "build -> metadata": lab.reach("build", "169.254.169.254", 80),
        "build -> public": lab.reach("build", "100.128.0.1", 80),
    }


def test_egress_rules_keep_sessions_and_builds_to_the_hub_and_the_internet(lab):
    rules = isolation.egress_rules("binderlab0", "docker0", hub_ports=[8081])
    before = probes(lab)
    assert set(before.values()) == {"open"}, before  # the control: all reachable
    assert isolation.check_rules(rules, run=lab.iptables)  # and /health would say so

    isolation.apply_rules(rules, run=lab.iptables)
    isolation.apply_rules(rules, run=lab.iptables)  # idempotent: the unit runs it each start
    after = probes(lab)
    assert after == {
        "session -> hub": "open",
        "session -> registry on the gateway": "TimeoutError",
        "session -> metadata": "TimeoutError",
        "session -> public": "open",
        "build -> gateway": "TimeoutError",
        "build -> metadata": "TimeoutError",
        "build -> public": "open",
    }, after
    assert isolation.check_rules(rules, run=lab.iptables) == []
    # the command the operator (or a timer) runs, as root in that host, writes /health's file
    status = f"/tmp/binderlab-isolation-{lab.tag}.json"
    try:
        check = lab.ex("host", sys.executable, "-m", "binderlab.platform.isolation", "check",
                       "--status-file", status)
        assert check.returncode == 0, check.stderr
        assert isolation.read_status(status) == []
    finally:
        if os.path.exists(status):
            os.unlink(status)
    # one rule deleted by hand: the check names it
    lab.iptables(["-D", isolation.EGRESS_CHAIN, "-i", "binderlab0", "-d", "169.254.0.0/16",
                  "-j", "DROP"])
    assert isolation.check_rules(rules, run=lab.iptables) == [
        "missing rule: BINDERLAB-EGRESS -i binderlab0 -d 169.254.0.0/16 -j DROP"]


def test_status_for_health(tmp_path):
    path = str(tmp_path / "isolation.json")
    assert isolation.read_status(path) and "no egress rule status" in \
        isolation.read_status(path)[0]
    isolation.write_status(path, [])
    assert isolation.read_status(path, max_age=60) == []
    isolation.write_status(path, ["missing rule: X"])
    assert isolation.read_status(path) == ["missing rule: X"]


@pytest.mark.docker
def test_network_problems_seen_from_the_engine(docker_client):
    name = f"binderlab-test-open-{uuid.uuid4().hex[:6]}"
    assert isolation.network_problems(docker_client, name) == [
        f"session network {name} does not exist"]
    net = docker_client.networks.create(name, driver="bridge")
    try:
        assert "allows traffic" in isolation.network_problems(docker_client, name)[0]
    finally:
        net.remove()
