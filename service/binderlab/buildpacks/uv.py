"""A repo2docker build pack for projects locked with uv (``uv.lock`` + ``pyproject.toml``).

The lock is installed as it is: ``uv sync --frozen`` (uv from PyPI) into its own
environment, which becomes the ``python3`` kernel of the session. JupyterLab runs from a
separate server environment, so the locked environment holds exactly what the lock says
(plus ipykernel, pinned against the lock, when the lock has none).

The environment is installed in repo2docker's pre-assemble phase from ``uv.lock``,
``pyproject.toml`` and ``.python-version`` alone (``--no-install-project``): two commits that
change only notebooks share one image. A project that is a package (a ``[build-system]``, or
``tool.uv.package = true``) is installed afterwards with the whole repository, as
repo2docker does for ``setup.py``; the fingerprint then keys it by tree.

Settings are class attributes; change them in a subclass in the repo2docker config::

    class MyUv(UvLockBuildPack):
        server_prefix = "/opt/venv"   # the base image already runs JupyterLab from here
        server_packages = ()
"""

import os
import shlex
import tomllib

from repo2docker.buildpacks.base import BaseImage

LOCK = "uv.lock"
PROJECT = "pyproject.toml"
PYTHON_VERSION = ".python-version"


class UvLockBuildPack(BaseImage):
    """``uv.lock`` next to ``pyproject.toml`` (repository root or ``binder/``)."""

    #: the uv release installed from PyPI to run the sync
    uv_version = "0.13.8"
    #: where uv itself is installed (a small venv holding the ``uv`` wheel)
    uv_prefix = "${APP_BASE}/uv"
    #: the locked environment (``UV_PROJECT_ENVIRONMENT``), owned by the notebook user
    env_prefix = "${APP_BASE}/uv-env"
    #: the environment JupyterLab runs from; the lock's kernel is registered in it
    server_prefix = "${APP_BASE}/jupyter"
    #: installed into ``server_prefix`` with uv; empty when the base image has them there
    server_packages = ("jupyterlab", "jupyterhub")

    def detect(self) -> bool:
        return all(os.path.exists(self.binder_path(f)) for f in (LOCK, PROJECT))

    def _lock(self) -> dict:
        with open(self.binder_path(LOCK), "rb") as f:
            return tomllib.load(f)

    def _locked_names(self) -> frozenset[str]:
        return frozenset(p.get("name", "") for p in self._lock().get("package", []))

    def _local_sources(self) -> bool:
        """Whether the lock installs something from the repository other than the project
        itself (``[tool.uv.sources]`` paths, workspace members): then the environment
        needs the whole repository, not only the lock."""
        for package in self._lock().get("package", []):
            source = package.get("source", {})
            for kind in ("path", "directory", "editable", "virtual"):
                if kind in source and source[kind] != ".":
                    return True
        return False

    def _is_package(self) -> bool:
        """uv's rule: ``tool.uv.package`` if given, else whether a build system is declared."""
        with open(self.binder_path(PROJECT), "rb") as f:
            project = tomllib.load(f)
        explicit = project.get("tool", {}).get("uv", {}).get("package")
        return bool(explicit) if explicit is not None else "build-system" in project

    def _dir(self) -> str:
        # binder_dir is repo2docker's own choice: "", "binder" or ".binder"
        return f'"${{REPO_DIR}}/{self.binder_dir}"'

    def get_packages(self):
        # uv and its venv need a Python to be installed with; the lock's own Python comes
        # from the system when it fits requires-python, else uv downloads one
        return super().get_packages() | {"python3", "python3-venv"}

    def get_build_env(self):
        return [*super().get_build_env(),
                ("UV_PROJECT_ENVIRONMENT", self.env_prefix),
                # the system's CA store, as pip and git use: a site's TLS proxy CA works
                ("UV_NATIVE_TLS", "1"),
                ("UV_LINK_MODE", "copy")]

    def get_path(self):
        return [*super().get_path(), f"{self.env_prefix}/bin", f"{self.server_prefix}/bin",
                f"{self.uv_prefix}/bin"]

    def get_build_scripts(self):
        uv = f"{self.uv_prefix}/bin/uv"
        pip = f"{self.uv_prefix}/bin/pip"
        scripts = [("root", f"python3 -m venv {self.uv_prefix} && "
                            f"{pip} install --no-cache-dir uv=={self.uv_version}"),
                   ("root", f"install -d -o ${{NB_USER}} -g ${{NB_USER}} {self.env_prefix}")]
        if self.server_packages:
            pkgs = " ".join(shlex.quote(p) for p in self.server_packages)
            scripts.append(("root", f"{uv} venv {self.server_prefix} && "
                                    f"{uv} pip install --no-cache --python "
                                    f"{self.server_prefix}/bin/python {pkgs}"))
        # repo2docker's entrypoint runs in a login shell, which resets PATH from
        # /etc/profile: put the environments on PATH there as well
        path = f"{self.env_prefix}/bin:{self.server_prefix}/bin:{self.uv_prefix}/bin"
        scripts.append(("root", f"echo 'export PATH={path}:$PATH' > /etc/profile.d/zz-uv-env.sh"))
        return scripts

    def get_preassemble_script_files(self):
        files = dict(super().get_preassemble_script_files())
        for name in (LOCK, PROJECT, PYTHON_VERSION):
            path = self.binder_path(name)
            if os.path.exists(path):
                files[path] = path
        return files

    def _sync(self, *args: str) -> list[tuple[str, str]]:
        """``uv sync --frozen`` (plus ``args``) into the locked environment, ipykernel added
        when the lock has none, and that environment registered as the ``python3`` kernel."""
        env_python = f"{self.env_prefix}/bin/python"
        sync = (f"cd {self._dir()} && export UV_CACHE_DIR=/tmp/uv-cache && "
                f"uv sync --frozen {' '.join(args)}".rstrip())
        if "ipykernel" not in self._locked_names():
            # a kernel needs ipykernel; pin what it shares with the lock to the lock's versions
            sync += (" && uv export --frozen --no-hashes --no-emit-project "
                     "-o /tmp/uv-constraints.txt && "
                     f"uv pip install --python {env_python} -c /tmp/uv-constraints.txt ipykernel"
                     " && rm /tmp/uv-constraints.txt")
        sync += " && rm -rf /tmp/uv-cache"
        kernel = (f"{env_python} -m ipykernel install --prefix {self.server_prefix} "
                  "--name python3 --display-name 'Python 3 (uv.lock)'")
        return [("${NB_USER}", sync), ("root", kernel)]

    def get_preassemble_scripts(self):
        scripts = list(super().get_preassemble_scripts())
        if not self._local_sources():
            scripts += self._sync("--no-install-project")
        return scripts

    def get_assemble_scripts(self):
        scripts = list(super().get_assemble_scripts())
        if self._local_sources():
            # local path sources need the repository: everything is installed after it
            scripts += self._sync()
        elif self._is_package():
            # --inexact: keep the ipykernel added above (sync removes what the lock lacks)
            scripts.append(("${NB_USER}", f"cd {self._dir()} && UV_CACHE_DIR=/tmp/uv-cache "
                                          "uv sync --frozen --inexact && rm -rf /tmp/uv-cache"))
        return scripts
