"""The end-of-run check (tests/harness/leftovers.py) fails a run that leaves something
behind, and names it; a run that cleans up passes. Checked on nested pytest runs, each with
a run id of its own, so this run's own check is not involved."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from binderlab.commands.processes import marked
from tests.harness import leftovers
from tests.harness.service import BASE_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TOP = Path(__file__).resolve().parents[1]

LEAKY = f"""
import subprocess
from tests.harness import leftovers

def test_leaks():
    subprocess.Popen(["sleep", "600"], start_new_session=True)  # parent 1 once pytest ends
    subprocess.run(["docker", "create", "--name", leftovers.name("forgotten"),
                    {BASE_IMAGE!r}, "true"], check=True, capture_output=True)
    subprocess.run(["docker", "volume", "create", "--label", f"{{leftovers.LABEL}}="
                    f"{{leftovers.RUN_ID}}", "binderlab-user-forgotten-" + leftovers.RUN_ID],
                   check=True, capture_output=True)
"""

TIDY = """
import subprocess

def test_cleans_up():
    proc = subprocess.Popen(["sleep", "600"])
    proc.kill()
    proc.wait()
"""


def nested_run(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    test = tmp_path / "test_nested.py"
    test.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.harness.leftovers", "--rootdir", str(tmp_path), str(test)],
        cwd=TOP, env={**os.environ, "PYTHONPATH": str(TOP)}, capture_output=True,
        text=True, timeout=300)


def test_a_run_that_leaves_a_process_a_container_and_a_volume_fails(tmp_path, docker_client):
    out = nested_run(tmp_path, LEAKY)
    run_id = re.search(r"run id (\w+)", out.stdout)
    try:
        assert out.returncode == 1, out.stdout
        assert "1 passed" in out.stdout  # the test passed: the run failed for the leftovers
        assert "LEFT BEHIND" in out.stdout and "sleep 600" in out.stdout, out.stdout
        assert "container binderlabtest-" in out.stdout and "forgotten" in out.stdout
        assert "volume binderlab-user-forgotten-" in out.stdout  # found by its label
    finally:
        if run_id:
            for p in marked(leftovers.MARK, run_id.group(1)):
                os.kill(p.pid, signal.SIGKILL)
            for c in docker_client.api.containers(all=True):
                if any(run_id.group(1) in n for n in c["Names"]):
                    docker_client.api.remove_container(c["Id"], force=True)
            for v in docker_client.api.volumes().get("Volumes") or []:
                if v["Name"].endswith(run_id.group(1)):
                    docker_client.api.remove_volume(v["Name"], force=True)


def test_a_run_that_cleans_up_passes(tmp_path):
    out = nested_run(tmp_path, TIDY)
    assert out.returncode == 0, out.stdout
    assert "LEFT BEHIND" not in out.stdout
