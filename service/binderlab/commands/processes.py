"""Find and stop the processes one `binderlab up` started, by a marker in their environment.

`binderlab up` puts ``BINDERLAB_MARK_UP=<id>`` into the hub's environment; the hub passes its
environment to the proxy, and jupyterhub_config.py hands every ``BINDERLAB_MARK_*``
variable to the hub's services (JupyterHub gives services a clean environment otherwise).
A process that lost its parent (parent 1) still carries the marker, so what one run started
is found positively, never by guessing from names.
"""

import os
import signal
import time
from dataclasses import dataclass

MARK_PREFIX = "BINDERLAB_MARK_"
UP_MARK = MARK_PREFIX + "UP"


@dataclass
class Process:
    pid: int
    command: str


def marked(name: str, value: str, exclude: set[int] = frozenset()) -> list[Process]:
    """Processes whose environment holds ``name=value`` (readable ones: own user or root)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            if needle not in environ:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or another user's
            continue
        if command:  # a zombie has none: it is dead already, its parent reaps it
            found.append(Process(int(entry), command))
    return found


def is_proxy(process: Process) -> bool:
    return "configurable-http-proxy" in process.command


def stop(processes: list[Process], grace: float = 10) -> list[Process]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns what had to be killed."""
    for p in processes:
        _signal(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p.pid)]
    for p in alive:
        _signal(p.pid, signal.SIGKILL)
    return alive


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
