"""Fixtures of the in-process tier: a MockBinderLab per test, the test git server."""

import pytest

from tests.inprocess.mocking import EventStream, MockBinderLab, mock_config


@pytest.fixture
async def start_binderlab(git_server, tmp_path):
    """``await start_binderlab(LaunchLimits={...}, ...)`` -> a started MockBinderLab."""
    started = []

    async def start(**sections) -> MockBinderLab:
        app = MockBinderLab(config=mock_config(tmp_path / f"app{len(started)}",
                                               git_server.url, **sections))
        app.initialize([])
        await app.start_in_loop()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


@pytest.fixture
async def binderlab(start_binderlab):
    return await start_binderlab()


@pytest.fixture
def streams():
    """Open event streams; those a test did not finish are closed after it."""
    opened = []

    def open_stream(app, path, params=""):
        stream = EventStream(app.public_url, path, params)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


@pytest.fixture
def repo(git_server):
    """A fresh requirements.txt repository on the test git server."""
    return git_server.create("requirements", owner="inproc")
