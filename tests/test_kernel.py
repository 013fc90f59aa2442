"""What thebe does with `ready`: talk to the session's Jupyter API from a course page's
origin with the token in a header, then run code over the kernel websocket (?token=)."""

import json
import uuid

import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness.sse import follow

pytestmark = pytest.mark.docker

ORIGIN = "https://course.example.org"


async def run_code(ws_url: str, code: str, timeout: float = 60) -> str:
    """Execute ``code`` on a kernel's websocket; return what it printed."""
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Origin": ORIGIN},
                                               request_timeout=timeout))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "thebe",
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False},
    }))
    out = []
    while True:
        raw = await conn.read_message()
        assert raw is not None, "kernel websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            conn.close()
            return "".join(out)


async def test_thebe_style_kernel_use(service, git_server):
    repo = git_server.create("dockerfile")
    ready = follow(f"{service.url}build/gh/{repo.gh_spec}/main")[-1]
    assert ready["phase"] == "ready", ready
    headers = {"Authorization": f"token {ready['token']}", "Origin": ORIGIN}

    # CORS preflight, as a browser sends it before thebe's POST
    preflight = requests.options(ready["url"] + "api/sessions", timeout=20, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers.get("Access-Control-Allow-Origin") in ("*", ORIGIN)

    session = requests.post(ready["url"] + "api/sessions", headers=headers, timeout=60, json={
        "path": "thebe.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    kernel_id = session.json()["kernel"]["id"]

    ws_base = ready["url"].replace("http://", "ws://", 1)
    ws_url = f"{ws_base}api/kernels/{kernel_id}/channels?token={ready['token']}"
    assert (await run_code(ws_url, "print(6 * 7)")).strip() == "42"

    # the same websocket without the token is refused
    with pytest.raises(HTTPClientError):
        await run_code(f"{ws_base}api/kernels/{kernel_id}/channels", "print(1)", timeout=10)
