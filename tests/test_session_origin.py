"""Sessions on origins of their own (issue 12), in a real browser behind the shipped nginx site.

A repository controls what its session serves. The "session" here is a small server that
serves what such a repository could (through jupyter-server-proxy or a server extension):
a page that registers a service worker for scope "/", whose script carries
`Service-Worker-Allowed: /`, and then reads another session's page. Chromium opens it
directly (the control: the attack works there) and through deploy/docker's nginx site with
the deployment's names (binder.example.org, hub.example.org, <user>.hub.example.org), where
it must stay inside its own session.
"""

import base64
import hashlib
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.test_browser import BROWSER_DIR, CHROMIUM, node  # noqa: F401 (fixture)
from tests.test_deploy_docker import HOST, HUB_HOST, free_port, need, nginx_site, nginx_test

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

PAGE = b"<!doctype html><title>session</title><body>a session page</body>"
WORKER = b"self.addEventListener('fetch', e => e.respondWith(new Response('hijacked')));"


class SessionLike(BaseHTTPRequestHandler):
    """What a session may serve: anything, with any headers."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path.endswith("/sw.js"):
            body, headers = WORKER, {"Content-Type": "text/javascript",
                                     "Service-Worker-Allowed": "/"}
        elif path == "/user/other/secret":
            body, headers = b"other session's notebook", {"Content-Type": "text/plain"}
        else:
            body, headers = PAGE, {"Content-Type": "text/html"}
        self.send_response(200)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def spki_hash(cert) -> str:
    """base64(sha256(SubjectPublicKeyInfo)), for --ignore-certificate-errors-spki-list."""
    pem = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pem,
                         check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def deployed(tmp_path):
    """nginx with the shipped site; hub and service upstreams are session-like servers."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), SessionLike) for _ in range(2)]
    for httpd in servers:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hub_port, service_port = (s.server_address[1] for s in servers)
    https, http = free_port(), free_port()
    main = nginx_site(tmp_path, https, http, service_port, hub_port)
    assert nginx_test(main).returncode == 0
    nginx = subprocess.Popen([need("nginx"), "-c", str(main), "-p", str(main.parent),
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        yield {"https": https, "hub": hub_port, "cert": tmp_path / "cert.pem"}
    finally:
        nginx.terminate()
        nginx.wait(10)
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


def _get_via_nginx(deployed, host: str, path: str) -> requests.Response:
    for _ in range(50):
        try:  # the certificate is the test's own; Chromium below checks it by its key
            return requests.get(f"https://127.0.0.1:{deployed['https']}{path}",
                                headers={"Host": host}, verify=False, timeout=5)
        except requests.ConnectionError:
            threading.Event().wait(0.1)
    raise AssertionError("nginx did not answer")


def test_nginx_strips_service_worker_allowed_from_sessions(deployed):
    direct = requests.get(f"http://127.0.0.1:{deployed['hub']}/user/evil/sw.js", timeout=5)
    assert direct.headers["Service-Worker-Allowed"] == "/"  # the session does send it
    through = _get_via_nginx(deployed, f"evil.{HUB_HOST}", "/user/evil/sw.js")
    assert through.status_code == 200 and through.content == WORKER
    assert "Service-Worker-Allowed" not in through.headers


def test_a_session_cannot_take_over_the_service_or_other_sessions(deployed, node):  # noqa: F811
    _get_via_nginx(deployed, HOST, "/")  # nginx is up
    base = f":{deployed['https']}"
    config = {
        "direct": f"http://127.0.0.1:{deployed['hub']}/user/evil/",
        # one origin for every session (the layout before): the other one is a path away
        "directOther": "/user/other/secret",
        "session": f"https://evil.{HUB_HOST}{base}/user/evil/",
        "otherSecret": f"https://other.{HUB_HOST}{base}/user/other/secret",
        "other": f"https://other.{HUB_HOST}{base}/user/other/",
        "service": f"https://{HOST}{base}/",
        "spki": spki_hash(deployed["cert"]),
    }
    proc = subprocess.run([node, str(BROWSER_DIR / "service_worker.mjs"), json.dumps(config)],
                          cwd=BROWSER_DIR, capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                               "BINDERLAB_CHROMIUM": CHROMIUM})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr
    result = json.loads(lines[-1])
    assert result["ok"], result["error"]
    # the control: served as the session serves it, the page gets a worker over "/" and
    # reads the other session's page (same origin)
    assert result["direct"]["rootScope"] == f"http://127.0.0.1:{deployed['hub']}/"
    assert result["direct"]["otherSession"] == "other session's notebook"
    # deployed: no worker beyond its own path, and another session is another origin
    deployed_attack = result["deployed"]
    assert "rootScope" not in deployed_attack, deployed_attack
    assert "SecurityError" in deployed_attack["rootScopeError"]
    assert deployed_attack["ownScope"] == config["session"]
    assert "otherSession" not in deployed_attack, deployed_attack
    assert "TypeError" in deployed_attack["otherSessionError"]  # refused by CORS
    # the service's pages and the other session are not controlled by the worker
    assert result["serviceControlled"] is False and result["otherControlled"] is False
    assert "hijacked" not in result["serviceText"] + result["otherText"]
