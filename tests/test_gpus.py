"""GPU sessions on the real engine. No GPU here: dockerd runs with a recording stub of the
NVIDIA hook on its PATH (tests/harness/dockerd.sh), which is what makes the engine accept
device_requests and set NVIDIA_VISIBLE_DEVICES; a static inventory names two devices."""

import asyncio
import json
import threading
import time

import pytest
import requests

from tests.harness.sse import follow
from tests.test_kernel import run_code

pytestmark = pytest.mark.docker

GPU_CONFIG = """
c.BinderLab.gpu_inventory_class = "static"
c.StaticGPUInventory.devices = ["0", "1"]
c.GPUAllocator.max_gpus_per_user = 0
c.GPUAllocator.reconcile_interval = 0.5
"""


def launch(svc, repo, gpu=None, **params):
    if gpu is not None:
        params["gpu"] = str(gpu)
    return follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params=params)


def visible_devices(ready) -> str:
    """What the session itself sees, asked through its kernel as a user would."""
    session = requests.post(ready["url"] + "api/sessions", timeout=60,
                            headers={"Authorization": f"token {ready['token']}"},
                            json={"path": "gpu.ipynb", "type": "notebook", "name": "",
                                  "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    ws = ready["url"].replace("http://", "ws://", 1)
    ws += f"api/kernels/{session.json()['kernel']['id']}/channels?token={ready['token']}"
    code = "import os; print(os.environ.get('NVIDIA_VISIBLE_DEVICES', 'none'))"
    return asyncio.run(run_code(ws, code)).strip()


def stop_session(svc, ready):
    user = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    response = requests.delete(f"{svc.hub_url}/hub/api/users/{user}/server", timeout=30,
                               headers={"Authorization": f"token {svc.service_token}"})
    assert response.status_code in (202, 204), response.text


class Watcher(threading.Thread):
    """Follows one launch in the background, keeping every event as it arrives."""

    def __init__(self, url, params):
        super().__init__(daemon=True)
        self.url, self.params, self.events = url, params, []

    def run(self):
        with requests.get(self.url, params=self.params, stream=True, timeout=300,
                          headers={"Accept": "text/event-stream"}) as response:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    self.events.append(json.loads(line[5:]))
                    if self.events[-1]["phase"] in ("ready", "failed"):
                        return

    def wait_for(self, predicate, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(e) for e in self.events):
                return
            time.sleep(0.2)
        raise AssertionError(f"not seen within {timeout} s; events: {self.events[-5:]}")


@pytest.fixture(scope="module")
def shared_gpu_service(make_module_service):
    return make_module_service("up", extra_config=GPU_CONFIG)


def gpus_in_use(svc) -> tuple[int, int]:
    """(devices in use, clients waiting), as /health reports them."""
    health = requests.get(svc.url + "health", timeout=20).json()
    check = next(c for c in health["checks"] if c["service"] == "GPUs")
    return check["in_use"], check["queue"]


@pytest.fixture
def gpu_service(shared_gpu_service, docker_client):
    """A GPU host shared by this module's tests, handed to each as a fresh one is: no hub
    user, no session, both devices free, nobody waiting. After the test its users go
    (their servers with them) and the next test waits until the host is back there."""
    svc = shared_gpu_service
    yield svc
    headers = {"Authorization": f"token {svc.service_token}"}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        users = requests.get(f"{svc.hub_url}/hub/api/users", headers=headers, timeout=30)
        users.raise_for_status()
        for user in users.json():  # (again while a server is still stopping: a 400)
            requests.delete(f"{svc.hub_url}/hub/api/users/{user['name']}", headers=headers,
                            timeout=60)
        sessions = [c.name for c in docker_client.containers.list(all=True)
                    if (c.attrs["Config"]["Image"] or "").startswith(svc.image_prefix)]
        if not users.json() and not sessions and gpus_in_use(svc) == (0, 0):
            return
        time.sleep(0.3)
    raise AssertionError(f"the GPU host did not return to no sessions: {sessions}, "
                         f"GPUs (in use, waiting) {gpus_in_use(svc)}")


def test_two_gpus_three_launches_queue_and_hand_over(gpu_service, git_server, docker_client):
    svc, repo = gpu_service, git_server.create("dockerfile")
    first = launch(svc, repo, gpu=1)[-1]
    second = launch(svc, repo, gpu=1)[-1]
    assert first["phase"] == second["phase"] == "ready", (first, second)
    assert sorted(first["gpus"] + second["gpus"]) == ["0", "1"]
    assert visible_devices(first) == first["gpus"][0]
    assert visible_devices(second) == second["gpus"][0]

    third = Watcher(f"{svc.url}build/gh/{repo.gh_spec}/main", {"gpu": "1"})
    third.start()
    third.wait_for(lambda e: e.get("phase") == "waiting" and e.get("queue_position") == 1)
    health = requests.get(svc.url + "health", timeout=20).json()
    gpu_check = next(c for c in health["checks"] if c["service"] == "GPUs")
    assert (gpu_check["total"], gpu_check["in_use"], gpu_check["queue"]) == (2, 2, 1)
    assert "binderlab_gpu_queue_length 1.0" in requests.get(svc.url + "metrics").text

    stop_session(svc, first)  # frees the first session's device
    third.join(120)
    ready = third.events[-1]
    assert ready["phase"] == "ready", third.events[-3:]
    assert ready["gpus"] == first["gpus"]
    assert visible_devices(ready) == first["gpus"][0]

    # the engine was asked for exactly those devices
    [container] = [c for c in docker_client.containers.list()
                   if c.labels.get("binderlab.gpus") == ready["gpus"][0]]
    [request] = container.attrs["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == ready["gpus"] and request["Driver"] == "nvidia"

    # a CPU launch never gets a device
    cpu = launch(svc, repo)[-1]
    assert cpu["phase"] == "ready" and "gpus" not in cpu
    # "void": the NVIDIA runtime adds nothing, whatever the image's ENV (test_session_user.py)
    assert visible_devices(cpu) == "void"


def test_client_leaving_the_queue_frees_its_place(gpu_service, git_server):
    svc, repo = gpu_service, git_server.create("dockerfile")
    holders = [launch(svc, repo, gpu=1)[-1] for _ in range(2)]
    assert all(h["phase"] == "ready" for h in holders)
    # a client that waits, then leaves
    with requests.get(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"gpu": "1"},
                      headers={"Accept": "text/event-stream"}, stream=True, timeout=60) as r:
        for line in r.iter_lines(decode_unicode=True):
            if '"waiting"' in line:
                break
    second = Watcher(f"{svc.url}build/gh/{repo.gh_spec}/main", {"gpu": "1"})
    second.start()
    second.wait_for(lambda e: e.get("phase") == "waiting")
    waiting = [e for e in second.events if e["phase"] == "waiting"]
    assert waiting[-1]["queue_position"] == 1, waiting  # the one that left is gone
    stop_session(svc, holders[1])
    second.join(120)
    assert second.events[-1]["phase"] == "ready"
    assert second.events[-1]["gpus"] == holders[1]["gpus"]


def test_limits_refuse_with_a_clear_message(make_service, git_server):
    svc = make_service("up", extra_config=GPU_CONFIG + """
c.GPUAllocator.max_gpus_per_user = 1
c.GPUAllocator.allowed_repos = ["gh/gpu-course/*"]
""")
    allowed = git_server.create("dockerfile", owner="gpu-course")
    other = git_server.create("dockerfile", owner="someone")

    refused = launch(svc, other, gpu=1)[-1]
    assert refused["phase"] == "failed" and refused["status_code"] == 403
    assert "GPU sessions are not enabled for gh/someone/" in refused["message"]

    too_many = launch(svc, allowed, gpu=2)[-1]
    assert too_many["phase"] == "failed"
    assert "at most 1 GPU(s)" in too_many["message"]

    first = launch(svc, allowed, gpu=1)[-1]
    assert first["phase"] == "ready"
    again = launch(svc, allowed, gpu=1)[-1]
    assert again["phase"] == "failed" and again["status_code"] == 429
    assert "limit per user is 1" in again["message"]

    bad = requests.get(f"{svc.url}build/gh/{allowed.gh_spec}/main", params={"gpu": "lots"},
                       headers={"Accept": "text/event-stream"}, timeout=20)
    # as BinderHub does, an event stream's error is a `failed` event (EventSource cannot
    # read an HTTP error)
    assert bad.status_code == 200 and '"status_code": 400' in bad.text
    assert "number of GPUs" in bad.text


def test_host_without_gpus_says_so(service, git_server):
    failed = launch(service, git_server.create("dockerfile"), gpu=1)[-1]
    assert failed["phase"] == "failed" and "This host has no GPUs" in failed["message"]


def test_repository_opts_in_with_binderlab_yml(gpu_service, git_server):
    repo = git_server.create("dockerfile")
    repo.commit({"binder/binderlab.yml": "# this course needs a GPU\ngpu: 1\n"}, "opt in")
    ready = launch(gpu_service, repo)[-1]
    assert ready["phase"] == "ready" and len(ready["gpus"]) == 1
    cpu = launch(gpu_service, repo, gpu=0)[-1]  # the URL overrides the repository
    assert cpu["phase"] == "ready" and "gpus" not in cpu


def test_hub_refuses_gpus_the_service_did_not_assign(gpu_service, git_server, docker_client):
    svc, repo = gpu_service, git_server.create("dockerfile")
    image = launch(svc, repo, build_only="true")[-1]["imageName"]
    headers = {"Authorization": f"token {svc.service_token}"}
    user = "gpu-thief"
    requests.post(f"{svc.hub_url}/hub/api/users/{user}", headers=headers, timeout=30)
    response = requests.post(f"{svc.hub_url}/hub/api/users/{user}/server", headers=headers,
                             timeout=60, json={"image": image, "gpus": ["0", "1"],
                                               "token": "a-launch-token-of-enough-length",
                                               "gpu_signature": "0" * 64})
    assert response.status_code >= 400
    assert "assigned by the binder service only" in response.text
    assert not docker_client.containers.list(filters={"label": "binderlab.user=gpu-thief"})


def test_service_restart_recovers_gpus_from_running_sessions(make_service, git_server):
    """A freshly started binder service on the same hub (as after a restart: nothing in
    memory) reads the devices from the running containers and never hands one out twice.
    (`binderlab up` would stop its hub too, and the hub its sessions: so the restarted
    service here is a `binderlab serve` pointed at the first one's hub; a host of its own,
    as the restarted service's clean-up removes the sessions and images of its prefix.)"""
    gpu_service = make_service("up", extra_config=GPU_CONFIG)
    repo = git_server.create("dockerfile")
    held = [launch(gpu_service, repo, gpu=1)[-1] for _ in range(2)]
    assert all(h["phase"] == "ready" for h in held)
    restarted = make_service("serve", extra_config=GPU_CONFIG + f"""
c.HubLauncher.hub_url = {gpu_service.hub_url!r}
c.HubLauncher.api_token = {gpu_service.service_token!r}
c.BinderLab.image_prefix = {gpu_service.image_prefix!r}
""")
    health = requests.get(restarted.url + "health", timeout=20).json()
    gpu_check = next(c for c in health["checks"] if c["service"] == "GPUs")
    assert gpu_check["in_use"] == 2, gpu_check
    waiter = Watcher(f"{restarted.url}build/gh/{repo.gh_spec}/main", {"gpu": "1"})
    waiter.start()
    waiter.wait_for(lambda e: e.get("phase") == "waiting")
    stop_session(gpu_service, held[0])
    waiter.join(120)
    ready = waiter.events[-1]
    assert ready["phase"] == "ready", waiter.events[-3:]
    assert ready["gpus"] == held[0]["gpus"]
    assert visible_devices(ready) == held[0]["gpus"][0]


def test_gpu_sessions_have_their_own_time_limit(make_service, git_server, docker_client):
    svc = make_service("up", extra_config=GPU_CONFIG + """
c.GPUAllocator.gpu_max_age = 3
c.GPUAllocator.limits_interval = 1
""")
    repo = git_server.create("dockerfile")
    gpu = launch(svc, repo, gpu=1)[-1]
    cpu = launch(svc, repo)[-1]
    assert gpu["phase"] == cpu["phase"] == "ready"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not docker_client.containers.list(filters={"label": "binderlab.gpus"}):
            break
        time.sleep(0.5)
    assert not docker_client.containers.list(filters={"label": "binderlab.gpus"})
    in_use = None
    while time.monotonic() < deadline and in_use != 0:
        health = requests.get(svc.url + "health", timeout=20).json()
        in_use = next(c for c in health["checks"] if c["service"] == "GPUs")["in_use"]
        time.sleep(0.3)
    assert in_use == 0
    # the CPU session is not affected
    assert requests.get(cpu["url"] + "api/status", timeout=20,
                        headers={"Authorization": f"token {cpu['token']}"}).ok
