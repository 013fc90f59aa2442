# repo2docker configuration for the tests (passed with --config, by the builder AND the
# fingerprint, as an operator's would be). repo2docker's conda and pip build packs download
# micromamba and conda-forge packages, which this machine cannot reach; this build pack
# installs requirements.txt with pip into the local base image's venv instead, through
# repo2docker's own template and build-pack API (pre-assemble files, then the repository).
import os

from repo2docker.buildpacks.base import BaseImage
from repo2docker.buildpacks.docker import DockerBuildPack

from binderlab.buildpacks import CondaLockBuildPack, UvLockBuildPack


class LocalPipBuildPack(BaseImage):
    """requirements.txt installed with the base image's pip (test machines only)."""

    def _requirements(self):
        path = self.binder_path("requirements.txt")
        return path if os.path.exists(path) else None

    def detect(self):
        return self._requirements() is not None

    def _local_references(self):
        with open(self._requirements()) as f:
            # local paths, editable installs and references to other files need the repo
            return any(line.strip().startswith(("-e", "--editable", "-r", "--requirement",
                                                 "-c", "--constraint", ".", "/", "file:"))
                       for line in f)

    def get_preassemble_script_files(self):
        files = dict(super().get_preassemble_script_files())
        if self.detect() and not self._local_references():
            files[self._requirements()] = self._requirements()
        return files

    def get_preassemble_scripts(self):
        scripts = list(super().get_preassemble_scripts())
        if self.detect() and not self._local_references():
            scripts.append(("root", "/opt/venv/bin/pip install --no-cache-dir "
                            f'-r "${{REPO_DIR}}/{self._requirements()}"'))
        return scripts

    def get_assemble_scripts(self):
        scripts = list(super().get_assemble_scripts())
        if self.detect() and self._local_references():
            # like repo2docker's Python build pack: local references need the whole repo
            scripts.append(("root", "/opt/venv/bin/pip install --no-cache-dir "
                            f'-r "{self._requirements()}"'))
        return scripts


class LocalUvLockBuildPack(UvLockBuildPack):
    """uv.lock, with JupyterLab from the local base image's venv (uv itself and the
    locked packages still come from PyPI, for real)."""

    server_prefix = "/opt/venv"
    server_packages = ()


c.Repo2Docker.base_image = os.environ.get("BINDERLAB_TEST_BASE_IMAGE",  # noqa: F821
                                          "binderlab-test/base:latest")
# what an operator adds (binderlab.buildpacks.with_lockfile_buildpacks does it for
# repo2docker's own list); conda-lock builds stop at the Dockerfile here (no conda channels)
c.Repo2Docker.buildpacks = [DockerBuildPack, LocalUvLockBuildPack, CondaLockBuildPack,  # noqa: F821
                            LocalPipBuildPack]
c.Repo2Docker.default_buildpack = LocalPipBuildPack  # noqa: F821
