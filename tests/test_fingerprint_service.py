"""The fingerprint worker inside a running `binderlab serve`, through its HTTP API: the
worker is SIGKILLed between launches and the next launch works; a 20 MB requirements.txt
gets a 413 naming the file while other launches go on."""

import os
import signal
from pathlib import Path

import pytest

from tests.harness.sse import follow

pytestmark = pytest.mark.docker


def workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"binderlab.fingerprint.worker" in cmdline:
            found.append(int(entry.name))
    return found


def build_only(svc, repo) -> dict:
    return follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"build_only": "true"},
                  timeout=300)[-1]


def test_killed_worker_is_replaced_and_huge_file_refused(make_service, git_server):
    svc = make_service("serve")
    assert build_only(svc, git_server.create("dockerfile"))["phase"] == "ready"
    workers = workers_of(svc.proc.pid)
    assert workers, "no fingerprint worker under the service"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    assert build_only(svc, git_server.create("dockerfile"))["phase"] == "ready"
    assert "replacing it" in svc.log()

    huge = git_server.create("requirements")
    huge.commit({"requirements.txt": "".join(f"package-{i}==1.0.{i}\n"
                                             for i in range(1_000_000))})
    last = build_only(svc, huge)
    assert (last["phase"], last["status_code"]) == ("failed", 413), last
    assert "requirements.txt is 2" in last["message"] and "1 MiB" in last["message"]
    assert build_only(svc, git_server.create("dockerfile"))["phase"] == "ready"
