"""The end-of-run check: nothing this test run started is left running or stored.

"What this run started" is identified positively, since other runs share the machine and
the engine: every process the run starts inherits ``BINDERLAB_MARK_TEST_RUN=<run id>`` (set
here, before any test; JupyterHub's services get it through jupyterhub_config.py's
``BINDERLAB_MARK_*`` rule), and the containers, networks, volumes and images the run creates carry
the run id in their image prefix or name, or the label ``binderlab.test.run=<run id>``
(``Service`` uses ``image_prefix()``; a test creating its own should use ``name()`` or
``LABEL``). The check is a pytest plugin (tests/conftest.py loads it): when something is
left, the run fails and names it.
"""

import os
import time
import uuid

import pytest

from binderlab.commands.processes import MARK_PREFIX, marked

MARK = MARK_PREFIX + "TEST_RUN"
LABEL = "binderlab.test.run"
RUN_ID = uuid.uuid4().hex[:10]
os.environ[MARK] = RUN_ID  # before any test starts anything: every child inherits it


def image_prefix() -> str:
    """An image prefix unique to one service of this run (and naming the run)."""
    return f"binderlabtest{RUN_ID}{uuid.uuid4().hex[:6]}/"


def name(what: str) -> str:
    """A container or network name this run's check recognises."""
    return f"binderlabtest-{RUN_ID}-{what}"


def find(client=None) -> list[str]:
    """What this run left: processes (other than this one), containers, networks, volumes
    (users' persistent ones), images."""
    left = [f"process {p.pid}: {p.command[:160]}" for p in marked(MARK, RUN_ID)]
    if client is None:
        return left

    def ours(names, labels) -> bool:
        return (labels or {}).get(LABEL) == RUN_ID or any(
            f"binderlabtest{RUN_ID}" in n or f"binderlabtest-{RUN_ID}" in n for n in names)

    # the low-level lists: one call each, so containers that other runs remove meanwhile
    # cannot make the check itself fail
    for c in client.api.containers(all=True):
        names = [n.lstrip("/") for n in c.get("Names") or []]
        if ours([*names, c.get("Image") or ""], c.get("Labels")):
            left.append(f"container {names[0] if names else c['Id'][:12]} ({c.get('State')},"
                        f" image {c.get('Image')})")
    for n in client.api.networks():
        if ours([n.get("Name", "")], n.get("Labels")):
            left.append(f"network {n.get('Name')}")
    for v in client.api.volumes().get("Volumes") or []:
        labels = v.get("Labels") or {}
        # a logged-in user's volume names the image prefix (the run id) of its service
        if ours([v.get("Name", ""), labels.get("binderlab.image-prefix", "")], labels):
            left.append(f"volume {v.get('Name')}")
    for i in client.api.images():
        tags = [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
        if ours(tags, i.get("Labels")):
            left.append(f"image {', '.join(tags) or i['Id'][:19]}")
    return left


def mounts_under(base) -> list[str]:
    """Mounts this run made under its temporary folder (the warm pool's mount slots,
    sessions/poolmounts.py): a service that stops unmounts them."""
    if base is None:
        return []
    prefix = str(base.resolve()) + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if len(line.split()) > 4]
    except OSError:
        return []
    return [f"mount {p}" for p in points if p.startswith(prefix)]


def settle(client=None, timeout: float = 20) -> list[str]:
    """``find``, after giving what is shutting down a moment to finish (a stopping hub)."""
    deadline = time.monotonic() + timeout
    while True:
        left = find(client)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def _engine():
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception:
        return None  # a run without an engine created nothing in it


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("BINDERLAB_SKIP_LEFTOVER_CHECK"):
        return
    client = _engine()
    left = settle(client)
    factory = getattr(session.config, "_tmp_path_factory", None)  # pytest's own tmp_path
    left += mounts_under(factory.getbasetemp() if factory is not None else None)
    if client is not None:
        client.close()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = ("\nLEFT BEHIND by this test run (run id " + RUN_ID + "):\n  "
                + "\n  ".join(left) + "\n")
        if reporter is not None:
            reporter.write_line(text, red=True)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
