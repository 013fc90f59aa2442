"""Build slots under abuse: builds nobody watches are stopped, builds per client are
capped, slots are shared fairly, and a build's replay buffer is bounded in bytes.

The real Builder base class (slots, sharing, watchers, replay) with a stand-in for the one
step that needs an engine (``run_build``); the same against repo2docker and a slow
Dockerfile repository is in tests/test_abandoned_builds.py."""

import asyncio

import pytest

from binderlab.builders.repo2docker import Build, Builder
from binderlab.builders.slots import FairSlots
from binderlab.errors import LaunchError

LABELS = {"binderlab.key": "k"}


class SlowBuilder(Builder):
    """Builds that run until released (``finish[name].set()``); records what ran."""

    def __init__(self, **kwargs):
        super().__init__(engine=None, **kwargs)
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finish: dict[str, asyncio.Event] = {}

    async def run_build(self, build, context, labels):
        self.started.append(build.image)
        try:
            await self.finish.setdefault(build.image, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.append(build.image)
            raise
        return None

    async def image_ready(self, name, key):
        return name in self.finish and self.finish[name].is_set()


async def nothing(dest):
    dest.mkdir(parents=True, exist_ok=True)


async def until(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def first_events(build: Build, count: int) -> list[dict]:
    """Follow ``build`` for ``count`` events, then leave (as a client that disconnects)."""
    got = []
    agen = build.follow()
    async for event in agen:
        got.append(event)
        if len(got) >= count:
            break
    await agen.aclose()
    return got


@pytest.fixture
def builder(tmp_path):
    return SlowBuilder(work_dir=tmp_path, max_concurrent_builds=1, abandon_after=0.3)


async def test_a_build_nobody_follows_is_stopped_and_frees_its_slot(builder):
    first = builder.build("img-a", LABELS, nothing, client="198.51.100.1")
    second = builder.build("img-b", LABELS, nothing, client="198.51.100.2")
    await until(lambda: builder.started == ["img-a"])
    follower = asyncio.ensure_future(asyncio.wait_for(list_events(second), 20))
    await first.emit({"phase": "building", "message": "step 1\n"})
    await first_events(first, 1)  # the client of img-a leaves
    await until(lambda: first.outcome is not None)
    assert builder.cancelled == ["img-a"] and first.abandoned
    assert "nobody followed it" in first.events[-1]["message"]
    assert "img-a" not in builder.running
    await until(lambda: builder.started == ["img-a", "img-b"])  # the slot went on
    builder.finish["img-b"].set()
    assert (await follower)[-1]["phase"] == "built"


async def list_events(build):
    return [e async for e in build.follow()]


async def test_a_client_that_comes_back_in_time_keeps_the_build(builder):
    build = builder.build("img-a", LABELS, nothing, client="198.51.100.1")
    await until(lambda: builder.started == ["img-a"])
    await build.emit({"phase": "building", "message": "step 1\n"})
    await first_events(build, 1)
    assert builder.build("img-a", LABELS, nothing, client="198.51.100.1") is build
    watcher = asyncio.ensure_future(list_events(build))
    await asyncio.sleep(builder.abandon_after * 3)
    assert build.outcome is None and not builder.cancelled
    builder.finish["img-a"].set()
    events = await watcher
    assert events[0]["message"] == "step 1\n" and events[-1]["phase"] == "built"


async def test_a_build_with_a_watcher_is_never_abandoned(builder):
    """A prebuild (webhook, CLI) follows its own build to the end."""
    build = builder.build("img-a", LABELS, nothing)
    watcher = asyncio.ensure_future(list_events(build))
    await until(lambda: builder.started == ["img-a"])
    await asyncio.sleep(builder.abandon_after * 3)
    assert build.outcome is None
    builder.finish["img-a"].set()
    assert (await watcher)[-1]["phase"] == "built"


async def test_builds_per_client_are_capped_but_joining_is_not(tmp_path):
    builder = SlowBuilder(work_dir=tmp_path, max_builds_per_client=2, abandon_after=0)
    builder.build("img-1", LABELS, nothing, client="198.51.100.1")
    builder.build("img-2", LABELS, nothing, client="198.51.100.1")
    with pytest.raises(LaunchError) as e:
        builder.build("img-3", LABELS, nothing, client="198.51.100.1")
    assert e.value.status_code == 429 and "2 builds" in str(e.value)
    assert "img-3" not in builder.running
    assert builder.build("img-1", LABELS, nothing, client="198.51.100.1")  # joins
    builder.build("img-3", LABELS, nothing, client="198.51.100.2")  # someone else
    for name in ("img-1", "img-2", "img-3"):
        builder.finish.setdefault(name, asyncio.Event()).set()
    await until(lambda: not builder.running)


async def test_slots_are_shared_fairly_between_clients():
    slots = FairSlots(1)
    order = []

    async def job(client, name):
        await slots.acquire(client)
        order.append(name)
        await asyncio.sleep(0.01)
        slots.release(client)

    await slots.acquire("hog")  # the hog holds the one slot and queues three more
    jobs = [asyncio.ensure_future(job("hog", f"hog-{i}")) for i in range(3)]
    await asyncio.sleep(0)
    jobs += [asyncio.ensure_future(job("other", f"other-{i}")) for i in range(2)]
    await asyncio.sleep(0)
    slots.release("hog")
    await asyncio.gather(*jobs)
    # the hog was served last: the other client goes first, then they take turns
    assert order == ["other-0", "hog-0", "other-1", "hog-1", "hog-2"], order
    assert not slots.held and not slots._last_grant


async def test_cancelled_waiter_does_not_keep_a_slot():
    slots = FairSlots(1)
    await slots.acquire("a")
    waiter = asyncio.ensure_future(slots.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slots.release("a")
    await asyncio.wait_for(slots.acquire("c"), 5)
    assert dict(slots.held) == {"c": 1}


async def test_replay_buffer_is_bounded_in_bytes():
    """A build that prints 64 lines of 1 MiB: the buffer keeps at most max_bytes, each
    line is cut to max_line_bytes, late watchers are told the rest was not kept."""
    build = Build("img", max_events=20000, max_bytes=200_000, max_line_bytes=16 << 10)
    for _ in range(64):
        await build.emit({"phase": "building", "message": "x" * (1 << 20) + "\n"})
    await build.finish("built", {"phase": "built", "message": "done\n"})
    kept = sum(len(e["message"]) for e in build.events)
    assert kept < 200_000 + 200
    assert all(len(e["message"].encode()) <= (16 << 10) + 100 for e in build.events)
    assert "bytes of this line not shown" in build.events[0]["message"]
    assert any("not kept" in e["message"] for e in build.events)
    assert build.dropped > 0
    late = [e async for e in build.follow()]
    assert late[-1]["phase"] == "built"


async def test_log_options_reach_each_build(tmp_path):
    builder = SlowBuilder(work_dir=tmp_path, max_log_mb=0.001, max_log_line_kb=1,
                          abandon_after=0)
    build = builder.build("img", LABELS, nothing)
    assert (build.max_bytes, build.max_line_bytes) == (1000, 1024)
    for _ in range(5):
        await build.emit({"phase": "building", "message": "y" * 5000 + "\n"})
    assert len(build.events[0]["message"].encode()) < 1024 + 100
    assert sum(len(e["message"]) for e in build.events) < 1000 + 200
    builder.finish.setdefault("img", asyncio.Event()).set()
    await until(lambda: not builder.running)
