"""Session containers are hardened (jupyterhub_config.py): no capabilities, no privilege gain,
bounded memory, CPU and processes, no host mounts, no Docker socket, a non-root user.
Checked on real sessions, from the engine's view (inspect) and from inside, as the
repository's code would see it (its own kernel, and `docker exec`).

That each launch's token reaches only its own server is tested in tests/test_launch.py
(test_git_url_builds_and_launches: a wrong token gets 403) and tests/test_session_guard.py
(no hub credentials in the container); not repeated here.
"""

import asyncio
import json

import pytest
import requests

from tests.harness.sse import follow
from tests.test_kernel import run_code

pytestmark = pytest.mark.docker

DEFAULT_PIDS_LIMIT = 1024  # jupyterhub_config.py, BINDERLAB_SESSION_PIDS_LIMIT
DEFAULT_MEMORY = 2 * 1024**3  # BINDERLAB_SESSION_MEM_LIMIT=2G
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock")


def launch(svc, repo) -> dict:
    ready = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]
    assert ready["phase"] == "ready", ready
    return ready


def container_of(docker_client, ready):
    user = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    [container] = docker_client.containers.list(filters={"label": f"binderlab.user={user}"})
    container.reload()
    return container


def in_kernel(ready: dict, code: str, timeout: float = 120) -> str:
    """Run ``code`` in a new kernel of the session, as thebe or a notebook would."""
    session = requests.post(ready["url"] + "api/sessions", timeout=60,
                            headers={"Authorization": f"token {ready['token']}"},
                            json={"path": "isolation.ipynb", "type": "notebook", "name": "",
                                  "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    ws = ready["url"].replace("http://", "ws://", 1)
    ws += f"api/kernels/{session.json()['kernel']['id']}/channels?token={ready['token']}"
    return asyncio.run(asyncio.wait_for(run_code(ws, code, timeout=timeout), timeout))


def exec_out(container, cmd: str, user: str = "") -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", cmd], user=user)
    return code, out.decode(errors="replace").strip()


SELF_CHECK = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "sockets": [p for p in SOCKETS if os.path.exists(p)],
    "pids_max": open("/sys/fs/cgroup/pids.max").read().strip()
        if os.path.exists("/sys/fs/cgroup/pids.max") else None,
}))
""".replace("SOCKETS", repr(SOCKETS))


@pytest.mark.parametrize("case", ["dockerfile", "environment-yml"])
def test_session_container_is_hardened(service, git_server, docker_client, case):
    """Both image kinds: a repository's own image (tree) and an environment image whose
    content the spawner copies in (env)."""
    ready = launch(service, git_server.create(case))
    container = container_of(docker_client, ready)
    host = container.attrs["HostConfig"]

    assert "ALL" in (host.get("CapDrop") or []), host.get("CapDrop")
    assert not host.get("CapAdd"), host.get("CapAdd")
    assert any(opt.startswith("no-new-privileges") and not opt.endswith(":false")
               for opt in host.get("SecurityOpt") or []), host.get("SecurityOpt")
    assert host.get("PidsLimit") == DEFAULT_PIDS_LIMIT, host.get("PidsLimit")
    assert host.get("Memory") == DEFAULT_MEMORY, host.get("Memory")
    assert host.get("NanoCpus") or (host.get("CpuQuota") and host.get("CpuPeriod")), host
    assert host.get("Privileged") is False
    assert not host.get("Binds"), host.get("Binds")
    assert not host.get("Mounts"), host.get("Mounts")
    assert not container.attrs.get("Mounts"), container.attrs.get("Mounts")
    assert not host.get("Devices"), host.get("Devices")
    for mode in ("NetworkMode", "PidMode", "IpcMode", "UsernsMode", "UTSMode"):
        assert host.get(mode) != "host", (mode, host.get(mode))

    user = container.attrs["Config"].get("User") or \
        docker_client.images.get(container.attrs["Config"]["Image"]).attrs["Config"]["User"]
    assert user and user.split(":")[0] not in ("root", "0"), user

    # from inside, as the repository's code sees it
    seen = json.loads(in_kernel(ready, SELF_CHECK))
    assert seen["uid"] != 0 and seen["euid"] != 0, seen
    assert seen["no_new_privs"] == "1", seen
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_bnd"], 16) == 0, seen
    assert seen["sockets"] == [], seen
    if seen["pids_max"] is not None:  # cgroup v2 shows the container's own limit
        assert seen["pids_max"] == str(DEFAULT_PIDS_LIMIT), seen

    for socket in SOCKETS:
        assert exec_out(container, f"test -e {socket}")[0] != 0, socket
    code, uid = exec_out(container, "id -u")
    assert code == 0 and uid != "0", uid


def test_setuid_binaries_give_no_privilege(service, git_server, docker_client):
    """A setuid-root program (made here by root in the container) runs without root's
    rights: no-new-privileges ignores the setuid bit."""
    ready = launch(service, git_server.create("dockerfile"))
    container = container_of(docker_client, ready)
    code, out = exec_out(container, "cp /usr/bin/id /tmp/suid-id && chmod 4755 /tmp/suid-id "
                         "&& stat -c '%u %a' /tmp/suid-id", user="root")
    assert (code, out) == (0, "0 4755"), out  # the bit is really there
    code, euid = exec_out(container, "/tmp/suid-id -u")
    assert code == 0 and euid not in ("", "0"), euid
    code, status = exec_out(container, "grep NoNewPrivs /proc/self/status")
    assert status.split() == ["NoNewPrivs:", "1"], status
    # the repository's code cannot use it either
    out = in_kernel(ready, "import subprocess; "
                    "print(subprocess.run(['/tmp/suid-id', '-u'], capture_output=True, "
                    "text=True).stdout.strip())")
    assert out.strip() not in ("", "0"), out


PIDS_LIMIT = 128

FORK_CHECK = """
import json, subprocess, time
started, refused = [], 0
deadline = time.monotonic() + 60
for _ in range(COUNT):
    if time.monotonic() > deadline:
        break
    try:
        started.append(subprocess.Popen(["sleep", "120"]))
    except OSError:
        refused += 1
for p in started:
    p.kill()
for p in started:
    p.wait()
print(json.dumps({"started": len(started), "refused": refused}))
""".replace("COUNT", str(PIDS_LIMIT + 50))


def test_pids_limit_stops_a_fork_bomb(make_service, git_server, docker_client, monkeypatch):
    """pids_limit + 50 processes from the kernel: the engine refuses the ones over the limit,
    the session survives and works afterwards. A small limit (the documented
    BINDERLAB_SESSION_PIDS_LIMIT) keeps this cheap."""
    monkeypatch.setenv("BINDERLAB_SESSION_PIDS_LIMIT", str(PIDS_LIMIT))
    svc = make_service("up")
    ready = launch(svc, git_server.create("dockerfile"))
    container = container_of(docker_client, ready)
    assert container.attrs["HostConfig"]["PidsLimit"] == PIDS_LIMIT

    result = json.loads(in_kernel(ready, FORK_CHECK, timeout=180))
    assert result["started"] < PIDS_LIMIT, result
    assert result["refused"] >= 50, result
    # cleaned up, and the session still answers and runs code
    assert in_kernel(ready, "print(6 * 7)").strip() == "42"
    top = container.top(ps_args="-e -o pid,comm")
    assert not [p for p in top["Processes"] if p[-1] == "sleep"], top
    status = requests.get(ready["url"] + "api/status", timeout=20,
                          headers={"Authorization": f"token {ready['token']}"})
    assert status.status_code == 200
