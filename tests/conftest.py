"""Fixtures for binderlab's tests: a git host on 127.0.0.1 and a real `binderlab up`.

Everything is real: the Docker engine, repo2docker (through the test buildx plugin),
JupyterHub, configurable-http-proxy. tests/harness/setup.sh provides them.
"""

import subprocess

import docker
import pytest

from tests.harness.gitserver import GitServer
from tests.harness.leftovers import pytest_sessionfinish  # noqa: F401 (end-of-run check)
from tests.harness.service import BASE_IMAGE, Service, remove_prefix


def pytest_collection_modifyitems(items):
    for item in items:
        if "docker" in item.keywords or "browser" in item.keywords:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    try:
        client.ping()
    except Exception as e:  # the tests need the engine: fail, do not skip
        pytest.fail(f"No Docker engine answers ({e}); run tests/harness/setup.sh first.")
    client.images.get(BASE_IMAGE)
    yield client
    client.close()


@pytest.fixture(scope="session")
def git_server(tmp_path_factory):
    server = GitServer(tmp_path_factory.mktemp("git"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def service(docker_client, git_server, tmp_path_factory):
    """`binderlab up` with its own ports and image prefix, shared by the session's tests."""
    svc = Service(tmp_path_factory.mktemp("binderlab"), git_server.url, "up")
    svc.start()
    yield svc
    svc.stop()
    remove_prefix(docker_client, svc.image_prefix)


def _services(docker_client, git_server, tmp_path_factory):
    started = []

    def make(command="serve", **kwargs) -> Service:
        svc = Service(tmp_path_factory.mktemp(f"binderlab-{command}"), git_server.url,
                      command, **kwargs)
        started.append(svc)
        return svc.start()

    yield make
    for svc in started:
        svc.stop()
        remove_prefix(docker_client, svc.image_prefix)


@pytest.fixture
def make_service(docker_client, git_server, tmp_path_factory):
    """Start extra services (serve-only, other settings) that are stopped after the test."""
    yield from _services(docker_client, git_server, tmp_path_factory)


@pytest.fixture(scope="module")
def make_module_service(docker_client, git_server, tmp_path_factory):
    """``make_service`` for a module-scoped fixture: one start shared by the module's tests
    that use the same settings, stopped after its last test. Only for tests whose
    assertions no other test's launches can change (their own repositories, no counts of
    the service's state)."""
    yield from _services(docker_client, git_server, tmp_path_factory)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure in a test that used a service (the session's, or a fixture's: a shared
    one too), show its logs and the containers."""
    report = yield
    if report.when == "call" and report.failed:
        for name, svc in (getattr(item, "funcargs", None) or {}).items():
            if isinstance(svc, Service):
                report.sections.append((f"binderlab log ({name})", svc.log()))
        if "docker_client" in getattr(item, "fixturenames", ()):
            ps = subprocess.run(["docker", "ps", "-a"], capture_output=True, text=True).stdout
            report.sections.append(("docker ps -a", ps))
    return report
