"""An OAuth2/OpenID Connect provider on 127.0.0.1 for the hub's authenticators in tests:
oauth2-mock-server (npm) run by tests/browser/oidc_server.mjs."""

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

BROWSER_DIR = Path(__file__).resolve().parent.parent / "browser"


class OIDCProvider:
    """One provider process; every login it grants is ``user``'s. ``requests()`` lists the
    endpoints it answered (``authorize``, ``token``, ``userinfo``), in order."""

    def __init__(self, user: str):
        node = shutil.which("node")
        assert node, "node is not on PATH (tests/test_browser.py says what to install)"
        assert (BROWSER_DIR / "node_modules" / "oauth2-mock-server").is_dir(), \
            "oauth2-mock-server is missing: run tests/harness/setup.sh"
        self.user = user
        self.proc = subprocess.Popen(
            [node, str(BROWSER_DIR / "oidc_server.mjs"), "--user", user],
            cwd=BROWSER_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue = queue.Queue()
        self._seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self._lines.get(timeout=30)
        except queue.Empty:
            first = None
        if not first or "issuer" not in first:
            self.stop()
            raise RuntimeError(f"oidc_server.mjs did not start: {self.proc.stderr.read()}")
        self.issuer: str = first["issuer"]

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self._lines.put(json.loads(line))

    def requests(self) -> list[str]:
        while not self._lines.empty():
            self._seen.append(self._lines.get())
        return [r["request"] for r in self._seen]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
