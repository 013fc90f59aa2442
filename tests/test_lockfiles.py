"""Lockfile build packs (binderlab.buildpacks): uv.lock built for real (uv and the locked
packages from PyPI), conda-lock.yml up to the Dockerfile repo2docker renders (conda channels
are unreachable here), and the fingerprint covering both like repo2docker's own build packs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from binderlab.buildpacks import LOCKFILE_BUILDPACKS, with_lockfile_buildpacks
from tests.harness.sse import follow, phases
from tests.test_kernel import run_code

HERE = Path(__file__).parent
CONFIG = str(HERE / "harness" / "repo2docker_config.py")
R2D_ARGS = ["--user-id", "1000", "--user-name", "jovyan", "--config", CONFIG]


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    # repo2docker's Dataverse provider would fetch its list of installations from the internet
    monkeypatch.setenv("R2D_DATAVERSE_INSTALLATIONS_URL", str(tmp_path / "none.json"))
    (tmp_path / "none.json").write_text('{"installations": []}')

    def make(case: str, **changes: str | None) -> Path:
        path = tmp_path / f"{case}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(HERE / "repos" / case, path)
        for name, text in changes.items():
            target = path / name.replace("__", "/")
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        return path

    return make


def fingerprint(path: Path) -> dict:
    # in a child process, as the service's worker computes it (the build-pack API reads
    # relative paths and records what it opens)
    code = ("import json, sys; from binderlab.fingerprint.buildpacks import _audit, compute;"
            "sys.addaudithook(_audit);"
            "print(json.dumps(compute(sys.argv[1], 'TREE', sys.argv[2:], None)))")
    out = subprocess.run([sys.executable, "-c", code, str(path), *R2D_ARGS], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def dockerfile(path: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "repo2docker", *R2D_ARGS, "--no-build",
                             "--debug", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def test_with_lockfile_buildpacks_keeps_dockerfiles_first():
    from repo2docker.app import Repo2Docker
    from repo2docker.buildpacks import CondaBuildPack, DockerBuildPack, PythonBuildPack

    packs = with_lockfile_buildpacks()
    assert packs.index(DockerBuildPack) < packs.index(LOCKFILE_BUILDPACKS[0])
    assert packs.index(LOCKFILE_BUILDPACKS[-1]) < packs.index(CondaBuildPack)
    assert packs.index(LOCKFILE_BUILDPACKS[0]) < packs.index(PythonBuildPack)
    assert set(packs) == set(Repo2Docker().buildpacks) | set(LOCKFILE_BUILDPACKS)
    assert with_lockfile_buildpacks(packs) == packs  # adding twice changes nothing


def test_uv_lock_is_keyed_by_its_environment_files(checkout):
    first = fingerprint(checkout("uv-lock"))
    assert first["kind"] == "env", first
    assert first["buildpack"] == "LocalUvLockBuildPack"
    assert first["files"] == ["pyproject.toml", "uv.lock"]
    # notebooks and other content do not count
    assert fingerprint(checkout("uv-lock", **{"new.ipynb": "{}", "README.md": "x"}))["key"] \
        == first["key"]
    # a different lock does
    lock = (HERE / "repos/uv-lock/uv.lock").read_text()
    bumped = checkout("uv-lock", **{"uv.lock": lock.replace('version = "1.17.0"',
                                                            'version = "1.16.0"')})
    assert fingerprint(bumped)["key"] != first["key"]
    # so does a .python-version next to it
    pinned = fingerprint(checkout("uv-lock", **{".python-version": "3.11\n"}))
    assert pinned["key"] != first["key"] and ".python-version" in pinned["files"]


def test_uv_lock_in_binder_folder_and_packaged_projects(checkout):
    moved = checkout("uv-lock")
    (moved / "binder").mkdir()
    for name in ("uv.lock", "pyproject.toml"):
        (moved / name).rename(moved / "binder" / name)
    fp = fingerprint(moved)
    assert fp["kind"] == "env" and fp["files"] == ["binder/pyproject.toml", "binder/uv.lock"]

    # a project that is a package is installed with the whole repository: keyed by tree
    project = (HERE / "repos/uv-lock/pyproject.toml").read_text()
    packaged = checkout("uv-lock", **{"pyproject.toml": project + (
        '\n[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n')})
    fp = fingerprint(packaged)
    assert fp["kind"] == "tree" and "repository's content" in fp["reason"]
    text = dockerfile(packaged)
    assert "uv sync --frozen --no-install-project" in text
    assert "uv sync --frozen --inexact &&" in text


def test_uv_dockerfile_syncs_frozen_with_uv_from_pypi(checkout):
    text = dockerfile(checkout("uv-lock"))
    assert "pip install --no-cache-dir uv==" in text
    assert "uv sync --frozen --no-install-project" in text
    # the lock has no ipykernel: it is added, pinned to the lock's versions
    assert "-c /tmp/uv-constraints.txt ipykernel" in text
    assert "ipykernel install --prefix /opt/venv --name python3" in text
    # the environment files are copied before the repository: notebook commits reuse layers
    copy = "COPY --chown=1000:1000 src/"
    assert text.index(copy + "uv.lock") < text.index(copy + " ")


def test_conda_lock_renders_an_install_of_the_lock_not_a_solve(checkout):
    fp = fingerprint(checkout("conda-lock"))
    assert fp["kind"] == "env" and fp["buildpack"] == "CondaLockBuildPack"
    assert fp["files"] == ["conda-lock.yml"]
    # an environment.yml next to the lock (its source) is neither applied nor keyed
    with_source = checkout("conda-lock", **{"environment.yml": "dependencies: [python=3.11]\n"})
    assert fingerprint(with_source)["key"] == fp["key"]
    text = dockerfile(with_source)
    assert '${MAMBA_EXE} create --yes -p ${CONDA_DIR}/envs/locked -f "conda-lock.yml"' in text
    assert "env update" not in text
    assert "--freeze-installed ipykernel" in text
    assert "/etc/profile.d/zz-conda-lock.sh" in text
    # a version change in the lock is a new environment
    lock = (HERE / "repos/conda-lock/conda-lock.yml").read_text()
    bumped = checkout("conda-lock", **{"conda-lock.yml": lock.replace("0.9.0", "0.8.10")})
    assert fingerprint(bumped)["key"] != fp["key"]


def test_conda_lock_that_is_not_a_lock_file_is_refused_clearly(checkout):
    path = checkout("conda-lock", **{"conda-lock.yml": "dependencies: [numpy]\n"})
    result = subprocess.run([sys.executable, "-m", "repo2docker", *R2D_ARGS, "--no-build",
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "not a conda-lock unified lock file" in result.stderr


@pytest.mark.docker
async def test_uv_lock_builds_and_its_kernel_has_the_locked_packages(service, git_server):
    repo = git_server.create("uv-lock")
    events = follow(f"{service.url}build/gh/{repo.gh_spec}/main", timeout=600)
    ready = events[-1]
    assert ready["phase"] == "ready", ready
    assert "building" in phases(events)
    assert ready["image"].startswith(service.image_prefix + "env-")

    import requests

    headers = {"Authorization": f"token {ready['token']}"}
    session = requests.post(ready["url"] + "api/sessions", headers=headers, timeout=60, json={
        "path": "lock.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    kernel = session.json()["kernel"]["id"]
    ws = (ready["url"].replace("http", "ws", 1)
          + f"api/kernels/{kernel}/channels?token={ready['token']}")
    out = await run_code(ws, "import sys, tabulate, six\n"
                             "print(sys.prefix, tabulate.__version__, six.__version__)")
    prefix, tabulate_version, six_version = out.split()
    assert prefix == "/srv/uv-env"
    assert (tabulate_version, six_version) == ("0.9.0", "1.17.0")  # what uv.lock says

    # a notebook-only commit launches the same image without a build
    repo.commit({"analysis.ipynb": "{}"}, "notebook only")
    runs = service.metric("binderlab_builder_runs_total")
    again = follow(f"{service.url}build/gh/{repo.gh_spec}/main")
    assert again[-1]["phase"] == "ready" and "building" not in phases(again)
    assert again[-1]["image"] == ready["image"]
    assert service.metric("binderlab_builder_runs_total") == runs


def test_operator_config_with_repo2dockers_own_base_image(checkout, tmp_path):
    """The README's two lines: repo2docker's own build packs and base image, lock files first.
    (That base image cannot be pulled here: this is checked up to the Dockerfile.)"""
    config = tmp_path / "operator_r2d_config.py"
    config.write_text("from binderlab.buildpacks import with_lockfile_buildpacks\n"
                      "c.Repo2Docker.buildpacks = with_lockfile_buildpacks()\n")
    result = subprocess.run([sys.executable, "-m", "repo2docker", "--config", str(config),
                             "--no-build", "--debug", str(checkout("uv-lock"))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    assert "FROM docker.io/library/buildpack-deps" in text
    # JupyterLab gets its own environment; the lock's is the kernel registered into it
    assert "uv venv ${APP_BASE}/jupyter" in text and "jupyterlab jupyterhub" in text
    assert "ipykernel install --prefix ${APP_BASE}/jupyter --name python3" in text
    assert "UV_PROJECT_ENVIRONMENT=${APP_BASE}/uv-env" in text


def test_uv_lock_with_local_path_sources_is_keyed_by_tree(checkout):
    """A lock that installs a folder of the repository (a [tool.uv.sources] path) cannot be
    installed from the lock alone: the sync runs after the repository is copied in."""
    lock = (HERE / "repos/uv-lock/uv.lock").read_text()
    local = ('\n[[package]]\nname = "mylib"\nversion = "0.1.0"\n'
             'source = { directory = "mylib" }\n')
    path = checkout("uv-lock", **{"uv.lock": lock + local})
    fp = fingerprint(path)
    assert fp["kind"] == "tree", fp
    text = dockerfile(path)
    assert "--no-install-project" not in text
    # the one sync comes after the repository's content
    copy_all = text.index("COPY --chown=1000:1000 src/ ")
    assert text.index("uv sync --frozen &&") > copy_all
