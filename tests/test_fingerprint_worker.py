"""The fingerprint worker pool under attack and faults: huge files, a stalled network read,
a parser that eats memory, a worker killed mid-fingerprint or while idle.

Every fault is real: the worker processes are real, the stall is a TCP server on 127.0.0.1
that accepts and never answers (what repo2docker's R/Julia build packs do against a host that
hangs), the memory hog allocates for real, the kill is SIGKILL.
"""

import asyncio
import os
import signal
import socket
import textwrap
from pathlib import Path

import pytest

from binderlab.errors import LaunchError
from binderlab.fingerprint.worker import FingerprintWorker

R2D_ARGS = ["--user-id", "1000", "--user-name", "jovyan"]

# a repo2docker config whose first build pack misbehaves when a marker file is present;
# without a marker, repo2docker's own build packs decide as usual
FAULTY_CONFIG = textwrap.dedent("""
    import os, signal, socket
    from repo2docker.buildpacks import PythonBuildPack
    from repo2docker.buildpacks.base import BaseImage

    class FaultyBuildPack(BaseImage):
        def detect(self):
            if os.path.exists("stall.txt"):  # an HTTP request without a timeout
                port = int(open("stall.txt").read())
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                s.recv(1)
            if os.path.exists("hog.txt"):  # a parser that balloons
                blocks = [bytearray(64 << 20) for _ in range(64)]
                del blocks
            if os.path.exists("die.txt"):
                os.kill(os.getpid(), signal.SIGKILL)
            return False

    c.Repo2Docker.buildpacks = [FaultyBuildPack, PythonBuildPack]
""")


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "r2d_config.py"
    path.write_text(FAULTY_CONFIG)
    return [*R2D_ARGS, "--config", str(path)]


def checkout(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True)
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return root


GOOD = {"requirements.txt": "numpy==1.26.4\n"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
async def pool(config):
    pools = []

    def make(**traits):
        p = FingerprintWorker(config, **traits)
        pools.append(p)
        return p

    yield make
    for p in pools:
        procs = list(p._all)
        p.close()
        for proc in procs:
            await proc.wait()
            assert not alive(proc.pid)


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


async def test_good_checkout_gets_an_env_key(pool, tmp_path):
    workers = pool()
    result = await workers.compute(checkout(tmp_path / "co", GOOD), "t" * 40)
    assert result.kind == "env" and result.files == ["requirements.txt"]


async def test_huge_environment_file_is_refused_before_it_is_read(pool, tmp_path):
    """20 MB environment.yml: 413 with the file's name and size, the worker's memory never
    holds it, and the same worker serves the next launch."""
    workers = pool()
    deps = "".join(f"  - package-{i}=1.0.{i}\n" for i in range(700_000))
    big = checkout(tmp_path / "big", {"environment.yml": "dependencies:\n" + deps})
    assert big.joinpath("environment.yml").stat().st_size > 20e6
    with pytest.raises(LaunchError) as e:
        await workers.compute(big, "b" * 40)
    assert e.value.status_code == 413
    assert "environment.yml is 2" in str(e.value) and "1 MiB" in str(e.value)
    (proc,) = workers._all
    peak_kb = int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text()
                       .splitlines() if line.startswith("VmHWM")).split()[1])
    assert peak_kb < 20_000 + 150_000, peak_kb  # never read: far below the 20 MB it would need
    result = await workers.compute(checkout(tmp_path / "co", GOOD), "t" * 40)
    assert result.kind == "env" and workers.replaced == 0


async def test_large_file_repo2docker_does_not_open_is_not_refused(pool, tmp_path):
    workers = pool()
    files = {**GOOD, "data.bin": os.urandom(3 << 20)}  # never opened by the build packs
    result = await workers.compute(checkout(tmp_path / "co", files), "t" * 40)
    assert result.kind == "env"


async def test_stalled_network_read_hits_the_time_limit_and_others_go_on(pool, tmp_path,
                                                                        silent_server):
    workers = pool(timeout=3, workers=2)
    stalled = checkout(tmp_path / "stall", {**GOOD, "stall.txt": str(silent_server)})
    stuck = asyncio.ensure_future(workers.compute(stalled, "s" * 40))
    await asyncio.sleep(0.5)
    # a launch of another repository is not held up by the stuck one
    other = await workers.compute(checkout(tmp_path / "co", GOOD), "t" * 40)
    assert other.kind == "env"
    assert not stuck.done()
    with pytest.raises(LaunchError) as e:
        await stuck
    assert e.value.status_code == 422 and "longer than 3 s" in str(e.value)
    assert workers.replaced == 1
    again = await workers.compute(checkout(tmp_path / "co2", GOOD), "t" * 40)
    assert again.key == other.key


async def test_memory_hog_gets_a_clear_error_not_the_oom_killer(pool, tmp_path):
    workers = pool(memory_mb=512)
    with pytest.raises(LaunchError) as e:
        await workers.compute(checkout(tmp_path / "hog", {**GOOD, "hog.txt": ""}), "h" * 40)
    assert e.value.status_code == 413 and "512 MiB" in str(e.value)
    result = await workers.compute(checkout(tmp_path / "co", GOOD), "t" * 40)
    assert result.kind == "env"


async def test_worker_dying_mid_fingerprint_fails_that_launch_only(pool, tmp_path):
    workers = pool()
    with pytest.raises(LaunchError) as e:
        await workers.compute(checkout(tmp_path / "die", {**GOOD, "die.txt": ""}), "d" * 40)
    assert e.value.status_code == 503 and "signal 9" in str(e.value)
    result = await workers.compute(checkout(tmp_path / "co", GOOD), "t" * 40)
    assert result.kind == "env" and workers.replaced == 1


async def test_worker_killed_while_idle_is_replaced(pool, tmp_path):
    """SIGKILL from outside (the OOM killer, an operator): the next launch does not see
    BrokenProcessPool or any error."""
    workers = pool()
    first = await workers.compute(checkout(tmp_path / "a", GOOD), "t" * 40)
    (proc,) = workers._all
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    second = await workers.compute(checkout(tmp_path / "b", GOOD), "t" * 40)
    assert second == first
    assert workers.replaced == 1 and proc not in workers._all


def test_worker_options_have_help():
    for name in ("workers", "timeout", "memory_mb", "max_file_kb"):
        trait = FingerprintWorker.class_traits()[name]
        assert trait.metadata.get("config") and len(trait.help) > 40, name


async def test_max_file_kb_is_the_limit(pool, tmp_path):
    workers = pool(max_file_kb=1)
    deps = "".join(f"numpy-{i}==1.0\n" for i in range(200))  # ~3 KB
    with pytest.raises(LaunchError) as e:
        await workers.compute(checkout(tmp_path / "co", {"requirements.txt": deps}), "t" * 40)
    assert e.value.status_code == 413 and "requirements.txt" in str(e.value)
    assert str(e.value).endswith("up to 1 KiB.")


def test_a_stuck_worker_does_not_outlive_a_killed_service(tmp_path, config, silent_server):
    """The service is SIGKILLed while its worker is stuck in a network read: the worker
    goes too (it has its own session, so nothing else would stop it)."""
    import subprocess
    import sys
    import time

    stalled = checkout(tmp_path / "stall", {**GOOD, "stall.txt": str(silent_server)})
    script = textwrap.dedent(f"""
        import asyncio, sys
        from binderlab.fingerprint.worker import FingerprintWorker
        async def main():
            workers = FingerprintWorker({config!r}, timeout=600)
            task = asyncio.ensure_future(workers.compute({str(stalled)!r}, "s" * 40))
            await asyncio.sleep(3)
            (proc,) = workers._all
            print(proc.pid, flush=True)
            await task
        asyncio.run(main())
    """)
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(service.stdout.readline())
    assert alive(worker)
    service.kill()
    service.wait()
    for _ in range(100):
        if not alive(worker):
            break
        time.sleep(0.1)
    assert not alive(worker)
