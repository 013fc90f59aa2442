"""A claim on Kubernetes copies the commit's files into the running pooled pod (issue 14).

No cluster here: a stand-in for the one part that cannot exist, the API server's pod list
and its exec endpoint, on 127.0.0.1. The exec stand-in speaks Kubernetes' websocket exec
protocol (v4.channel.k8s.io) and runs the command it is given for real, in a folder that
plays the pod's $REPO_DIR. Everything else is real: kubernetes_asyncio's client and stream
API, the command binderlab sends, the archive the service keeps, tar, and the hub backend's
claim path that chooses the pod by its binderlab.user annotation.
"""

import asyncio
import io
import json
import os
import tarfile

import pytest
from aiohttp import WSMsgType, web

from binderlab.errors import LaunchError
from binderlab.sessions.pooled import HubPoolBackend
from binderlab.sessions.warmsessions import WarmSession

COMMIT = "c" * 40


class FakeApiServer:
    """GET .../pods (the list) and .../pods/<name>/exec (websocket) of one namespace."""

    def __init__(self, repo_dir, pods):
        self.repo_dir, self.pods, self.execs = repo_dir, pods, []

    async def list_pods(self, request):
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "items": [
            {"metadata": {"name": name, "annotations": annotations},
             "status": {"phase": phase}} for name, annotations, phase in self.pods]})

    async def exec(self, request):
        command = request.query.getall("command")
        self.execs.append((request.match_info["pod"], request.query.get("container"),
                           command))
        ws = web.WebSocketResponse(protocols=["v4.channel.k8s.io"])
        await ws.prepare(request)
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "REPO_DIR": str(self.repo_dir)})

        async def feed():
            async for message in ws:
                if message.type == WSMsgType.BINARY and message.data[:1] == b"\x00":
                    process.stdin.write(message.data[1:])
                    await process.stdin.drain()

        feeding = asyncio.ensure_future(feed())
        out, err = await process.communicate()
        feeding.cancel()
        if err:
            await ws.send_bytes(b"\x02" + err)
        status = {"status": "Success"} if process.returncode == 0 else {
            "status": "Failure", "message": "command terminated with non-zero exit code",
            "reason": "NonZeroExitCode", "details": {"causes": [
                {"reason": "ExitCode", "message": str(process.returncode)}]}}
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
        return ws


@pytest.fixture
async def api(tmp_path):
    from kubernetes_asyncio import client

    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    server = FakeApiServer(repo_dir, [("jupyter-binderpool-1", {"binderlab.user":
                                                                "binderpool-1"}, "Running"),
                                      ("jupyter-other", {"binderlab.user": "x"}, "Running")])
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods", server.list_pods)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/exec", server.exec)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    core = client.CoreV1Api(client.ApiClient(configuration))
    yield server, core
    await core.api_client.close()
    await runner.cleanup()


def commit_archive(content_dir, files: dict[str, bytes]):
    content_dir.mkdir(exist_ok=True)
    path = content_dir / f"{COMMIT}.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


class Tracker:
    namespace, label_selector = "binder", "component=singleuser-server"

    def __init__(self, core):
        self.core = core

    async def api(self):
        return self.core


def backend(core, content_dir):
    return HubPoolBackend(launcher=None, engine=None, content_dir=content_dir,
                          username_prefix="binderpool-", pod_tracker=Tracker(core))


async def test_claim_copies_the_commit_into_the_running_pod(api, tmp_path):
    server, core = api
    big = os.urandom(700 << 10)  # several stdin frames
    commit_archive(tmp_path / "content", {"lesson.ipynb": b'{"cells": []}',
                                          "data/big.bin": big})
    session = WarmSession("binderpool-1", "registry/binderlab/env-x", "t" * 20,
                          "http://hub/user/binderpool-1/", 0.0)
    await backend(core, tmp_path / "content").claim(session, {"content": COMMIT})
    repo_dir = server.repo_dir
    assert (repo_dir / "lesson.ipynb").read_bytes() == b'{"cells": []}'
    assert (repo_dir / "data/big.bin").read_bytes() == big
    ((pod, container, command),) = server.execs
    assert (pod, container) == ("jupyter-binderpool-1", "notebook")  # by its annotation
    assert command[:2] == ["sh", "-c"]


async def test_a_failing_copy_says_what_tar_said(api, tmp_path):
    server, core = api
    commit_archive(tmp_path / "content", {"lesson.ipynb": b"{}"})
    server.repo_dir = tmp_path / "gone"  # the image's REPO_DIR does not exist in the pod
    session = WarmSession("binderpool-1", "img", "t" * 20, "http://x/", 0.0)
    with pytest.raises(LaunchError) as failed:
        await backend(core, tmp_path / "content").claim(session, {"content": COMMIT})
    assert "Could not copy the repository content" in str(failed.value)
    assert "gone" in str(failed.value)  # the shell's own message reaches the launch log
    assert failed.value.status_code == 500


async def test_a_pooled_user_without_a_running_pod_is_refused(api, tmp_path):
    _, core = api
    commit_archive(tmp_path / "content", {"a": b"1"})
    session = WarmSession("binderpool-9", "img", "t" * 20, "http://x/", 0.0)
    with pytest.raises(LaunchError, match="no running pod"):
        await backend(core, tmp_path / "content").claim(session, {"content": COMMIT})
