"""The GPU queue through the real allocator, with a static inventory and fake sessions."""

import asyncio

GPU_CONFIG = {"StaticGPUInventory": {"devices": ["0"]},
              "GPUAllocator": {"max_gpus_per_user": 0}}


async def test_queue_positions_then_the_freed_device(start_binderlab, streams, repo):
    app = await start_binderlab(**GPU_CONFIG)
    first = await streams(app, f"gh/{repo.gh_spec}/main", "gpu=1").end()
    assert first["phase"] == "ready" and first["gpus"] == ["0"]

    second = streams(app, f"gh/{repo.gh_spec}/main", "gpu=1")
    waiting = await second.until("waiting")
    assert waiting["queue_position"] == 1
    third = streams(app, f"gh/{repo.gh_spec}/main", "gpu=1")
    assert (await third.until("waiting"))["queue_position"] == 2

    # the first session stops: the device goes to the head of the queue, then the next
    for user in list(app.sessions.running):
        await app.launcher.stop(user)
    ready = await second.end()
    assert ready["phase"] == "ready" and ready["gpus"] == ["0"]
    await third.until("waiting", queue_position=1)
    for user in list(app.sessions.running):
        await app.launcher.stop(user)
    assert (await third.end())["gpus"] == ["0"]


async def test_no_gpus_here_is_400(binderlab, streams, repo):
    refused = await streams(binderlab, f"gh/{repo.gh_spec}/main", "gpu=1").end()
    assert refused["status_code"] == 400
    assert "no GPUs" in refused["message"]


async def test_more_than_a_session_may_have_is_400(start_binderlab, streams, repo):
    app = await start_binderlab(**GPU_CONFIG)
    refused = await streams(app, f"gh/{repo.gh_spec}/main", "gpu=2").end()
    assert refused["status_code"] == 400


async def test_one_client_cannot_reserve_more_than_its_cap_concurrently(start_binderlab,
                                                                        streams, repo):
    app = await start_binderlab(StaticGPUInventory={"devices": ["0", "1", "2", "3"]},
                                GPUAllocator={"max_gpus_per_user": 1})
    app.launcher.gate.close()  # every launch that gets a device waits in the hub
    launches = [streams(app, f"gh/{repo.gh_spec}/main", "gpu=1") for _ in range(4)]
    finals = []
    refused = []
    # three are refused while the fourth holds its reservation (it cannot finish yet)
    async with asyncio.timeout(60):  # a bound, not a speed check: the old code hangs here
        while len(refused) < 3:
            await asyncio.sleep(0.01)
            refused = [s for s in launches if s.task.done()]
    for stream in refused:
        finals.append(await stream.end())
    assert all(f["phase"] == "failed" and f["status_code"] == 429 for f in finals), finals
    assert "limit per user is 1" in finals[0]["message"]
    assert len(app.gpus.reserved) == 1
    app.launcher.gate.open()
    (winner,) = [s for s in launches if s not in refused]
    ready = await winner.end()
    assert ready["phase"] == "ready" and len(ready["gpus"]) == 1


async def test_a_reservation_survives_a_restart(start_binderlab, streams, repo, tmp_path):
    # (the recovered reservation counts against its client's cap too: no cap here, so the
    # test sees the device itself stay taken)
    state = {"BinderLab": {"state_dir": str(tmp_path / "shared-state")}, **GPU_CONFIG}
    first = await start_binderlab(**state)
    first.launcher.gate.close()
    pending = streams(first, f"gh/{repo.gh_spec}/main", "gpu=1")
    await pending.until("launching", message="GPU 0 reserved\n")
    book = first.state_path / "gpu-reservations.json"
    on_disk = book.read_text()
    assert '"0"' in on_disk
    # the service dies here, while the hub still creates the session: what a crash leaves
    await first.stop()
    pending.close()
    book.write_text(on_disk)

    second = await start_binderlab(**state)
    other = streams(second, f"gh/{repo.gh_spec}/main", "gpu=1")
    assert (await other.until("waiting"))["queue_position"] == 1  # device 0 is not free
    # the hub's container appears with the device, then stops: only then is it free
    from binderlab.contract import LABEL_GPUS, LABEL_USER
    from binderlab.sessions.trackers import Session

    second.sessions.running["crashed-launch"] = Session(
        {LABEL_USER: "crashed-launch", LABEL_GPUS: "0"}, "binderlab-inproc/x", None)
    while second.gpus.reserved:  # the container holds it now: the reservation goes
        await asyncio.sleep(0.02)
    assert not other.task.done()
    del second.sessions.running["crashed-launch"]
    ready = await other.end()
    assert ready["phase"] == "ready" and ready["gpus"] == ["0"]


async def test_a_recovered_reservation_expires(start_binderlab, streams, repo, tmp_path):
    state = tmp_path / "expiring"
    state.mkdir()
    (state / "gpu-reservations.json").write_text(
        '{"t1": {"client": "10.0.0.9", "repo_key": "gh/a/b", "count": 1, "devices": ["0"]}}')
    app = await start_binderlab(StaticGPUInventory={"devices": ["0"]},
                                BinderLab={"state_dir": str(state)},
                                GPUAllocator={"recovered_reservation_timeout": 0.2})
    ready = await streams(app, f"gh/{repo.gh_spec}/main", "gpu=1").end()
    assert ready["phase"] == "ready" and ready["gpus"] == ["0"]


async def test_the_repository_asks_for_a_gpu_in_binderlab_yml(start_binderlab, streams, repo):
    app = await start_binderlab(**GPU_CONFIG)
    repo.commit({"binder/binderlab.yml": "# this course needs a GPU\ngpu: 1\n"}, "opt in")
    ready = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert ready["gpus"] == ["0"]
    for user in list(app.sessions.running):
        await app.launcher.stop(user)
    # the URL wins over the repository
    assert "gpus" not in await streams(app, f"gh/{repo.gh_spec}/main", "gpu=0").end()


async def test_a_broken_binderlab_yml_is_the_repositorys_fault(start_binderlab, streams, repo):
    app = await start_binderlab(**GPU_CONFIG)
    repo.commit({"binderlab.yml": "gpu: [lots\n"}, "broken settings")
    failed = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert failed["status_code"] == 400
    assert "binderlab.yml is not valid" in failed["message"]


async def test_the_age_limit_does_not_end_a_session_that_is_still_starting(start_binderlab,
                                                                          streams, repo):
    app = await start_binderlab(**GPU_CONFIG)
    app.gpus.gpu_max_age = 0.01
    app.launcher.gate.close()
    launch = streams(app, f"gh/{repo.gh_spec}/main", "gpu=1")
    await launch.until("launching", message="GPU 0 reserved\n")
    # the hub created the container (long ago, as far as the age limit knows): still starting
    from binderlab.contract import LABEL_GPUS, LABEL_USER
    from binderlab.sessions.trackers import Session

    app.sessions.running["starting"] = Session({LABEL_USER: "starting", LABEL_GPUS: "0"},
                                               "binderlab-inproc/x", 1.0)
    await app.gpus.reconcile()
    stopped = []
    app.gpus._stop = lambda launcher, user: stopped.append(user)
    await app.gpus.enforce_limits(app.launcher)
    assert stopped == []
    del app.sessions.running["starting"]
    app.launcher.gate.open()
    ready = await launch.end()
    assert ready["phase"] == "ready"
    # once ready, the same limit applies
    await app.gpus.reconcile()
    for session in app.gpus.sessions:
        session.started = 1.0
    await app.gpus.enforce_limits(app.launcher)
    assert len(stopped) == 1
