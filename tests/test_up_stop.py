"""Stopping `binderlab up` (SIGTERM as systemd sends it, Ctrl-C, a stop while it starts, a
hub that died) ends every process it started, except what c.UpApp.keep_sessions_on_exit
keeps on purpose (the proxy and the sessions), which it names with the command that stops
them (`binderlab down`).

Each test gives its `binderlab up` a marker of its own in the environment and looks for
processes carrying it: JupyterHub, the proxy and the idle culler inherit it (the culler
through jupyterhub_config.py), also after their parent died.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests

from binderlab.commands.processes import marked
from tests.harness.service import DOCKER_CONFIG, Service, remove_prefix
from tests.harness.sse import follow

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MARK = "BINDERLAB_MARK_TEST_CASE"


def processes(tag: str) -> list[str]:
    return [p.command for p in marked(MARK, tag)]


def left_after_stop(tag: str) -> list[str]:
    """What is still running a few seconds after the stop: children that end on their own
    as their parent exits (multiprocessing's resource tracker) get that moment; an orphan
    runs on and is reported."""
    deadline = time.monotonic() + 10
    while (left := processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def wait_for(predicate, timeout: float = 60, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture
def up(tmp_path, git_server, docker_client):
    """make(keep_sessions) -> (Service, tag); everything is stopped afterwards, also when
    a test failed half way."""
    made = []

    def make(keep_sessions: bool) -> tuple[Service, str]:
        tag = uuid.uuid4().hex
        svc = Service(tmp_path / f"up-{len(made)}", git_server.url, "up", env={MARK: tag},
                      extra_config=f"c.UpApp.keep_sessions_on_exit = {keep_sessions}\n")
        made.append((svc, tag))
        return svc, tag

    yield make
    for svc, tag in made:
        svc.stop()
        for pid in (p.pid for p in marked(MARK, tag)):
            os.kill(pid, signal.SIGKILL)
        remove_prefix(docker_client, svc.image_prefix)


def test_sigterm_with_sessions_not_kept_leaves_nothing(up):
    svc, tag = up(keep_sessions=False)
    svc.start()
    running = processes(tag)
    # the marker reaches all three, so the check below can see them
    assert any("jupyterhub_idle_culler" in c for c in running), running
    assert any("configurable-http-proxy" in c for c in running), running
    assert any("jupyterhub -f" in c for c in running), running
    svc.stop()  # SIGTERM
    assert svc.proc.returncode == 0, svc.log()
    assert left_after_stop(tag) == []


def test_ctrl_c_reaches_the_whole_group_and_leaves_nothing(up):
    svc, tag = up(keep_sessions=False)
    svc.start()
    os.killpg(svc.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    svc.proc.wait(60)
    assert left_after_stop(tag) == []


def test_a_stop_while_starting_stops_the_hub_too(up):
    svc, tag = up(keep_sessions=False)
    env = {**os.environ, "DOCKER_CONFIG": str(DOCKER_CONFIG), MARK: tag}
    with open(svc.log_path, "ab") as log:
        svc.proc = subprocess.Popen(
            [sys.executable, "-m", "binderlab", "up", "--config", str(svc.config)],
            cwd=svc.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    # the hub runs, the service does not answer yet
    assert wait_for(lambda: any("jupyterhub -f" in c for c in processes(tag))), svc.log()
    svc.proc.send_signal(signal.SIGTERM)
    svc.proc.wait(60)
    assert left_after_stop(tag) == [], svc.log()


def test_a_hub_that_died_leaves_no_service_behind(up):
    svc, tag = up(keep_sessions=False)
    svc.start()
    [hub] = [p.pid for p in marked(MARK, tag) if "jupyterhub -f" in p.command]
    os.kill(hub, signal.SIGKILL)  # no clean-up by the hub: its culler would be orphaned
    svc.proc.wait(60)  # binderlab up notices and stops
    assert "JupyterHub exited" in svc.log()
    assert left_after_stop(tag) == []


def test_kept_sessions_are_named_and_binderlab_down_stops_them(up, git_server,
                                                               docker_client):
    svc, tag = up(keep_sessions=True)
    svc.start()
    repo = git_server.create("dockerfile")
    ready = follow(svc.url + f"build/gh/{repo.gh_spec}/main")[-1]
    assert ready["phase"] == "ready", ready
    svc.stop()
    # what it keeps on purpose: the proxy and the session, and it says how to stop them
    wait_for(lambda: len(processes(tag)) <= 1, 10)
    left = processes(tag)
    assert len(left) == 1 and "configurable-http-proxy" in left[0], left
    assert requests.get(ready["url"] + "api/status", timeout=10,
                        headers={"Authorization": f"token {ready['token']}"}).ok
    log = svc.log()
    assert "Left running on purpose" in log and "the proxy" in log and "1 session" in log
    assert f"binderlab down --config {svc.config}" in log

    down = svc.cli("down")
    assert down.returncode == 0, down.stderr
    assert "Stopped the proxy" in down.stdout and "1 session(s)" in down.stdout
    assert left_after_stop(tag) == []
    assert not [c for c in docker_client.containers.list(all=True)
                if c.attrs["Config"]["Image"].startswith(svc.image_prefix)]
    again = svc.cli("down")
    assert again.returncode == 0 and "Nothing of binderlab up was running" in again.stdout


def test_binderlab_down_refuses_while_up_runs(up):
    svc, tag = up(keep_sessions=True)
    svc.start()
    down = svc.cli("down")
    assert down.returncode == 1
    assert "JupyterHub still runs" in down.stderr and "Traceback" not in down.stderr
    assert any("configurable-http-proxy" in c for c in processes(tag))
