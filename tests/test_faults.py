"""Faults done for real, each followed by the two questions that matter to users: does
/health tell the truth, and does the next launch work?

- the Docker engine restarted while a build and a launch run (one restart for both: the
  engine is shared with other tests, so restarts are kept few);
- repo2docker killed mid-build; the binder service killed mid-build; JupyterHub restarted;
- the service's disk full. The engine's own disk cannot be filled safely on a shared test
  machine, so the service's state dir is a 30 MB tmpfs instead: what fills up is what
  binderlab writes (git mirrors, build contexts, cache index, launch log), not Docker's
  image store.

The engine runs with --live-restore (tests/harness/dockerd.sh), as production engines
should: sessions must outlive an engine restart. Logs of every service, hub and session
container a test started are attached to its report when it fails.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from binderlab.commands.processes import MARK_PREFIX, marked, stop
from binderlab.contract import LABEL_KEY, LABEL_REPO, LABEL_USER
from binderlab.resources import hub_config_file
from tests.harness.service import HARNESS, Service, free_port, remove_prefix
from tests.harness.sse import follow

HUB_MARK = MARK_PREFIX + "FAULT_HUB"

pytestmark = pytest.mark.docker

DOCKERD_SH = HARNESS / "dockerd.sh"
DOCKERD_PID = Path("/var/run/docker.pid")
# binderlab logs at WARNING by default; the logs attached to failures should say more
LOG_INFO = "c.Application.log_level = 'INFO'\n"
# How a session container must be created to survive an engine restart on Docker < 24.0.8
# (see test_sessions_survive_engine_restart): everything else as in the project's config.
KEEP_CONTAINERS_CONFIG = f"""
load_subconfig({str(hub_config_file())!r})
c.DockerSpawner.extra_host_config = dict(c.DockerSpawner.extra_host_config, auto_remove=False)
"""

# ---- what a failing test shows ---------------------------------------------------------

_TRACKED: dict[str, tuple] = {}  # label -> (log function, image prefix)


def track(label: str, log, image_prefix: str) -> None:
    _TRACKED[label] = (log, image_prefix)


def untrack(label: str) -> None:
    _TRACKED.pop(label, None)


def _container_report(prefixes: set[str]) -> str:
    out = []
    try:
        client = docker.from_env(timeout=20)
        for c in client.containers.list(all=True):
            if not any((c.attrs["Config"]["Image"] or "").startswith(p) for p in prefixes):
                continue
            state = c.attrs["State"]
            out.append(f"--- {c.name} {c.attrs['Config']['Image']} {state.get('Status')} "
                       f"exit={state.get('ExitCode')} error={state.get('Error')!r}")
            out.append(c.logs(tail=30).decode(errors="replace"))
        client.close()
    except Exception as e:  # the engine may be the thing that failed
        out.append(f"(no container report: {e})")
    return "\n".join(out) or "(no containers)"


class _DumpOnFailure:
    """Adds the logs of everything tracked to the report of the test that failed."""

    def __init__(self, item):
        self.item = item

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if item is self.item and report.when == "call" and report.failed:
            for label, (log, _) in list(_TRACKED.items()):
                report.sections.append((f"log: {label}", log()))
            prefixes = {prefix for _, prefix in _TRACKED.values()}
            report.sections.append(("session containers", _container_report(prefixes)))
        return report


@pytest.fixture(autouse=True)
def dump_on_failure(request):
    plugin = _DumpOnFailure(request.node)
    request.config.pluginmanager.register(plugin)
    yield
    request.config.pluginmanager.unregister(plugin)


# ---- helpers -----------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Follows one event stream in the background; keeps every event, and how it ended."""

    def __init__(self, url: str, params: dict | None = None):
        super().__init__(daemon=True)
        self.url, self.params = url, params or {}
        self.events: list[dict] = []
        self.error: str | None = None  # the stream broke (e.g. the service was killed)

    def run(self):
        try:
            with requests.get(self.url, params=self.params, stream=True, timeout=300,
                              headers={"Accept": "text/event-stream"}) as response:
                for line in response.iter_lines(decode_unicode=True):
                    if line.startswith("data:"):
                        self.events.append(json.loads(line[5:]))
                        if self.events[-1]["phase"] in ("ready", "failed"):
                            return
        except Exception as e:
            self.error = repr(e)

    @property
    def last(self) -> dict:
        return self.events[-1] if self.events else {}

    def wait_for(self, predicate, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(e) for e in list(self.events)):
                return
            if not self.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"not seen; last events: {self.events[-3:]}, error {self.error}")

    def finish(self, timeout: float = 300) -> "Watcher":
        self.join(timeout)
        assert not self.is_alive(), f"stream still open after {timeout} s: {self.events[-3:]}"
        return self


def watch(svc, repo, **params) -> Watcher:
    watcher = Watcher(f"{svc.url}build/gh/{repo.gh_spec}/main", params)
    watcher.start()
    return watcher


def launch(svc, repo, **params) -> list[dict]:
    return follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params=params)


def session_answers(ready: dict) -> bool:
    try:
        response = requests.get(ready["url"] + "api/status", timeout=10,
                                headers={"Authorization": f"token {ready['token']}"})
    except requests.RequestException:
        return False
    return response.status_code == 200


def health(svc) -> tuple[int, dict]:
    response = requests.get(svc.url + "health", timeout=30)
    return response.status_code, {c["service"]: c for c in response.json()["checks"]}


def wait_healthy(svc, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, checks = health(svc)
        if code == 200 or time.monotonic() > deadline:
            assert code == 200, checks
            return checks
        time.sleep(0.5)


def username(events: list[dict]) -> str | None:
    for e in events:
        if e["phase"] == "launching" and e["message"].startswith("Starting a session as "):
            return e["message"].split()[-1]
    return None


def images_of(client: docker.DockerClient, repo) -> list:
    """Images the engine holds for a test repository (binderlab labels every build)."""
    return client.images.list(filters={"label": f"{LABEL_REPO}={repo.url}"})


def assert_no_half_built_image(client: docker.DockerClient, repo) -> list:
    """Any image of ``repo`` is a complete one: keyed, and its last step ran."""
    images = images_of(client, repo)
    for image in images:
        assert image.labels.get(LABEL_KEY), image.labels
        steps = " ".join(h.get("CreatedBy", "") for h in image.history())
        assert "slow-build: complete" in steps, f"{image.tags} lacks its last build step"
    return images


def build_processes(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (an image name or repo URL)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def repo2docker_pid(image_prefix: str, repo_url: str, timeout: float = 60) -> tuple[int, str]:
    """The repo2docker process building ``repo_url`` and the image name it builds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in build_processes(f"{LABEL_REPO}={repo_url}"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if "repo2docker" in argv and "--image-name" in argv:
                image = argv[argv.index("--image-name") + 1]
                if image.startswith(image_prefix):
                    return pid, image
        time.sleep(0.2)
    raise AssertionError(f"no repo2docker process builds {repo_url}")


def kill_leftovers(marker: str, timeout: float = 60) -> list[int]:
    """SIGKILL processes of a build a test interrupted (found by their command line)."""
    found = build_processes(marker)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


def restart_engine(while_down=None):
    """Stop dockerd (SIGTERM, by its pid) and start it again with the harness script.

    ``while_down`` is called once the engine has exited; its result is returned.
    """
    if DOCKERD_PID.exists():
        pid = int(DOCKERD_PID.read_text().strip())
    else:
        [pid] = map(int, subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True,
                                        text=True).stdout.split())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "dockerd did not exit within 60 s"
        time.sleep(0.1)
    result = while_down() if while_down else None
    # a session of its own: the engine must not share the test run's process group
    subprocess.run(["bash", str(DOCKERD_SH)], check=True, timeout=120, start_new_session=True)
    return result


@pytest.fixture(scope="module")
def live_restore(docker_client):
    """The engine runs with --live-restore; an engine started before the harness said so
    is restarted once with it."""
    if not docker_client.info().get("LiveRestoreEnabled"):
        restart_engine()
    assert docker_client.info().get("LiveRestoreEnabled"), "dockerd.sh must use --live-restore"


def _service_factory(docker_client, git_server, tmp_path_factory):
    """make(command, label, extra_config, start) -> Service; finish() stops and cleans up."""
    started: list[tuple[str, Service]] = []

    def make(command: str = "up", label: str = "", extra_config: str = "",
             start: bool = True) -> Service:
        svc = Service(tmp_path_factory.mktemp(f"faults-{command}"), git_server.url, command,
                      extra_config=LOG_INFO + extra_config)
        label = label or f"binderlab {command} {svc.port}"
        started.append((label, svc))
        track(label, svc.log, svc.image_prefix)
        return svc.start() if start else svc

    def finish():
        for label, svc in started:
            svc.stop()
            remove_prefix(docker_client, svc.image_prefix)
            untrack(label)

    return make, finish


@pytest.fixture(scope="module")
def module_services(docker_client, git_server, tmp_path_factory):
    """Start services shared by a module's tests; stopped and cleaned up after them."""
    make, finish = _service_factory(docker_client, git_server, tmp_path_factory)
    yield make
    finish()


@pytest.fixture
def services(docker_client, git_server, tmp_path_factory):
    """Start services for one test; stopped and cleaned up after it."""
    make, finish = _service_factory(docker_client, git_server, tmp_path_factory)
    yield make
    finish()


def serve_on(hub_service: Service) -> str:
    """Config for a `binderlab serve` that launches on another service's hub."""
    return (f"c.HubLauncher.hub_url = {hub_service.hub_url!r}\n"
            f"c.HubLauncher.api_token = {hub_service.service_token!r}\n"
            f"c.BinderLab.image_prefix = {hub_service.image_prefix!r}\n")


# ---- repo2docker killed mid-build ---------------------------------------------------------


def test_repo2docker_killed_mid_build(services, git_server, docker_client):
    svc = services("serve")
    repo = git_server.create("slow-build")
    runs = svc.metric("binderlab_builder_runs_total")
    build = watch(svc, repo, build_only="true")
    build.wait_for(lambda e: "slow-build step 2/" in e.get("message", ""))
    pid, image = repo2docker_pid(svc.image_prefix, repo.url)
    os.kill(pid, signal.SIGKILL)
    build.finish(60)
    try:
        assert build.last["phase"] == "failed", build.events[-3:]
        assert "repo2docker failed (exit code -9)" in build.last["message"]
        assert "slow-build step 2/" in build.last["message"]  # the log so far, for the user
        assert not images_of(docker_client, repo)
        assert health(svc)[1]["Docker"]["ok"]  # (no hub behind this service: Docker only)
        # a retry builds and completes (BuildKit may reuse the interrupted step if it was
        # still running: the engine shares identical steps between builds)
        retry = launch(svc, repo, build_only="true")
        assert retry[-1]["phase"] == "ready", retry[-3:]
        assert any(e["phase"] == "building" for e in retry)
        assert svc.metric("binderlab_builder_runs_total") == runs + 2
        assert [i.id for i in assert_no_half_built_image(docker_client, repo)] == [
            docker_client.images.get(image).id]
    finally:
        kill_leftovers(image)


SILENT_STEP = """FROM binderlab-test/base:latest
USER jovyan
WORKDIR /home/jovyan
COPY --chown=1000:1000 . /home/jovyan
RUN echo "silent step starts" && sleep 40
RUN echo "slow-build: complete" > .build-complete
"""


def test_killed_repo2docker_leaves_no_build_running(services, git_server, docker_client):
    svc = services("serve")
    repo = git_server.create("slow-build")
    repo.commit({"Dockerfile": SILENT_STEP}, "a long step that prints nothing")
    build = watch(svc, repo, build_only="true")
    build.wait_for(lambda e: "silent step starts" in e.get("message", ""))
    time.sleep(3)  # the docker client has written all it had; it is quiet for 37 s
    pid, image = repo2docker_pid(svc.image_prefix, repo.url)
    os.kill(pid, signal.SIGKILL)
    build.finish(60)
    assert build.last["phase"] == "failed"
    try:
        time.sleep(5)
        left = build_processes(image)
        assert not left, f"build processes still running 5 s after 'failed': {left}"
    finally:
        kill_leftovers(image)


def test_build_events_do_not_show_server_paths(services, git_server):
    """Seen in the engine-restart test's stream."""
    svc = services("serve")
    events = launch(svc, git_server.create("failing-build"), build_only="true")
    assert events[-1]["phase"] == "failed"
    state_dir = str(svc.workdir / "state")
    leaked = [e["message"] for e in events if state_dir in e.get("message", "")]
    assert not leaked, leaked



# ---- the binder service killed mid-build ----------------------------------------------------


def test_service_killed_mid_build_recovers(services, git_server, docker_client):
    """`binderlab up` would take its hub (and the sessions) with it, so the service killed
    here is a `binderlab serve` launching on another service's hub."""
    hub = services("up", "binderlab up (hub for the killed service)")
    svc = services("serve", "binderlab serve (killed)", serve_on(hub))
    repo = git_server.create("slow-build")
    watcher = watch(svc, repo)
    watcher.wait_for(lambda e: "slow-build step 2/" in e.get("message", ""))
    _, image = repo2docker_pid(hub.image_prefix, repo.url)
    svc.proc.kill()  # SIGKILL: no clean-up of any kind
    svc.proc.wait()
    try:
        watcher.finish(60)
        # the watcher was cut off: no ready, no failed, the stream broke
        assert watcher.last["phase"] == "building", watcher.events[-3:]
        assert watcher.error is not None
        assert_no_half_built_image(docker_client, repo)

        svc.start()  # same config, state dir and port
        checks = wait_healthy(svc, 30)
        assert checks["Docker"]["ok"] and checks["JupyterHub"]["ok"]
        assert_no_half_built_image(docker_client, repo)
        events = launch(svc, repo)
        assert events[-1]["phase"] == "ready", events[-3:]
        assert session_answers(events[-1])
        built = [e for e in events if e["phase"] == "built"]
        assert built and built[0]["imageName"] == image
        if not any(e["phase"] == "building" for e in events):  # found, not rebuilt
            assert built[0]["message"].startswith("Found built image")
        assert_no_half_built_image(docker_client, repo)
    finally:
        # the killed service's repo2docker is in a session of its own: it outlives the
        # service (see the report); do not leave it to other tests
        kill_leftovers(f"{LABEL_REPO}={repo.url}")


# ---- JupyterHub restarted -------------------------------------------------------------------


class Hub:
    """JupyterHub started the way `binderlab up` starts it (service/binderlab/hub.py): the
    project's jupyterhub_config.py (or a test config that loads it) and BINDERLAB_* env."""

    def __init__(self, state: Path, config_file: str, service: Service, token: str,
                 image_prefix: str):
        self.state = state
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mark = secrets.token_hex(8)
        self.config_file = config_file
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "BINDERLAB_HUB_STATE_DIR": str(state),
            "BINDERLAB_HUB_PUBLIC_URL": self.url,
            "BINDERLAB_HUB_INTERNAL_URL": f"http://127.0.0.1:{free_port()}",
            "BINDERLAB_PROXY_API_URL": f"http://127.0.0.1:{free_port()}",
            "BINDERLAB_SERVICE_TOKEN": token,
            "BINDERLAB_SERVICE_URL": service.url,
            "BINDERLAB_IMAGE_PREFIX": image_prefix,
            "BINDERLAB_CONTENT_DIR": str(service.workdir / "state" / "content"),
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32),
            # the hub hands BINDERLAB_MARK_* to its proxy and services: their marker finds
            # them after the hub was killed (they are no longer its children then)
            HUB_MARK: self.mark,
        }
        self.log_path = state / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Hub":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", self.config_file], cwd=self.state,
                env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                requests.get(self.url + "/hub/api/", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            raise AssertionError("JupyterHub did not answer:\n" + self.log())
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else ""

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)

    def kill_helpers(self) -> None:
        """The hub's proxy and culler outlive a hub that was killed or told to keep them."""
        stop(marked(HUB_MARK, self.mark))


HUB_CONFIGS = {
    "project": None,  # jupyterhub_config.py as shipped
    # JupyterHub leaves servers and the proxy it started running when it stops; the next
    # hub replaces that proxy (pid file) and puts back the routes from its database
    "keep-sessions": "c.JupyterHub.cleanup_servers = False\nc.JupyterHub.cleanup_proxy = False\n",
}

@pytest.mark.parametrize("how,config", [
    ("graceful", "project"),
    ("graceful", "keep-sessions"),
    ("crash", "project"),
])
def test_sessions_survive_hub_restart(how, config, services, git_server, docker_client,
                                      tmp_path):
    token, prefix = secrets.token_hex(32), f"binderlabtest{secrets.token_hex(4)}/"
    svc = services("serve", f"binderlab serve (hub {how}, {config})", start=False)
    config_file = str(hub_config_file())
    if HUB_CONFIGS[config]:
        config_file = str(tmp_path / "jupyterhub_config.py")
        Path(config_file).write_text(f"load_subconfig({str(hub_config_file())!r})\n"
                                     + HUB_CONFIGS[config])
    hub = Hub(tmp_path / "hub", config_file, svc, token, prefix)
    track("jupyterhub", hub.log, prefix)
    with open(svc.config, "a") as f:
        f.write(f"c.HubLauncher.hub_url = {hub.url!r}\nc.HubLauncher.api_token = {token!r}\n"
                f"c.BinderLab.image_prefix = {prefix!r}\n")
    try:
        svc.start()
        hub.start()
        repo = git_server.create("dockerfile")
        before = launch(svc, repo)[-1]
        assert before["phase"] == "ready" and session_answers(before), before

        hub.stop(signal.SIGTERM if how == "graceful" else signal.SIGKILL)
        code, checks = health(svc)  # the hub is down, and /health says so
        assert code == 503 and checks["JupyterHub"]["ok"] is False, checks
        during = launch(svc, repo)[-1]
        assert during["phase"] == "failed" and during["status_code"] == 503, during
        assert "JupyterHub" in during["message"]
        if how == "crash" or config == "keep-sessions":
            assert session_answers(before), "the proxy left running should still route"

        hub.start()
        checks = wait_healthy(svc)
        assert checks["JupyterHub"]["ok"]
        after = launch(svc, repo)[-1]  # new launches recover ...
        assert after["phase"] == "ready" and session_answers(after), after
        # ... and the session from before the restart is still there
        assert session_answers(before), "the session did not survive the hub restart"
    finally:
        hub.stop()
        hub.kill_helpers()
        remove_prefix(docker_client, prefix)
        untrack("jupyterhub")


# ---- the service's disk full ----------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 30 MB tmpfs, unmounted after the test."""
    mount = tmp_path / "tiny-state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs (needs root): {done.stderr}"
    yield mount
    if subprocess.run(["umount", str(mount)]).returncode:
        subprocess.run(["umount", "-l", str(mount)])


@dataclass
class DiskFull:
    svc: Service
    state: Path
    big: object
    events: list[dict]


@pytest.fixture
def disk_full(tiny_disk, services, git_server):
    """A service whose state dir is 30 MB, after a launch of a repository holding 40 MB."""
    hub = services("up", "binderlab up (hub for the tiny-disk service)")
    svc = services("serve", "binderlab serve (30 MB state dir)", serve_on(hub) + (
        f"c.BinderLab.state_dir = {str(tiny_disk)!r}\n"
        "c.BinderLab.min_free_disk_gb = 0.005\n"  # /health: unhealthy below 5 MB
        # the reserve a launch must leave (1 GB by default) scaled to the 30 MB disk, so
        # small launches fit and the 40 MB one really runs the disk full
        "c.RepoDiskBudget.min_free_mb = 2\n"))
    assert health(svc)[0] == 200
    big = git_server.create("dockerfile")
    (big.work / "data.bin").write_bytes(os.urandom(40 << 20))  # incompressible
    big.commit({}, "40 MB of data")
    events = launch(svc, big)
    return DiskFull(svc, tiny_disk, big, events)


def small_launch_works(svc, git_server) -> bool:
    events = launch(svc, git_server.create("dockerfile"))
    return events[-1]["phase"] == "ready" and session_answers(events[-1])


def test_disk_full_fails_clearly_and_service_recovers(disk_full, git_server):
    svc, events = disk_full.svc, disk_full.events
    assert events[-1]["phase"] == "failed", events[-3:]
    assert svc.proc.poll() is None, "the service died"
    assert requests.get(svc.url + "versions", timeout=10).status_code == 200
    # the failed fetch gave its partial objects back, and /health says the truth: there is
    # room again (test_failed_fetch_gives_its_space_back launches with it)
    code, checks = health(svc)
    assert code == 200 and checks["Disk"]["ok"], checks
    assert small_launch_works(svc, git_server)


def test_disk_full_message_names_the_cause(disk_full):
    end = disk_full.events[-1]
    assert "space" in end["message"].lower() and end["status_code"] >= 500, end


def test_failed_fetch_gives_its_space_back(disk_full, git_server):
    assert small_launch_works(disk_full.svc, git_server)


# ---- the Docker engine restarted during a build and a launch -------------------------------


@dataclass
class EngineRestart:
    """What one engine restart did to a service that was building and launching."""

    svc: Service  # binderlab up with the project's jupyterhub_config.py
    kept: Service  # binderlab up whose hub creates containers without AutoRemove
    slow: object  # the repository being built when the engine stopped
    cached: object  # the repository being launched (its image was built before)
    build: Watcher
    launch: Watcher
    sessions: dict[str, dict] = field(default_factory=dict)  # running before the restart
    health_down: tuple = ()
    runs_before: float = 0


@pytest.fixture(scope="module")
def engine_restart(live_restore, module_services, git_server, docker_client):
    svc = module_services("up", "binderlab up (project hub config)")
    kept_config = svc.workdir.parent / "jupyterhub_config_keep_containers.py"
    kept_config.write_text(KEEP_CONTAINERS_CONFIG)
    kept = module_services("up", "binderlab up (auto_remove=False)",
                           f"c.UpApp.hub_config_file = {str(kept_config)!r}\n")
    cached = git_server.create("dockerfile")
    sessions = {}
    for name, service in (("project", svc), ("auto_remove=False", kept)):
        ready = launch(service, cached)[-1]
        assert ready["phase"] == "ready" and session_answers(ready), ready
        sessions[name] = ready

    slow = git_server.create("slow-build")
    runs_before = svc.metric("binderlab_builder_runs_total")
    build = watch(svc, slow)
    build.wait_for(lambda e: "slow-build step 2/" in e.get("message", ""))
    launching = watch(svc, cached)
    launching.wait_for(lambda e: e["phase"] == "launching", timeout=60)
    # the fault: build mid-step, launch just asked the hub for a server
    health_down = restart_engine(while_down=lambda: health(svc))
    build.finish()
    launching.finish()
    print(f"engine restart: the build ended with {build.last}, the launch with "
          f"{launching.last}; /health while the engine was down: {health_down}")
    yield EngineRestart(svc, kept, slow, cached, build, launching, sessions, health_down,
                        runs_before)
    kill_leftovers(f"{LABEL_REPO}={slow.url}")


def test_engine_restart_fails_the_build_clearly(engine_restart, docker_client):
    build = engine_restart.build
    assert build.error is None, build.error
    if build.last["phase"] == "failed":
        message = build.last["message"]
        assert message.startswith("repo2docker failed"), message
        # the client is told what the engine said, at the step it was in
        assert "slow-build step 2/" in message, message
        assert not images_of(docker_client, engine_restart.slow), "a failed build left an image"
    else:  # the build may also have survived the restart
        assert build.last["phase"] == "ready", build.events[-3:]
    assert_no_half_built_image(docker_client, engine_restart.slow)


def test_engine_restart_during_launch_fails_cleanly_or_completes(engine_restart,
                                                                  docker_client):
    launch_events = engine_restart.launch.events
    end = launch_events[-1]
    user = username(launch_events)
    assert user, launch_events
    if end["phase"] == "failed":
        assert end["message"].startswith("The session"), end
        assert end["status_code"] >= 500
        # nothing is left behind: no temporary user, no container
        svc = engine_restart.svc
        response = requests.get(f"{svc.hub_url}/hub/api/users/{user}", timeout=20,
                                headers={"Authorization": f"token {svc.service_token}"})
        assert response.status_code == 404, response.text
        deadline = time.monotonic() + 30
        while docker_client.containers.list(all=True, filters={"label": f"{LABEL_USER}={user}"}):
            assert time.monotonic() < deadline, f"the container of {user} is still there"
            time.sleep(0.5)
    else:
        assert end["phase"] == "ready", launch_events[-3:]


def test_health_says_engine_down_then_up(engine_restart):
    code, checks = engine_restart.health_down
    assert code == 503 and checks["Docker"]["ok"] is False, checks
    assert checks["JupyterHub"]["ok"] is True  # only what is down is reported down
    checks = wait_healthy(engine_restart.svc)
    assert checks["Docker"]["ok"] is True


def test_next_launch_after_engine_restart_works(engine_restart):
    svc = engine_restart.svc
    wait_healthy(svc)
    events = launch(svc, engine_restart.slow)
    assert events[-1]["phase"] == "ready", events[-3:]
    assert session_answers(events[-1])
    if engine_restart.build.last["phase"] == "failed":  # nothing half-built was reused
        assert any("slow-build step 20/20" in e.get("message", "") for e in events)
        assert svc.metric("binderlab_builder_runs_total") == engine_restart.runs_before + 2
    cached = launch(svc, engine_restart.cached)
    assert cached[-1]["phase"] == "ready" and session_answers(cached[-1]), cached[-3:]


def test_sessions_survive_engine_restart(engine_restart):
    assert session_answers(engine_restart.sessions["project"])


def test_sessions_survive_engine_restart_without_auto_remove(engine_restart):
    """The fix (auto_remove off), on the real engine: the same restart, a hub
    whose containers are created with auto_remove=False."""
    assert session_answers(engine_restart.sessions["auto_remove=False"])
