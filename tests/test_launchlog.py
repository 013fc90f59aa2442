"""The launch event log (<state_dir>/launches.jsonl) on a real `binderlab up`: one JSON object
per launch with exactly the keys and types its documented schema (launchlog.py) names, the
right values for a ready, a failed and a build-only launch, and never a client address."""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from binderlab.launch import launchlog
from tests.harness.sse import follow

pytestmark = pytest.mark.docker

TYPES = {"int": int, "str": str, "bool": bool, "float": float}


def documented_schema() -> dict[str, type]:
    """The schema table in launchlog.py's docstring: ``| `key` | type | meaning |``."""
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", launchlog.__doc__, re.M)
    assert rows, "launchlog.py documents no schema table"
    return {key: TYPES[kind] for key, kind in rows}


def read_log(svc, count: int, timeout: float = 20) -> list[dict]:
    """The log's entries once there are ``count`` of them (a launch is logged when it ends)."""
    path = svc.workdir / "state" / "launches.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(lines) == count, lines
    return [json.loads(line) for line in lines]


def check_schema(entry: dict) -> None:
    schema = documented_schema()
    assert set(entry) == set(schema), set(entry) ^ set(schema)
    for key, kind in schema.items():
        # bool is an int in Python: keep them apart both ways
        assert type(entry[key]) is kind or (kind is float and type(entry[key]) is int), \
            (key, entry[key])
    assert entry["schema"] == 1
    stamp = datetime.fromisoformat(entry["timestamp"])
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 900
    assert entry["duration"] >= 0
    assert entry["status"] in ("ready", "built", "failed")
    assert entry["image_kind"] in ("env", "tree", "")


def no_client_address(entries: list[dict], addresses=("127.0.0.1", "::1", "localhost")):
    """No field but the repository's own URL (the test git host is on 127.0.0.1) holds it."""
    for entry in entries:
        rest = json.dumps({k: v for k, v in entry.items() if k != "repo"})
        for address in addresses:
            assert address not in rest, entry
        assert not {"client", "ip", "address", "remote_ip", "user"} & set(entry), entry


@pytest.fixture
def up(make_service):
    return make_service("up")


def test_ready_failed_and_build_only_launches_are_logged(up, git_server):
    repo = git_server.create("dockerfile")
    ready = follow(f"{up.url}build/gh/{repo.gh_spec}/main")[-1]
    assert ready["phase"] == "ready", ready
    failed = follow(f"{up.url}build/gh/{repo.gh_spec}/no-such-branch")[-1]
    assert (failed["phase"], failed["status_code"]) == ("failed", 404), failed
    built = follow(f"{up.url}build/gh/{repo.gh_spec}/main", params={"build_only": "true"})[-1]
    assert built["phase"] == "ready" and built["imageName"] == ready["image"], built

    entries = read_log(up, 3)
    for entry in entries:
        check_schema(entry)
    no_client_address(entries)
    first, second, third = entries
    commit = ready["binder_persistent_request"].rsplit("/", 1)[-1]

    assert first == {**first, "provider": "gh", "spec": f"{repo.gh_spec}/main",
                     "repo": repo.url, "ref": commit, "status": "ready", "status_code": 200,
                     "build": True, "image_kind": "tree", "gpus": 0}
    assert second == {**second, "provider": "gh", "spec": f"{repo.gh_spec}/no-such-branch",
                      "ref": "", "status": "failed", "status_code": 404, "build": False,
                      "image_kind": "", "gpus": 0}
    assert third == {**third, "provider": "gh", "spec": f"{repo.gh_spec}/main",
                     "repo": repo.url, "ref": commit, "status": "built", "status_code": 200,
                     "build": False, "image_kind": "tree", "gpus": 0}
    assert [e["build"] for e in entries] == [True, False, False]
    assert first["duration"] > third["duration"]  # the one that built took longer
    # in the order the launches ended
    assert [e["timestamp"] for e in entries] == sorted(e["timestamp"] for e in entries)


def test_only_the_launch_that_built_is_logged_as_building(make_service, git_server):
    svc = make_service("serve")
    repo = git_server.create("dockerfile")
    url = f"{svc.url}build/gh/{repo.gh_spec}/main"
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: follow(url, params={"build_only": "true"}),
                                range(3)))
    assert all(events[-1]["phase"] == "ready" for events in results)
    assert svc.metric("binderlab_builder_runs_total") == 1  # one build, shared
    entries = read_log(svc, 3)
    assert sorted(e["build"] for e in entries) == [False, False, True], entries


def test_a_launch_that_crashed_is_logged_with_an_error_code(make_service, git_server):
    svc = make_service("serve")
    repo = git_server.create("dockerfile")
    (repo.work / "outside").symlink_to("/etc/passwd")
    repo.commit({}, message="a link out of the repository")
    follow(f"{svc.url}build/gh/{repo.gh_spec}/main", timeout=120,
           params={"build_only": "true"})
    [entry] = read_log(svc, 1)
    check_schema(entry)
    assert entry["status"] in ("built", "failed"), entry
    if entry["status"] == "failed":
        assert entry["status_code"] >= 400, entry
