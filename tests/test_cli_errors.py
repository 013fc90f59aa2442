"""The CLI follows the service's rule: a checkout repo2docker refuses is the checkout's
fault; the command says what is wrong and exits non-zero, with no traceback."""

import subprocess
import sys

import pytest

PY34 = "dependencies:\n  - python=3.4\n"


@pytest.fixture
def py34_checkout(tmp_path):
    checkout = tmp_path / "py34"
    checkout.mkdir()
    (checkout / "environment.yml").write_text(PY34)
    return checkout


def binderlab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "binderlab", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_env_hash_of_a_refused_checkout(py34_checkout, tmp_path):
    result = binderlab("env-hash", str(py34_checkout), cwd=tmp_path)
    assert result.returncode == 1
    assert "Python version 3.4 on linux-64 is not supported" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.docker
def test_build_of_a_refused_checkout(py34_checkout, tmp_path, docker_client):
    result = binderlab("build", str(py34_checkout), "--BinderLab.image_prefix=binderlab-cli/",
                       f"--BinderLab.state_dir={tmp_path / 'state'}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Python version 3.4 on linux-64 is not supported" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no image name printed


def test_env_hash_of_a_good_checkout_still_prints_the_key(tmp_path):
    checkout = tmp_path / "ok"
    checkout.mkdir()
    (checkout / "requirements.txt").write_text("numpy==2.1\n")
    result = binderlab("env-hash", str(checkout), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("fingerprint: env-")


def test_env_hash_names_the_start_script_and_ignores_its_content(tmp_path):
    keys = []
    for stage in ("one", "two"):
        checkout = tmp_path / stage
        checkout.mkdir()
        (checkout / "requirements.txt").write_text("numpy==2.1\n")
        (checkout / "start").write_text(f'#!/bin/sh\nexport STAGE={stage}\nexec "$@"\n')
        result = binderlab("env-hash", str(checkout), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "start:       start (runs from the session's content)" in result.stdout
        keys.append(result.stdout.splitlines()[0])
    assert keys[0] == keys[1] and keys[0].startswith("fingerprint: env-")
