"""Fair shares per person (issue 13) with the real parts: `binderlab up` whose hub logs people
in with DummyAuthenticator, the fake GPU inventory and the engine's NVIDIA hook stub
(tests/test_gpus.py), sessions asked through their kernels which device they see.

Time is not waited for: the budget state a service finds in its state dir on start is what
a day of use leaves there (gpus/budgets.py), written before the service starts; the clock
itself is moved in the in-process tier (tests/inprocess/test_budgets_inprocess.py).
"""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.harness.leftovers import RUN_ID
from tests.test_gpus import GPU_CONFIG, visible_devices
from tests.test_logged_in import launch, log_in, sessions_of, start

pytestmark = pytest.mark.docker


def test_budgets_caps_and_a_gpu_each_behind_one_address(make_service, git_server,
                                                        docker_client, tmp_path):
    # names of this run: other runs share the engine, and the GPU allocator reads every
    # session container on it (a device another run's session holds is taken here too)
    ann, bob, cat = (f"{name}{RUN_ID[:6]}" for name in ("ann", "bob", "cat"))
    state = tmp_path / "state"
    state.mkdir()
    now = datetime.now(UTC)
    # ann used her hour today already (a previous service run wrote this)
    (state / "gpu-budgets.json").write_text(json.dumps({
        "saved_at": now.timestamp(), "open": {},
        "used": {f"user:{ann}": {now.strftime("%Y-%m-%d"): 3600.0}}}))
    svc = start(make_service, tmp_path, "required", GPU_CONFIG + f"""
c.BinderLab.state_dir = {str(state)!r}
c.GPUAllocator.max_gpus_per_user = 1
c.GPUBudgets.hours_per_day = 1
c.LaunchLimits.max_sessions_per_user = 1
""")
    repo, other_repo = git_server.create("dockerfile"), git_server.create("dockerfile")
    browsers = {name: requests.Session() for name in (ann, bob, cat)}
    for name, browser in browsers.items():
        log_in(svc, browser, "", name)  # all three from 127.0.0.1: one address

    # ann's budget is used up: refused at once, with the time it renews
    refused = launch(svc, browsers[ann], repo, gpu="1")
    final = refused[-1]
    assert (final["phase"], final["status_code"]) == ("failed", 429), final
    midnight = (now + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    if datetime.now(UTC).date() != now.date():  # the test ran across midnight
        pytest.skip("the day changed during the test")
    assert final["renews_at"] == midnight
    assert 0 < final["retry_after"] <= 86400
    assert f"renews at {midnight}" in final["message"]
    assert not any(e["phase"] in ("building", "waiting") for e in refused)
    assert not sessions_of(docker_client, ann)

    # bob and cat: a GPU each under max_gpus_per_user = 1, and the time they have left
    his = launch(svc, browsers[bob], repo, gpu="1")[-1]
    hers = launch(svc, browsers[cat], repo, gpu="1")[-1]
    assert his["phase"] == hers["phase"] == "ready", (his, hers)
    assert sorted(his["gpus"] + hers["gpus"]) == ["0", "1"]
    for ready, user in ((his, bob), (hers, cat)):
        # the session itself sees the device it was given
        assert visible_devices(ready) == ready["gpus"][0]
        [container] = sessions_of(docker_client, user)
        assert container.labels["binderlab.gpus"] == ready["gpus"][0]
        [request] = container.attrs["HostConfig"]["DeviceRequests"]
        assert request["DeviceIDs"] == ready["gpus"]
        budget = ready["gpu_budget"]
        assert budget["period"] == "day" and budget["renews_at"] == midnight
        assert 3000 < budget["seconds_left"] <= 3600

    # back to his running session (another tab): the same devices, and the time left
    again = launch(svc, browsers[bob], repo, gpu="1")
    assert any("Returning to your running session" in e.get("message", "") for e in again)
    assert again[-1]["url"] == his["url"] and again[-1]["gpus"] == his["gpus"]
    assert 0 < again[-1]["gpu_budget"]["seconds_left"] <= his["gpu_budget"]["seconds_left"]

    # one session per person here: bob's launch of another repository is refused
    second = launch(svc, browsers[bob], other_repo)[-1]
    assert (second["phase"], second["status_code"]) == ("failed", 429), second
    assert "most one person may have here (1)" in second["message"]
    assert len(sessions_of(docker_client, bob)) == 1

    # what they use is on disk, for the next start of the service
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        saved = json.loads((state / "gpu-budgets.json").read_text())
        if {p for p, _ in saved["open"].values()} == {f"user:{bob}", f"user:{cat}"}:
            break
        time.sleep(0.5)
    assert {p for p, _ in saved["open"].values()} == {f"user:{bob}", f"user:{cat}"}, saved
    assert saved["used"][f"user:{ann}"][now.strftime("%Y-%m-%d")] == 3600.0
