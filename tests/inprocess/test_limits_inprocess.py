"""Rate limits and session quotas through the real handlers, in milliseconds."""


async def test_rate_limit_per_client(start_binderlab, streams, repo):
    app = await start_binderlab(LaunchLimits={"per_client": 2})
    for _ in range(2):
        assert (await streams(app, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"
    refused = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert refused["phase"] == "failed"
    assert refused["status_code"] == 429
    assert "Too many launches" in refused["message"]


async def test_banned_repository_is_403(start_binderlab, streams, repo):
    app = await start_binderlab(LaunchLimits={"banned_specs": ["gh/inproc/*"]})
    refused = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert refused["status_code"] == 403


async def test_host_quota_counts_starting_sessions(start_binderlab, streams, repo):
    app = await start_binderlab(LaunchLimits={"max_sessions": 1})
    app.launcher.gate.close()
    first = streams(app, f"gh/{repo.gh_spec}/main")
    await first.until("launching")
    # the first session is still starting: it holds the only place
    second = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert second["phase"] == "failed" and second["status_code"] == 503
    assert "full" in second["message"]
    app.launcher.gate.open()
    assert (await first.end())["phase"] == "ready"
    # and once it runs, it still does
    third = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert third["status_code"] == 503
    for user in list(app.sessions.running):
        await app.launcher.stop(user)
    assert (await streams(app, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"


async def test_quota_per_repository(start_binderlab, streams, repo, git_server):
    app = await start_binderlab(LaunchLimits={"max_sessions_per_repo": 1})
    assert (await streams(app, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"
    refused = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert refused["status_code"] == 429
    other = git_server.create("requirements", owner="inproc")
    assert (await streams(app, f"gh/{other.gh_spec}/main").end())["phase"] == "ready"


async def test_health_reports_missing_isolation(start_binderlab, tmp_path):
    """On one box /health reads what `python -m binderlab.platform.isolation apply|check`
    (run as root) found: a missing session network or missing egress rules make it 503."""
    import json

    from tornado.httpclient import AsyncHTTPClient

    from binderlab.platform import isolation

    status = tmp_path / "isolation.json"
    app = await start_binderlab(BinderLab={"isolation_status_file": str(status),
                                           "health_cache_seconds": 0})
    client = AsyncHTTPClient(force_instance=True)

    async def health() -> tuple[int, dict]:
        response = await client.fetch(f"{app.public_url}health", raise_error=False)
        body = json.loads(response.body)
        [check] = [c for c in body["checks"] if c["service"] == "isolation"]
        return response.code, check

    try:
        code, check = await health()  # never applied
        assert code == 503 and not check["ok"] and "isolation problem" in check["error"]
        isolation.write_status(str(status), ["egress rule missing: sessions reach 10.0.0.0/8"])
        code, check = await health()
        assert code == 503 and not check["ok"]
        assert "10.0.0.0" not in json.dumps(check)  # details go to the log, not the public body
        isolation.write_status(str(status), [])
        code, check = await health()
        assert check["ok"], check
    finally:
        client.close()
