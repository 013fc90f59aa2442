"""Fair shares per person (issue 13): GPU-time budgets, per-user session caps and the GPU
queue across users, through the real app, allocator and budgets with a moved clock.

Who is logged in comes from the hub's OAuth in production (tests/test_logged_in.py runs it
for real); here the handler's ``hub_user_name`` reads a ``test_user`` query argument, the
one stand-in, so everything after the login is the real path.
"""

import asyncio
import json
import logging
from datetime import UTC, datetime

import pytest

from binderlab.contract import LABEL_CLIENT, LABEL_GPUS, LABEL_REPO_KEY, LABEL_USER
from binderlab.gpus.budgets import GPUBudgets
from binderlab.web.base import BaseHandler

# Wednesday 2026-12-02 10:00 UTC: a weekday, so the week started on Monday 2026-11-30
WEDNESDAY_10 = datetime(2026, 12, 2, 10, tzinfo=UTC).timestamp()
HOUR = 3600


@pytest.fixture(autouse=True)
def logins(monkeypatch):
    monkeypatch.setattr(BaseHandler, "hub_user_name",
                        property(lambda self: self.get_query_argument("test_user", "")))


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def gpu_app(start_binderlab, tmp_path, devices=("0", "1"), **budgets):
    return start_binderlab(StaticGPUInventory={"devices": list(devices)},
                           BinderLab={"state_dir": str(tmp_path / "state")},
                           GPUAllocator={"max_gpus_per_user": 1},
                           GPUBudgets=budgets)


async def settle(app):
    """Two reconciles: what the clock moved is charged, what is used up is enforced."""
    for _ in range(2):
        await app.gpus.reconcile()
        app.gpus.enforce_budgets(app.launcher)
        await asyncio.sleep(0)


# ---- the accounting itself ------------------------------------------------------------


def test_charged_per_device_split_at_midnight_and_renewing_at_known_times(tmp_path):
    clock = Clock(datetime(2026, 12, 2, 23, 30, tzinfo=UTC).timestamp())
    budgets = GPUBudgets(state_file=tmp_path / "b.json", clock=clock, hours_per_day=2,
                         hours_per_week=3)
    assert budgets.left("10.0.0.1") is None  # anonymous: no budget
    assert budgets.charge({"0": "user:ann", "1": "user:ann", "2": "10.0.0.1"}) == set()
    clock.now += HOUR  # 00:30 on Thursday: two devices for an hour, half of it on Wednesday
    budgets.charge({"0": "user:ann", "1": "user:ann"})
    assert budgets.used["user:ann"] == {"2026-12-02": HOUR, "2026-12-03": HOUR}
    assert "10.0.0.1" not in budgets.used
    left = budgets.left("user:ann")
    # today 1 h of 2 used, the week 2 h of 3: the day binds (1 h left), renewing at midnight
    assert (left.seconds, left.period) == (HOUR, "day")
    assert left.renews_at == datetime(2026, 12, 4, tzinfo=UTC).timestamp()
    clock.now += HOUR / 2  # the week's third hour is used up at 01:00
    assert budgets.charge({"0": "user:ann", "1": "user:ann"}) == {"user:ann"}
    left = budgets.left("user:ann")
    assert (left.seconds, left.period) == (0, "week")
    # the week renews on Monday 00:00 UTC
    assert left.renews_at == datetime(2026, 12, 7, tzinfo=UTC).timestamp()
    with pytest.raises(Exception) as refused:
        budgets.check("user:ann")
    assert refused.value.status_code == 429
    assert refused.value.fields["renews_at"] == "2026-12-07T00:00:00Z"
    assert refused.value.fields["retry_after"] == int(left.renews_at - clock.now)
    assert "renews at 2026-12-07T00:00:00Z" in str(refused.value)
    budgets.check("user:bob")  # somebody else is not refused
    budgets.check("10.0.0.1")


def test_survives_a_restart_and_stays_bounded(tmp_path):
    state = tmp_path / "gpu-budgets.json"
    clock = Clock(WEDNESDAY_10)
    first = GPUBudgets(state_file=state, clock=clock, hours_per_day=4)
    first.charge({"0": "user:ann", "1": "user:bob"})
    clock.now += HOUR
    first.charge({"0": "user:ann", "1": "user:bob"})  # written: save_interval passed
    first.used["user:old"] = {"2026-11-01": 5.0}  # a month ago
    first.charge({"0": "user:ann", "1": "user:bob"})
    assert "user:old" not in json.loads(state.read_text())["used"]  # old days dropped
    # the service is down for half an hour; ann's session goes on, bob's ended meanwhile
    clock.now += HOUR / 2
    second = GPUBudgets(state_file=state, clock=clock, hours_per_day=4)
    assert second.spent("user:ann", clock.now)[0] == HOUR
    second.charge({"0": "user:ann"})
    # ann held her GPU all along: charged for the downtime too; bob only up to the last
    # write before the service went (he may have stopped right after it)
    assert second.spent("user:ann", clock.now)[0] == 1.5 * HOUR
    assert second.spent("user:bob", clock.now)[0] == HOUR
    # a torn or foreign file does not stop the service
    state.write_text("{not json")
    assert GPUBudgets(state_file=state, clock=clock, hours_per_day=4).used == {}


def test_warned_once_before_it_runs_out(tmp_path, caplog):
    clock = Clock(WEDNESDAY_10)
    budgets = GPUBudgets(clock=clock, hours_per_day=1, warn_before=600,
                         log=logging.getLogger("test-budgets"))
    holding = {"0": "user:ann"}
    budgets.charge(holding)
    with caplog.at_level(logging.INFO, "test-budgets"):
        clock.now += HOUR - 601
        budgets.charge(holding)
        assert not caplog.records  # 601 s left: not yet
        for _ in range(3):
            clock.now += 2
            budgets.charge(holding)
    [warning] = caplog.records
    assert "user:ann" in warning.getMessage() and "runs out in 9 min" in warning.getMessage()


# ---- through the service ----------------------------------------------------------------


async def test_time_left_in_ready_then_stopped_and_refused_until_midnight(
        start_binderlab, streams, repo, tmp_path):
    app = await gpu_app(start_binderlab, tmp_path, hours_per_day=1)
    clock = app.gpus.budgets.clock = Clock(WEDNESDAY_10)
    path = f"gh/{repo.gh_spec}/main"
    launch = streams(app, path, "gpu=1&test_user=ann")
    ready = await launch.end()
    assert ready["phase"] == "ready", ready
    budget = ready["gpu_budget"]
    assert budget["period"] == "day" and budget["renews_at"] == "2026-12-03T00:00:00Z"
    assert 0 < budget["seconds_left"] <= HOUR
    assert budget["stops_at"] <= "2026-12-02T11:00:00Z"
    # said in the log too, before ready
    assert any(e["message"].startswith("GPU time left this day: ") for e in launch.events)
    [session] = app.sessions.running.values()
    assert session.labels[LABEL_CLIENT] == "user:ann" and session.labels[LABEL_USER] == "ann"

    # 59 minutes on: still running
    clock.now += 59 * 60
    await settle(app)
    assert app.sessions.running and not app.launcher.stopped
    # the hour is up: that session is stopped (only it)
    clock.now += 61
    await settle(app)
    assert [s[LABEL_USER] for s in app.launcher.stopped] == ["ann"]
    assert not app.sessions.running

    builds = app.builder.builds
    repo.commit({"requirements.txt": "numpy\n"}, "a new environment")
    again = await streams(app, path, "gpu=1&test_user=ann").end()
    assert (again["phase"], again["status_code"]) == ("failed", 429), again
    assert again["renews_at"] == "2026-12-03T00:00:00Z"
    assert again["retry_after"] == int(datetime(2026, 12, 3, tzinfo=UTC).timestamp()
                                       - clock.now)
    assert "renews at 2026-12-03T00:00:00Z" in again["message"]
    assert app.builder.builds == builds  # refused before anything was built
    # a CPU session is still hers to have, and another person's GPU launch goes on
    cpu = await streams(app, path, "test_user=ann").end()
    assert cpu["phase"] == "ready" and "gpu_budget" not in cpu
    other = await streams(app, path, "gpu=1&test_user=bob").end()
    assert other["phase"] == "ready" and other["gpu_budget"]["seconds_left"] == HOUR
    # the next day it renews
    clock.now = datetime(2026, 12, 3, 0, 0, 1, tzinfo=UTC).timestamp()
    await settle(app)
    renewed = await streams(app, path, "gpu=1&test_user=ann").end()
    assert renewed["phase"] == "ready", renewed


async def test_anonymous_gpu_launches_have_no_budget(start_binderlab, streams, repo,
                                                     tmp_path):
    app = await gpu_app(start_binderlab, tmp_path, hours_per_day=1)
    clock = app.gpus.budgets.clock = Clock(WEDNESDAY_10)
    ready = await streams(app, f"gh/{repo.gh_spec}/main", "gpu=1").end()
    assert ready["phase"] == "ready" and "gpu_budget" not in ready
    clock.now += 10 * HOUR
    await settle(app)
    assert app.sessions.running and not app.launcher.stopped
    assert app.gpus.budgets.used == {}


async def test_budgets_off_by_default(start_binderlab, streams, repo, tmp_path):
    app = await gpu_app(start_binderlab, tmp_path)
    ready = await streams(app, f"gh/{repo.gh_spec}/main", "gpu=1&test_user=ann").end()
    assert ready["phase"] == "ready" and "gpu_budget" not in ready


async def test_session_cap_per_user(start_binderlab, streams, git_server, tmp_path):
    app = await start_binderlab(LaunchLimits={"max_sessions_per_user": 2})
    repos = [git_server.create("requirements", owner="inproc") for _ in range(3)]
    for r in repos[:2]:
        assert (await streams(app, f"gh/{r.gh_spec}/main",
                              "test_user=ann").end())["phase"] == "ready"
    builds = app.builder.builds
    refused = await streams(app, f"gh/{repos[2].gh_spec}/main", "test_user=ann").end()
    assert (refused["phase"], refused["status_code"]) == ("failed", 429), refused
    assert "most one person may have here (2)" in refused["message"]
    assert app.builder.builds == builds  # refused before the build
    # another person, and anonymous launches, are not counted against ann
    assert (await streams(app, f"gh/{repos[2].gh_spec}/main",
                          "test_user=bob").end())["phase"] == "ready"
    assert (await streams(app, f"gh/{repos[2].gh_spec}/main").end())["phase"] == "ready"
    # one of ann's stops: she may start another
    [key] = [k for k, s in app.sessions.running.items() if s.labels[LABEL_USER] == "ann"
             and s.labels[LABEL_REPO_KEY].endswith(repos[0].gh_spec.split("/")[1])]
    del app.sessions.running[key]
    assert (await streams(app, f"gh/{repos[2].gh_spec}/main",
                          "test_user=ann").end())["phase"] == "ready"


async def test_concurrent_launches_cannot_pass_the_session_cap(start_binderlab, streams,
                                                               git_server):
    app = await start_binderlab(LaunchLimits={"max_sessions_per_user": 1})
    repos = [git_server.create("requirements", owner="inproc") for _ in range(3)]
    app.launcher.gate.close()
    launches = [streams(app, f"gh/{r.gh_spec}/main", "test_user=ann") for r in repos]
    async with asyncio.timeout(60):  # a bound, not a speed check
        while sum(s.task.done() for s in launches) < 2:
            await asyncio.sleep(0.01)
    app.launcher.gate.open()
    finals = [await s.end() for s in launches]
    assert sorted(f["phase"] for f in finals) == ["failed", "failed", "ready"], finals


async def test_one_users_queued_launches_cannot_push_another_back(start_binderlab, streams,
                                                                  git_server, tmp_path):
    app = await start_binderlab(StaticGPUInventory={"devices": ["0"]},
                                GPUAllocator={"max_gpus_per_user": 0})
    repos = [git_server.create("requirements", owner="inproc") for _ in range(3)]
    holder = await streams(app, f"gh/{repos[0].gh_spec}/main", "gpu=1&test_user=cat").end()
    assert holder["gpus"] == ["0"]
    ann = streams(app, f"gh/{repos[1].gh_spec}/main", "gpu=1&test_user=ann")
    assert (await ann.until("waiting"))["queue_position"] == 1
    bob = streams(app, f"gh/{repos[1].gh_spec}/main", "gpu=1&test_user=bob")
    assert (await bob.until("waiting"))["queue_position"] == 2
    # ann asks again (another repository): refused, bob keeps his place
    more = await streams(app, f"gh/{repos[2].gh_spec}/main", "gpu=1&test_user=ann").end()
    assert (more["phase"], more["status_code"]) == ("failed", 429), more
    assert "wait in the GPU queue" in more["message"]
    assert [e.get("queue_position") for e in bob.events if e["phase"] == "waiting"] == [2]
    # the device frees: ann (first come) gets it, then bob is next in line
    app.sessions.running.clear()
    assert (await ann.end())["gpus"] == ["0"]
    await bob.until("waiting", queue_position=1)
    app.sessions.running.clear()
    assert (await bob.end())["gpus"] == ["0"]


async def test_anonymous_queue_is_unchanged(start_binderlab, streams, repo):
    # no per-user queue cap for an address (a class behind one NAT): as before
    app = await start_binderlab(StaticGPUInventory={"devices": ["0"]},
                                GPUAllocator={"max_gpus_per_user": 0})
    assert (await streams(app, f"gh/{repo.gh_spec}/main", "gpu=1").end())["gpus"] == ["0"]
    waiting = [streams(app, f"gh/{repo.gh_spec}/main", "gpu=1") for _ in range(2)]
    positions = [(await w.until("waiting"))["queue_position"] for w in waiting]
    assert sorted(positions) == [1, 2]


async def test_rate_limit_refusal_says_when(start_binderlab, streams, repo):
    app = await start_binderlab(LaunchLimits={"per_client": 1})
    assert (await streams(app, f"gh/{repo.gh_spec}/main",
                          "test_user=ann").end())["phase"] == "ready"
    refused = await streams(app, f"gh/{repo.gh_spec}/main", "test_user=ann").end()
    assert refused["status_code"] == 429 and refused["retry_after"] >= 1
    assert refused["renews_at"].endswith("Z")
    assert "Too many launches from you " in refused["message"]


async def test_gpu_age_limit_stops_only_that_named_server(start_binderlab, streams,
                                                          git_server, tmp_path):
    """A logged-in user's GPU session past gpu_max_age is stopped alone: the launcher is
    asked to stop that session (its named server), not the user with all their servers."""
    app = await gpu_app(start_binderlab, tmp_path)
    cpu_repo, gpu_repo = (git_server.create("requirements", owner="inproc") for _ in "ab")
    assert (await streams(app, f"gh/{cpu_repo.gh_spec}/main",
                          "test_user=ann").end())["phase"] == "ready"
    assert (await streams(app, f"gh/{gpu_repo.gh_spec}/main",
                          "gpu=1&test_user=ann").end())["gpus"]
    await app.gpus.reconcile()
    for session in app.gpus.sessions:
        session.started = 1.0
    await app.gpus.enforce_limits(app.launcher)
    await asyncio.sleep(0.05)
    [stopped] = app.launcher.stopped
    assert stopped[LABEL_GPUS] and stopped[LABEL_USER] == "ann"
    assert [s.labels.get(LABEL_GPUS) for s in app.sessions.running.values()] == [""]
