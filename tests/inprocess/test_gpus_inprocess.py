"""The GPU queue through the real allocator, with a static inventory and fake sessions."""

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
