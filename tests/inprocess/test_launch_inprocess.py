"""The launch through the real app with fake plugins: events, caching, failures' owners."""

import json

from prometheus_client import REGISTRY

from tests.harness.gitserver import git

FAILED, ERROR = ("binderlab_launches_total", "failed"), ("binderlab_launches_total", "error")
BUILD_FAILED = ("binderlab_builds_total", "failed")
LAUNCH_OUTCOMES = (FAILED, ERROR, BUILD_FAILED)


def metric(name: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0


async def test_launch_builds_then_reuses_the_image(binderlab, streams, repo):
    first = streams(binderlab, f"gh/{repo.gh_spec}/main")
    ready = await first.end()
    assert ready["phase"] == "ready", first.events
    assert ready["image"].startswith("binderlab-inproc/env-")
    commit = git("rev-parse", "HEAD", cwd=repo.work)
    assert ready["binder_persistent_request"] == f"v2/gh/{repo.gh_spec}/{commit}"
    phases = [e["phase"] for e in first.events]
    assert phases.index("building") < phases.index("built") < phases.index("launching")
    assert binderlab.builder.builds == 1

    # a notebook-only commit: the same environment, no second build
    repo.commit({"notes.md": "new notes"}, "notebook only")
    second = streams(binderlab, f"gh/{repo.gh_spec}/main")
    assert (await second.end())["image"] == ready["image"]
    assert "building" not in [e["phase"] for e in second.events]
    assert binderlab.builder.builds == 1
    options = binderlab.launcher.launched[-1]
    assert options["content"] == options["ref"]  # the commit's files go in at launch
    assert "username" not in await second.until("ready")  # internal facts stay internal


async def test_unknown_ref_is_the_requests_fault(binderlab, streams, repo):
    failed = await streams(binderlab, f"gh/{repo.gh_spec}/no-such-branch").end()
    assert failed["phase"] == "failed"
    assert 400 <= failed["status_code"] < 500, failed


async def test_build_failure_is_the_repositorys_fault(start_binderlab, streams, repo,
                                                      caplog):
    message = "ResolvePackageNotFound: python=3.4"
    app = await start_binderlab(FakeBuilder={"fail_with": message})
    before = {k: metric(*k) for k in LAUNCH_OUTCOMES}
    failed = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert failed["phase"] == "failed"
    assert failed["status_code"] == 422, failed
    assert message in failed["message"]
    record = json.loads((app.state_path / "launches.jsonl").read_text().splitlines()[-1])
    assert record["status_code"] == 422
    # counted as a failed launch, not as one of our errors
    assert metric("binderlab_launches_total", "failed") == before[FAILED] + 1
    assert metric("binderlab_launches_total", "error") == before[ERROR]
    assert metric("binderlab_builds_total", "failed") == before[BUILD_FAILED] + 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # not an error of ours


async def test_builder_crash_is_ours(start_binderlab, streams, repo):
    app = await start_binderlab(FakeBuilder={"crash": True})
    failed = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert failed["status_code"] == 500, failed
    assert "crashed" not in failed["message"]  # details stay in the operator's log
    assert metric("binderlab_launches_total", "error") >= 1


async def test_hub_down_is_503(start_binderlab, streams, repo, caplog):
    from tests.harness.service import free_port

    app = await start_binderlab(
        BinderLab={"launcher_class": "jupyterhub"},
        HubLauncher={"hub_url": f"http://127.0.0.1:{free_port()}", "api_token": "x"})
    failed = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert failed["phase"] == "failed"
    assert failed["status_code"] == 503, failed
    assert "JupyterHub is not reachable" in failed["message"]
    # ours: logged as an error for the operator
    assert any(r.levelname == "ERROR" and "failed (503)" in r.getMessage()
               for r in caplog.records)


async def test_session_failure_is_ours(start_binderlab, streams, repo):
    app = await start_binderlab(FakeLauncher={"fail_with": "The session failed to start"})
    failed = await streams(app, f"gh/{repo.gh_spec}/main").end()
    assert failed["status_code"] == 500
    assert "The session failed to start" in failed["message"]


async def test_watchers_share_one_build(binderlab, streams, repo):
    binderlab.builder.gate.close()
    one = streams(binderlab, f"gh/{repo.gh_spec}/main")
    two = streams(binderlab, f"gh/{repo.gh_spec}/main")
    await one.until("building")
    await two.until("building")
    binderlab.builder.gate.open()
    assert (await one.end())["phase"] == (await two.end())["phase"] == "ready"
    assert binderlab.builder.builds == 1


async def test_launch_log_lines_follow_the_schema(binderlab, streams, repo):
    import jsonschema

    from binderlab.launch import events

    assert (await streams(binderlab, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"
    await streams(binderlab, f"gh/{repo.gh_spec}/no-such-ref").end()
    lines = (binderlab.state_path / "launches.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["status"] for r in records] == ["ready", "failed"]
    record_schema = {**events.schema()["$defs"]["launch_record"],
                     "$defs": events.schema()["$defs"]}
    for record in records:
        jsonschema.validate(record, record_schema)
    assert records[0]["build"] is True and records[0]["image_kind"] == "env"
    assert records[1]["ref"] == "" and records[1]["image_kind"] == ""


async def test_the_spec_is_parsed_once_and_the_mirror_fetched_once(binderlab, streams, repo,
                                                                   monkeypatch):
    provider = binderlab.providers["gh"]
    calls = {"parse": 0, "fetch": 0}
    parse, fetch = provider.parse, binderlab.mirrors.fetch

    def counting_parse(raw):
        calls["parse"] += 1
        return parse(raw)

    async def counting_fetch(*args, **kwargs):
        calls["fetch"] += 1
        return await fetch(*args, **kwargs)

    monkeypatch.setattr(provider, "parse", counting_parse)
    monkeypatch.setattr(binderlab.mirrors, "fetch", counting_fetch)
    repo.commit({"binder/binderlab.yml": "gpu: 0\n"}, "settings file")
    assert (await streams(binderlab, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"
    assert calls == {"parse": 1, "fetch": 1}


async def test_build_slots_make_later_builds_wait(start_binderlab, streams, git_server):
    app = await start_binderlab(FakeBuilder={"max_concurrent_builds": 1})
    app.builder.gate.close()
    first, second = (git_server.create("requirements", owner="inproc") for _ in range(2))
    second.commit({"requirements.txt": "another-environment==1\n"}, "another environment")
    one = streams(app, f"gh/{first.gh_spec}/main")
    await one.until("building")
    two = streams(app, f"gh/{second.gh_spec}/main")  # another image: not the same build
    assert "Waiting for a build slot" in (await two.until("waiting"))["message"]
    app.builder.gate.open()
    assert (await one.end())["phase"] == (await two.end())["phase"] == "ready"


async def test_bad_requests_are_refused_before_the_stream(binderlab, repo):
    """As BinderHub answers them: an event-stream client gets one failed event (a browser's
    EventSource cannot read an HTTP error); a client that did not ask for a stream gets a
    JSON 400 that says how to ask."""
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(force_instance=True)
    try:
        for path, code in ((f"gh/{repo.gh_spec}/main?gpu=lots", 400), ("nope/a/b/main", 404),
                           ("gh/..%2F../main", 400)):
            url = f"{binderlab.public_url}build/{path}"
            stream = await client.fetch(url, headers={"Accept": "text/event-stream"},
                                        raise_error=False)
            assert stream.code == 200, (path, stream.code, stream.body)
            [line] = [x for x in stream.body.decode().splitlines() if x.startswith("data:")]
            event = json.loads(line[len("data:"):])
            assert (event["phase"], event["status_code"]) == ("failed", code), (path, event)
            plain = await client.fetch(url, raise_error=False)
            assert plain.code == 400, (path, plain.code, plain.body)
            assert "text/event-stream" in json.loads(plain.body)["message"]
    finally:
        client.close()


def test_the_launch_log_table_and_the_json_schema_agree():
    import re

    from binderlab.launch import events, launchlog

    table = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", launchlog.__doc__, re.M))
    schema = events.schema()["$defs"]["launch_record"]
    assert set(table) == set(schema["properties"]) == set(schema["required"])
    json_types = {"int": "integer", "str": "string", "bool": "boolean", "float": "number"}
    for key, kind in table.items():
        declared = schema["properties"][key].get("type")
        assert declared in (None, json_types[kind]), key  # (enums and consts name no type)
